/*
 * 2-D convolution with low-bit weights (mcuqp_lowbit_weights: int4, ternary or binary),
 * int8 NHWC -> int8 NHWC. Same results as mcuqp_conv2d_s8 on the decoded OHWI weights.
 *
 * input   (n, in_h, in_w, in_c) int8
 * filter  filter_dims = (out_c, k_h, k_w, in_c); bits 4, 2 or 1; out_c rows of
 *         ceil(K / (32 / bits)) words, K = k_h * k_w * in_c in OHWI order
 * bias    (out_c,) int32, or NULL
 * output  (n, out_h, out_w, out_c) int8
 * buffer  mcuqp_conv2d_lowbit_s8_get_buffer_size(filter_dims) bytes (room for two int16
 *         windows, as the DSP variant takes; this one uses the first)
 * params, quant  as mcuqp_conv2d_s8
 *
 * Per output pixel the window is gathered once (input + offset, zeros in the padding, in
 * the swizzled order of mcuqp_packed.h); every output channel then takes its decoded row
 * against it.
 */
#include "mcuqp_packed.h"

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
    int16_t *x = (int16_t *)buffer;
    const mcuqp_pk_layout swizzled = {1, 1, 0, 0};
    const int32_t bits = filter->bits;
    const int32_t out_c = filter_dims->n;
    const int32_t k_len = filter_dims->h * filter_dims->w * filter_dims->c;
    const int32_t row_words = (k_len + 32 / bits - 1) / (32 / bits);
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
    int32_t i;
    for (i = k_len; i < mcuqp_pk_round_up(k_len, 32); ++i) {
        x[mcuqp_pk_swz(i)] = 0;
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
    int32_t n;
    for (n = 0; n < input_dims->n; ++n) {
        g.input = input + (size_t)n * in_image;
        int32_t oy;
        for (oy = 0; oy < output_dims->h; ++oy) {
            int32_t ox;
            for (ox = 0; ox < output_dims->w; ++ox) {
                mcuqp_pk_window(&g, oy * params->stride_h - params->pad_h, ox * params->stride_w - params->pad_w, x,
                                &swizzled);
                int8_t *y = output + (((size_t)n * (size_t)output_dims->h + (size_t)oy) * (size_t)output_dims->w +
                                      (size_t)ox) * (size_t)out_c;
                int32_t oc;
                for (oc = 0; oc < out_c; ++oc) {
                    const uint32_t *w = filter->words + (size_t)oc * (size_t)row_words;
                    uint32_t acc;
                    switch (bits) {
                    case 4:
                        acc = mcuqp_pk_lowbit_dot(w, row_words, x, 4);
                        break;
                    case 2:
                        acc = mcuqp_pk_lowbit_dot(w, row_words, x, 2);
                        break;
                    default:
                        acc = mcuqp_pk_lowbit_dot(w, row_words, x, 1);
                        break;
                    }
                    acc += bias != NULL ? (uint32_t)bias[oc] : 0u;
                    y[oc] = mcuqp_pk_store(&o, acc, oc);
                }
            }
        }
    }
    return MCUQP_OK;
}
