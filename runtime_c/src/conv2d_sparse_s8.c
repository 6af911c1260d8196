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
 * buffer  mcuqp_conv2d_sparse_s8_get_buffer_size(filter_dims) bytes (2 K)
 * params, quant  as mcuqp_conv2d_s8
 *
 * Per output pixel the window is gathered once into the int16 buffer (input + offset,
 * zeros for taps in the padding, exactly TFLite's rule); then every output channel sums
 * its stored nonzeros against it, skipping zeros entirely.
 */
#include "mcuqp_packed.h"

int32_t mcuqp_conv2d_sparse_s8_get_buffer_size(const mcuqp_dims *filter_dims)
{
    if (filter_dims == NULL || !mcuqp_conv_valid_dim(filter_dims->h) || !mcuqp_conv_valid_dim(filter_dims->w) ||
        !mcuqp_conv_valid_dim(filter_dims->c)) {
        return (int32_t)MCUQP_ERR_ARG;
    }
    const int64_t k = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    return k <= (1 << 28) ? (int32_t)(2 * k) : (int32_t)MCUQP_ERR_ARG;
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
    const int32_t out_c = filter_dims->n;
    const int32_t k_len = filter_dims->h * filter_dims->w * filter_dims->c;
    const int32_t segments = (k_len + MCUQP_SPARSE_SEGMENT - 1) / MCUQP_SPARSE_SEGMENT;
    const int32_t lo = params->act_min - params->output_offset;
    const int32_t hi = params->act_max - params->output_offset;
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
                (void)mcuqp_pk_window(&g, oy * params->stride_h - params->pad_h, ox * params->stride_w - params->pad_w,
                                      x, 0);
                const uint16_t *counts = filter->counts;
                const uint8_t *index = filter->index;
                const int8_t *values = filter->values;
                int8_t *y = output + (((size_t)n * (size_t)output_dims->h + (size_t)oy) * (size_t)output_dims->w +
                                      (size_t)ox) * (size_t)out_c;
                int32_t oc;
                for (oc = 0; oc < out_c; ++oc) {
                    uint32_t acc = mcuqp_pk_sparse_dot(x, segments, &counts, &index, &values);
                    acc += bias != NULL ? (uint32_t)bias[oc] : 0u;
                    y[oc] = mcuqp_pk_output(acc, quant, oc, lo, hi, params->output_offset);
                }
            }
        }
    }
    return MCUQP_OK;
}
