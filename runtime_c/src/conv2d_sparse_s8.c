/*
 * 2-D convolution with sparse int8 weights (mcuqp_sparse_rows), int8 NHWC -> int8 NHWC.
 * Same results as mcuqp_conv2d_s8 on the unpacked OHWI weights, for any kernel size
 * (1x1 included), stride, dilation and padding.
 *
 * input   (n, in_h, in_w, in_c) int8
 * filter  filter_dims = (out_c, k_h, k_w, in_c); out_c rows of K = k_h * k_w * in_c
 *         columns in OHWI order (ky, kx, ci): counts (out_c * ceil(K / 256) uint16),
 *         index (uint8 column within its segment) and values (int8) per nonzero
 * bias    (out_c,) int32, or NULL
 * output  (n, out_h, out_w, out_c) int8
 * buffer  mcuqp_conv2d_sparse_s8_get_buffer_size(filter_dims) bytes (4 K: two windows)
 * params, quant  as mcuqp_conv2d_s8
 *
 * Output pixels go in pairs: both windows are gathered once into the buffer as int16
 * pairs (input + offset, zeros for taps in the padding, exactly TFLite's rule), so one
 * word load per stored nonzero feeds both pixels; every output channel sums its stored
 * nonzeros only, skipping zeros entirely.
 */
#include "mcuqp_packed.h"

int32_t mcuqp_conv2d_sparse_s8_get_buffer_size(const mcuqp_dims *filter_dims)
{
    if (filter_dims == NULL || !mcuqp_conv_valid_dim(filter_dims->h) || !mcuqp_conv_valid_dim(filter_dims->w) ||
        !mcuqp_conv_valid_dim(filter_dims->c)) {
        return (int32_t)MCUQP_ERR_ARG;
    }
    const int64_t k = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    return k <= (1 << 28) ? (int32_t)(4 * k) : (int32_t)MCUQP_ERR_ARG;
}

mcuqp_status mcuqp_conv2d_sparse_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                    const mcuqp_dims *input_dims, const int8_t *input, const mcuqp_dims *filter_dims,
                                    const mcuqp_sparse_rows *filter, const int32_t *bias,
                                    const mcuqp_dims *output_dims, int8_t *output, void *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || input == NULL || filter_dims == NULL ||
        filter == NULL || filter->counts == NULL || filter->index == NULL || filter->values == NULL ||
        output_dims == NULL || output == NULL || buffer == NULL ||
        !mcuqp_conv2d_valid_args(params, quant, input_dims, filter_dims, output_dims) ||
        mcuqp_conv2d_sparse_s8_get_buffer_size(filter_dims) < 0) {
        return MCUQP_ERR_ARG;
    }
    int16_t *x = (int16_t *)buffer;
    const mcuqp_pk_layout pairs = {0, 2, 0, 0}; /* pixel a at 2 k, pixel b at 2 k + 1 */
    const int32_t out_c = filter_dims->n;
    const int32_t k_len = filter_dims->h * filter_dims->w * filter_dims->c;
    const int32_t segments = (k_len + MCUQP_SPARSE_SEGMENT - 1) / MCUQP_SPARSE_SEGMENT;
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
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
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t pixels = out_h * out_w;
    int32_t n;
    for (n = 0; n < input_dims->n; ++n) {
        g.input = input + (size_t)n * in_image;
        int8_t *out = output + (size_t)n * (size_t)pixels * (size_t)out_c;
        int32_t p;
        for (p = 0; p < pixels; p += 2) {
            /* Pixels p and q = p + 1 (p again for an odd last pixel: computed, not stored). */
            const int two = p + 1 < pixels;
            const int32_t q = two ? p + 1 : p;
            mcuqp_pk_window(&g, (p / out_w) * params->stride_h - params->pad_h,
                            (p % out_w) * params->stride_w - params->pad_w, x, &pairs);
            mcuqp_pk_window(&g, (q / out_w) * params->stride_h - params->pad_h,
                            (q % out_w) * params->stride_w - params->pad_w, x + 1, &pairs);
            const uint16_t *counts = filter->counts;
            const uint8_t *index = filter->index;
            const int8_t *values = filter->values;
            int8_t *ya = out + (size_t)p * (size_t)out_c;
            int32_t oc;
            for (oc = 0; oc < out_c; ++oc) {
                const uint32_t b0 = bias != NULL ? (uint32_t)bias[oc] : 0u;
                uint32_t acc[2] = {b0, b0};
                int32_t s;
                for (s = 0; s < segments; ++s) {
                    mcuqp_pk_sparse_run2(acc, x + (size_t)s * 2u * MCUQP_SPARSE_SEGMENT, (int32_t)counts[s], &index,
                                         &values);
                }
                counts += segments;
                ya[oc] = mcuqp_pk_store(&o, acc[0], oc);
                if (two) {
                    ya[(size_t)out_c + (size_t)oc] = mcuqp_pk_store(&o, acc[1], oc);
                }
            }
        }
    }
    return MCUQP_OK;
}
