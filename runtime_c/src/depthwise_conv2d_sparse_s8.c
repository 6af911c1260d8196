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
 * buffer  mcuqp_depthwise_conv2d_sparse_s8_get_buffer_size(filter_dims) bytes: one
 *         channel's taps (input offset, row and column)
 * params, quant  as mcuqp_depthwise_conv2d_s8
 *
 * Channel by channel: the channel's stored taps are turned into input offsets once, then
 * every output pixel of the channel sums only those taps (windows inside the image read
 * input[offset] directly; border windows skip taps in the padding). An all-zero channel is
 * its bias everywhere: one requantization, then a fill.
 */
#include "mcuqp_packed.h"

/* One channel's stored taps, where the window's pixel offsets come from. */
typedef struct {
    int32_t *offset; /* input offset of each stored tap from the window origin */
    uint8_t *ky;
    uint8_t *kx;
    const int8_t *value;
    int32_t count;
} dw_taps;

int32_t mcuqp_depthwise_conv2d_sparse_s8_get_buffer_size(const mcuqp_dims *filter_dims)
{
    if (filter_dims == NULL || filter_dims->h < 1 || filter_dims->w < 1 || filter_dims->h * filter_dims->w > 255) {
        return (int32_t)MCUQP_ERR_ARG;
    }
    return 6 * filter_dims->h * filter_dims->w;
}

/* The window whose origin is input element `origin` (inside the image when `inside`, else
 * only taps with ky in [ky_lo, ky_hi) and kx in [kx_lo, kx_hi)). */
MCUQP_INLINE uint32_t dw_window(const int8_t *image, int32_t origin, const dw_taps *t, int32_t in_off, int inside,
                                int32_t ky_lo, int32_t ky_hi, int32_t kx_lo, int32_t kx_hi)
{
    uint32_t acc = 0u;
    int32_t i;
    if (inside) {
        for (i = 0; i < t->count; ++i) {
            acc += (uint32_t)((image[origin + t->offset[i]] + in_off) * t->value[i]);
        }
    } else {
        for (i = 0; i < t->count; ++i) {
            if (t->ky[i] >= ky_lo && t->ky[i] < ky_hi && t->kx[i] >= kx_lo && t->kx[i] < kx_hi) {
                acc += (uint32_t)((image[origin + t->offset[i]] + in_off) * t->value[i]);
            }
        }
    }
    return acc;
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
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t dm = params->depth_multiplier;
    const int32_t in_off = params->input_offset;
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max, params->output_offset);
    dw_taps t;
    t.offset = (int32_t *)buffer;
    t.ky = (uint8_t *)buffer + 4 * taps;
    t.kx = t.ky + taps;
    const int32_t x_step = params->stride_w * in_c;
    /* Output columns [ox_full_lo, ox_full_hi) have windows inside the input width. */
    int32_t ox_full_lo = 0;
    while (ox_full_lo < out_w && ox_full_lo * params->stride_w - params->pad_w < 0) {
        ++ox_full_lo;
    }
    int32_t ox_full_hi = ox_full_lo;
    while (ox_full_hi < out_w &&
           ox_full_hi * params->stride_w - params->pad_w + (k_w - 1) * params->dilation_w < in_w) {
        ++ox_full_hi;
    }
    const size_t in_image = (size_t)in_h * (size_t)in_w * (size_t)in_c;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    const uint8_t *index = filter->index;
    const int8_t *values = filter->values;
    int32_t oc;
    for (oc = 0; oc < out_c; ++oc) {
        t.count = filter->counts[oc];
        t.value = values;
        int32_t i;
        for (i = 0; i < t.count; ++i) {
            const int32_t ky = index[i] / k_w;
            const int32_t kx = index[i] % k_w;
            t.ky[i] = (uint8_t)ky;
            t.kx[i] = (uint8_t)kx;
            t.offset[i] = (ky * params->dilation_h * in_w + kx * params->dilation_w) * in_c;
        }
        index += t.count;
        values += t.count;
        const uint32_t b0 = bias != NULL ? (uint32_t)bias[oc] : 0u;
        const mcuqp_rq rq = mcuqp_rq_prepare(quant->multiplier[quant->count == 1 ? 0 : oc],
                                             quant->shift[quant->count == 1 ? 0 : oc]);
        const int quick = o.quick;
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            const int8_t *image = input + (size_t)n * in_image;
            int8_t *y = output + (size_t)n * out_image + (size_t)oc;
            if (t.count == 0) { /* the bias everywhere */
                const int8_t v = mcuqp_pk_store(&o, b0, oc);
                size_t px;
                for (px = 0; px < (size_t)out_h * (size_t)out_w; ++px) {
                    y[px * (size_t)out_c] = v;
                }
                continue;
            }
            int32_t oy;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_h;
                int32_t ky_lo;
                int32_t ky_hi;
                mcuqp_tap_range(y0, params->dilation_h, k_h, in_h, &ky_lo, &ky_hi);
                const int row_full = ky_lo == 0 && ky_hi == k_h;
                int8_t *yr = y + (size_t)oy * (size_t)out_w * (size_t)out_c;
                int32_t ox = 0;
                while (ox < out_w) {
                    if (row_full && ox >= ox_full_lo && ox < ox_full_hi) {
                        /* windows inside the image: a run of them, the requantization prepared once */
                        int32_t origin = (y0 * in_w + ox * params->stride_w - params->pad_w) * in_c + oc / dm;
                        for (; ox < ox_full_hi; ++ox, origin += x_step) {
                            const uint32_t acc = dw_window(image, origin, &t, in_off, 1, 0, 0, 0, 0) + b0;
                            yr[(size_t)ox * (size_t)out_c] =
                                quick ? (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast((int32_t)acc, &rq), o.out_offset)
                                      : mcuqp_pk_store(&o, acc, oc);
                        }
                        continue;
                    }
                    const int32_t x0 = ox * params->stride_w - params->pad_w;
                    int32_t kx_lo;
                    int32_t kx_hi;
                    mcuqp_tap_range(x0, params->dilation_w, k_w, in_w, &kx_lo, &kx_hi);
                    /* a signed element index: the origin may lie in the padding */
                    const int32_t origin = (y0 * in_w + x0) * in_c + oc / dm;
                    const uint32_t acc = dw_window(image, origin, &t, in_off, 0, ky_lo, ky_hi, kx_lo, kx_hi);
                    yr[(size_t)ox * (size_t)out_c] = mcuqp_pk_store(&o, acc + b0, oc);
                    ++ox;
                }
            }
        }
    }
    return MCUQP_OK;
}
