/*
 * Depthwise 2-D convolution with sparse int8 weights (mcuqp_sparse_depthwise), int8 NHWC
 * -> int8 NHWC. Same results as mcuqp_depthwise_conv2d_s8 on the unpacked weights.
 *
 * input   (n, in_h, in_w, in_c) int8
 * filter  filter_dims = (1, k_h, k_w, out_c), out_c = in_c * depth_multiplier,
 *         k_h * k_w <= 255: per channel a uint8 count; per nonzero its tap ky * k_w + kx
 *         (uint8) and value (int8), channel by channel (a channel may be empty)
 * bias    (out_c,) int32, or NULL
 * output  (n, out_h, out_w, out_c) int8
 * buffer  mcuqp_depthwise_conv2d_sparse_s8_get_buffer_size(filter_dims) bytes: the input
 *         offset of every tap (int32) and, for border windows, which taps are inside
 * params, quant  as mcuqp_depthwise_conv2d_s8
 *
 * For each output pixel and channel only the stored taps are visited: windows inside the
 * image read input[tap offset] directly; border windows skip taps in the padding.
 */
#include "mcuqp_packed.h"

int32_t mcuqp_depthwise_conv2d_sparse_s8_get_buffer_size(const mcuqp_dims *filter_dims)
{
    if (filter_dims == NULL || filter_dims->h < 1 || filter_dims->w < 1 || filter_dims->h * filter_dims->w > 255) {
        return (int32_t)MCUQP_ERR_ARG;
    }
    return 5 * filter_dims->h * filter_dims->w;
}

mcuqp_status mcuqp_depthwise_conv2d_sparse_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                              const mcuqp_dims *input_dims, const int8_t *input,
                                              const mcuqp_dims *filter_dims, const mcuqp_sparse_depthwise *filter,
                                              const int32_t *bias, const mcuqp_dims *output_dims, int8_t *output,
                                              void *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || input == NULL || filter_dims == NULL ||
        filter == NULL || filter->counts == NULL || filter->index == NULL || filter->values == NULL ||
        output_dims == NULL || output == NULL || buffer == NULL ||
        !mcuqp_depthwise_valid_args(params, quant, input_dims, filter_dims, output_dims) ||
        mcuqp_depthwise_conv2d_sparse_s8_get_buffer_size(filter_dims) < 0) {
        return MCUQP_ERR_ARG;
    }
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const int32_t taps = k_h * k_w;
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t in_c = input_dims->c;
    const int32_t out_c = filter_dims->c;
    const int32_t dm = params->depth_multiplier;
    const int32_t in_off = params->input_offset;
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
    int32_t *tap_offset = (int32_t *)buffer;
    uint8_t *tap_in = (uint8_t *)buffer + 4 * taps;
    int32_t t;
    for (t = 0; t < taps; ++t) {
        tap_offset[t] = ((t / k_w) * params->dilation_h * in_w + (t % k_w) * params->dilation_w) * in_c;
    }
    const size_t in_image = (size_t)in_h * (size_t)in_w * (size_t)in_c;
    int32_t n;
    for (n = 0; n < input_dims->n; ++n) {
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
                const int inside = ky_lo == 0 && ky_hi == k_h && kx_lo == 0 && kx_hi == k_w;
                if (!inside) {
                    for (t = 0; t < taps; ++t) {
                        const int32_t ky = t / k_w;
                        const int32_t kx = t % k_w;
                        tap_in[t] = (uint8_t)(ky >= ky_lo && ky < ky_hi && kx >= kx_lo && kx < kx_hi);
                    }
                }
                /* Signed offsets from the window origin, which may lie in the padding. */
                const int8_t *base = input + (size_t)n * in_image;
                const int32_t origin = (y0 * in_w + x0) * in_c;
                const uint8_t *index = filter->index;
                const int8_t *values = filter->values;
                int8_t *y = output + (((size_t)n * (size_t)output_dims->h + (size_t)oy) * (size_t)output_dims->w +
                                      (size_t)ox) * (size_t)out_c;
                int32_t oc;
                for (oc = 0; oc < out_c; ++oc) {
                    const int32_t count = filter->counts[oc];
                    const int32_t xo = origin + oc / dm;
                    uint32_t acc = bias != NULL ? (uint32_t)bias[oc] : 0u;
                    int32_t i;
                    if (inside) {
                        for (i = 0; i < count; ++i) {
                            acc += (uint32_t)((base[xo + tap_offset[index[i]]] + in_off) * values[i]);
                        }
                    } else {
                        for (i = 0; i < count; ++i) {
                            if (tap_in[index[i]] != 0u) {
                                acc += (uint32_t)((base[xo + tap_offset[index[i]]] + in_off) * values[i]);
                            }
                        }
                    }
                    index += count;
                    values += count;
                    y[oc] = mcuqp_pk_store(&o, acc, oc);
                }
            }
        }
    }
    return MCUQP_OK;
}
