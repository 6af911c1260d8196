/*
 * Fully binary 2-D convolution: binary OHWI weights (mcuqp_lowbit_weights, bits 1) after a
 * SIGN activation (every input -1 or +1, input_offset 0), int8 NHWC -> int8 NHWC. Same
 * results as mcuqp_conv2d_s8 on the decoded weights.
 *
 * filter  filter_dims = (out_c, k_h, k_w, in_c); out_c rows of ceil(K / 32) words,
 *         K = k_h * k_w * in_c in OHWI order
 * buffer  mcuqp_conv2d_xnor_s8_get_buffer_size(filter_dims) bytes: the window's sign bits
 *         and which of its bits lie inside the image
 * input   (n, in_h, in_w, in_c) int8, each -1 or +1 (MCUQP_ERR_ARG otherwise)
 * params  as mcuqp_conv2d_s8 with input_offset == 0; bias, output, quant likewise
 *
 * Taps in the padding contribute 0 (TFLite's rule), which a sign bit cannot say: border
 * windows mask them out, acc = taps inside - 2 * popcount((w ^ x) & inside).
 */
#include "mcuqp_packed.h"

int32_t mcuqp_conv2d_xnor_s8_get_buffer_size(const mcuqp_dims *filter_dims)
{
    if (filter_dims == NULL || !mcuqp_conv_valid_dim(filter_dims->h) || !mcuqp_conv_valid_dim(filter_dims->w) ||
        !mcuqp_conv_valid_dim(filter_dims->c)) {
        return (int32_t)MCUQP_ERR_ARG;
    }
    const int64_t k = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    return k < (1 << 24) ? (int32_t)(8 * ((k + 31) / 32)) : (int32_t)MCUQP_ERR_ARG;
}

mcuqp_status mcuqp_conv2d_xnor_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                  const mcuqp_dims *input_dims, const int8_t *input, const mcuqp_dims *filter_dims,
                                  const mcuqp_lowbit_weights *filter, const int32_t *bias,
                                  const mcuqp_dims *output_dims, int8_t *output, void *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || input == NULL || filter_dims == NULL ||
        filter == NULL || filter->words == NULL || output_dims == NULL || output == NULL || buffer == NULL ||
        !mcuqp_conv2d_valid_args(params, quant, input_dims, filter_dims, output_dims) || filter->bits != 1 ||
        params->input_offset != 0 || mcuqp_conv2d_xnor_s8_get_buffer_size(filter_dims) < 0 ||
        !mcuqp_pk_all_signs(input, (size_t)input_dims->n * (size_t)input_dims->h * (size_t)input_dims->w *
                                       (size_t)input_dims->c)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t in_c = input_dims->c;
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const int32_t out_c = filter_dims->n;
    const int32_t words = (k_h * k_w * in_c + 31) / 32;
    uint32_t *xb = (uint32_t *)buffer;
    uint32_t *inside = xb + words;
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
    const size_t in_image = (size_t)in_h * (size_t)in_w * (size_t)in_c;
    int32_t n;
    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *image = input + (size_t)n * in_image;
        int32_t oy;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_h;
            int32_t ky_lo;
            int32_t ky_hi;
            mcuqp_tap_range(y0, params->dilation_h, k_h, in_h, &ky_lo, &ky_hi);
            int32_t ox;
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_w;
                int32_t kx_lo;
                int32_t kx_hi;
                mcuqp_tap_range(x0, params->dilation_w, k_w, in_w, &kx_lo, &kx_hi);
                const int full = ky_lo == 0 && ky_hi == k_h && kx_lo == 0 && kx_hi == k_w;
                int32_t i;
                for (i = 0; i < words; ++i) {
                    xb[i] = 0u;
                    inside[i] = 0u;
                }
                int32_t k = 0;
                int32_t ky;
                for (ky = 0; ky < k_h; ++ky) {
                    int32_t kx;
                    for (kx = 0; kx < k_w; ++kx, k += in_c) {
                        if (ky < ky_lo || ky >= ky_hi || kx < kx_lo || kx >= kx_hi) {
                            continue;
                        }
                        const int8_t *px = image + ((size_t)(y0 + ky * params->dilation_h) * (size_t)in_w +
                                                    (size_t)(x0 + kx * params->dilation_w)) * (size_t)in_c;
                        int32_t c = 0;
                        if ((k & 3) == 0) {
                            uint32_t ok = 1u;
                            for (; c + 4 <= in_c; c += 4) {
                                const int32_t kk = k + c;
                                xb[kk >> 5] |= mcuqp_pk_signs4(px + c, &ok) << ((kk & 31) >> 2);
                                inside[kk >> 5] |= 0x01010101u << ((kk & 31) >> 2);
                            }
                        }
                        for (; c < in_c; ++c) {
                            const int32_t kk = k + c;
                            const uint32_t bit = mcuqp_pk_sign_bit(kk);
                            xb[kk >> 5] |= px[c] > 0 ? bit : 0u;
                            inside[kk >> 5] |= bit;
                        }
                    }
                }
                const uint32_t taps = (uint32_t)((ky_hi - ky_lo) * (kx_hi - kx_lo) * in_c);
                int8_t *y = output + (((size_t)n * (size_t)output_dims->h + (size_t)oy) * (size_t)output_dims->w +
                                      (size_t)ox) * (size_t)out_c;
                const uint32_t *w = filter->words;
                int32_t oc;
                for (oc = 0; oc < out_c; ++oc) {
                    const uint32_t diff = full ? mcuqp_pk_xor_popcount(w, xb, NULL, words, 0)
                                              : mcuqp_pk_xor_popcount(w, xb, inside, words, 1);
                    uint32_t acc = taps - 2u * diff;
                    acc += bias != NULL ? (uint32_t)bias[oc] : 0u;
                    y[oc] = mcuqp_pk_store(&o, acc, oc);
                    w += words;
                }
            }
        }
    }
    return MCUQP_OK;
}
