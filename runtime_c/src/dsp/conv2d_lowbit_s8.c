/*
 * 2-D convolution with low-bit weights (int4, ternary, binary), Cortex-M DSP-extension
 * variant: same contract and results as runtime_c/src/conv2d_lowbit_s8.c (and as
 * mcuqp_conv2d_s8 on the decoded OHWI weights).
 *
 * filter  filter_dims = (out_c, k_h, k_w, in_c), K = k_h * k_w * in_c < 2^16; bits 4, 2
 *         or 1; out_c rows of ceil(K / (32 / bits)) words in OHWI order
 * buffer  mcuqp_conv2d_lowbit_s8_get_buffer_size(filter_dims) bytes: two int16 windows
 * input, bias, output, params, quant  as mcuqp_conv2d_s8
 *
 * Output pixels go in pairs and output channels too: both windows are gathered (swizzled
 * int16 pairs, input + offset, zeros in the padding), then each weight word is decoded
 * once (shift-and-mask, SXTB16) for both pixels and each loaded input pair serves both
 * channels: for int4, 32 MACs in about 40 instructions (mcuqp_lowbit_dsp.h).
 */
#include "mcuqp_lowbit_dsp.h"

int32_t mcuqp_conv2d_lowbit_s8_get_buffer_size(const mcuqp_dims *filter_dims)
{
    if (filter_dims == NULL || !mcuqp_conv_valid_dim(filter_dims->h) || !mcuqp_conv_valid_dim(filter_dims->w) ||
        !mcuqp_conv_valid_dim(filter_dims->c)) {
        return (int32_t)MCUQP_ERR_ARG;
    }
    const int64_t k = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    return k < (1 << 16) ? 4 * mcuqp_pk_round_up((int32_t)k, 32) : (int32_t)MCUQP_ERR_ARG;
}

mcuqp_status mcuqp_conv2d_lowbit_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                    const mcuqp_dims *input_dims, const int8_t *input, const mcuqp_dims *filter_dims,
                                    const mcuqp_lowbit_weights *filter, const int32_t *bias,
                                    const mcuqp_dims *output_dims, int8_t *output, void *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || input == NULL || filter_dims == NULL ||
        filter == NULL || filter->words == NULL || output_dims == NULL || output == NULL || buffer == NULL ||
        !mcuqp_conv2d_valid_args(params, quant, input_dims, filter_dims, output_dims) ||
        !mcuqp_pk_valid_bits(filter->bits) || mcuqp_conv2d_lowbit_s8_get_buffer_size(filter_dims) < 0) {
        return MCUQP_ERR_ARG;
    }
    const int32_t bits = filter->bits;
    const int32_t out_c = filter_dims->n;
    const int32_t k_len = filter_dims->h * filter_dims->w * filter_dims->c;
    const int32_t padded = mcuqp_pk_round_up(k_len, 32);
    const int32_t row_words = (k_len + 32 / bits - 1) / (32 / bits);
    int16_t *x = (int16_t *)buffer;
    const uint32_t *xw = (const uint32_t *)buffer;
    const mcuqp_pk_layout win_a = {1, 1, 1, 0}; /* the two windows interleave word by word */
    const mcuqp_pk_layout win_b = {1, 1, 1, 1};
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
    int32_t i;
    for (i = k_len; i < padded; ++i) {
        x[mcuqp_pk_pos(i, &win_a)] = 0;
        x[mcuqp_pk_pos(i, &win_b)] = 0;
    }
    mcuqp_pk_geom g;
    g.in_h = input_dims->h;
    g.in_w = input_dims->w;
    g.in_c = input_dims->c;
    g.k_h = filter_dims->h;
    g.k_w = filter_dims->w;
    g.dil_h = params->dilation_h;
    g.dil_w = params->dilation_w;
    g.offset = params->input_offset;
    const size_t in_image = (size_t)g.in_h * (size_t)g.in_w * (size_t)g.in_c;
    const int32_t out_w = output_dims->w;
    const int32_t pixels = output_dims->h * out_w;
    int32_t n;
    for (n = 0; n < input_dims->n; ++n) {
        g.input = input + (size_t)n * in_image;
        int8_t *out = output + (size_t)n * (size_t)pixels * (size_t)out_c;
        int32_t p;
        for (p = 0; p < pixels; p += 2) {
            const int32_t count = p + 1 < pixels ? 2 : 1;
            mcuqp_pk_window(&g, (p / out_w) * params->stride_h - params->pad_h,
                            (p % out_w) * params->stride_w - params->pad_w, x, &win_a);
            if (count == 2) {
                mcuqp_pk_window(&g, ((p + 1) / out_w) * params->stride_h - params->pad_h,
                                ((p + 1) % out_w) * params->stride_w - params->pad_w, x, &win_b);
            }
            const int32_t sum_a = bits == 1 ? mcuqp_lb_window_sum(xw, padded, 2) : 0;
            const int32_t sum_b = bits == 1 && count == 2 ? mcuqp_lb_window_sum(xw + 1, padded, 2) : 0;
            int8_t *y = out + (size_t)p * (size_t)out_c;
            int32_t oc = 0;
            if (count == 2) {
                for (; oc + 2 <= out_c; oc += 2) {
                    int32_t acc[4];
                    const uint32_t *wc = filter->words + (size_t)oc * (size_t)row_words;
                    mcuqp_lb_dot22_any(wc, wc + row_words, row_words, xw, bits, acc);
                    const uint32_t bc = bias != NULL ? (uint32_t)bias[oc] : 0u;
                    const uint32_t bd = bias != NULL ? (uint32_t)bias[oc + 1] : 0u;
                    y[oc] = mcuqp_pk_store(&o, mcuqp_lb_unscale(acc[0], bits, sum_a) + bc, oc);
                    y[(size_t)out_c + (size_t)oc] =
                        mcuqp_pk_store(&o, mcuqp_lb_unscale(acc[1], bits, sum_b) + bc, oc);
                    y[oc + 1] =
                        mcuqp_pk_store(&o, mcuqp_lb_unscale(acc[2], bits, sum_a) + bd, oc + 1);
                    y[(size_t)out_c + (size_t)oc + 1] =
                        mcuqp_pk_store(&o, mcuqp_lb_unscale(acc[3], bits, sum_b) + bd, oc + 1);
                }
            }
            for (; oc < out_c; ++oc) {
                int32_t acc[2] = {0, 0};
                mcuqp_lb_dot_any(filter->words + (size_t)oc * (size_t)row_words, row_words, xw, 2, bits, acc);
                const uint32_t b0 = bias != NULL ? (uint32_t)bias[oc] : 0u;
                y[oc] = mcuqp_pk_store(&o, mcuqp_lb_unscale(acc[0], bits, sum_a) + b0, oc);
                if (count == 2) {
                    y[(size_t)out_c + (size_t)oc] =
                        mcuqp_pk_store(&o, mcuqp_lb_unscale(acc[1], bits, sum_b) + b0, oc);
                }
            }
        }
    }
    return MCUQP_OK;
}
