/*
 * Depthwise 2-D convolution, int8 NHWC -> int8 NHWC (TFLite int8 DepthwiseConvPerChannel
 * semantics).
 *
 * input   (n, in_h, in_w, in_c) int8                 dims >= 1
 * filter  1HWC (1, k_h, k_w, out_c) int8             out_c = in_c * depth_multiplier
 * bias    (out_c,) int32, or NULL for none
 * output  (n, out_h, out_w, out_c) int8              output_dims->n == n, ->c == out_c
 * params  depth_multiplier >= 1, stride_h/w >= 1, dilation_h/w >= 1,
 *         pad_h/pad_w = top/left padding >= 0,
 *         input_offset = -input zero point in [-127, 128],
 *         output_offset = output zero point in [-128, 127],
 *         act_min <= act_max within [-128, 127]
 * quant   count 1 (per-tensor) or out_c (per-channel); shifts in [-31, 30]
 * Every dimension, stride, dilation, padding and the multiplier must be below 2^15.
 *
 * Output channel oc reads input channel oc / depth_multiplier. For output (b, oy, ox, oc):
 *   acc = sum over in-bounds taps (ky, kx) of filter[ky][kx][oc] * (input + input_offset)
 *         + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * with taps at input row oy*stride_h - pad_h + ky*dilation_h and column
 * ox*stride_w - pad_w + kx*dilation_w. Taps outside the input contribute nothing, as in
 * TFLite. The int32 accumulator wraps in two's complement (uint32 arithmetic).
 *
 * Speed: one output channel at a time, so input_offset * sum(filter[.][.][oc]) is
 * computed once per channel and added to a plain dot product for every output whose
 * window lies fully inside the input; border outputs add the offset per tap.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

#define DW_MAX_DIM (1 << 15)

/* [*lo, *hi): the taps t in [0, taps) with 0 <= origin + t * dilation < size. */
static inline void tap_range(int32_t origin, int32_t dilation, int32_t taps, int32_t size, int32_t *lo,
                             int32_t *hi)
{
    int32_t a = 0;
    int32_t b = taps;
    if (origin < 0) {
        a = (-origin + dilation - 1) / dilation;
    }
    if (origin + (taps - 1) * dilation >= size) {
        b = size > origin ? (size - origin + dilation - 1) / dilation : 0;
    }
    *lo = mcuqp_min_i32(a, taps);
    *hi = mcuqp_max_i32(b, *lo);
}

static int valid_dim(int32_t v) { return v >= 1 && v < DW_MAX_DIM; }

static int valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q, const mcuqp_dims *in,
                      const mcuqp_dims *f, const mcuqp_dims *out)
{
    int32_t i;
    if (!valid_dim(p->stride_h) || !valid_dim(p->stride_w) || !valid_dim(p->dilation_h) ||
        !valid_dim(p->dilation_w) || !valid_dim(p->depth_multiplier) || p->pad_h < 0 || p->pad_w < 0 ||
        p->pad_h >= DW_MAX_DIM || p->pad_w >= DW_MAX_DIM || p->input_offset < -127 || p->input_offset > 128 ||
        p->output_offset < -128 || p->output_offset > 127 || p->act_min > p->act_max || p->act_min < -128 ||
        p->act_max > 127) {
        return 0;
    }
    if (!valid_dim(in->n) || !valid_dim(in->h) || !valid_dim(in->w) || !valid_dim(in->c) || f->n != 1 ||
        !valid_dim(f->h) || !valid_dim(f->w) || (int64_t)f->c != (int64_t)in->c * p->depth_multiplier ||
        out->n != in->n || out->c != f->c || !valid_dim(out->h) || !valid_dim(out->w)) {
        return 0;
    }
    if (q->multiplier == NULL || q->shift == NULL || (q->count != 1 && q->count != f->c)) {
        return 0;
    }
    for (i = 0; i < q->count; ++i) {
        if (q->shift[i] < -31 || q->shift[i] > 30) {
            return 0;
        }
    }
    return 1;
}

mcuqp_status mcuqp_depthwise_conv2d_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                       const mcuqp_dims *input_dims, const int8_t *input,
                                       const mcuqp_dims *filter_dims, const int8_t *filter,
                                       const int32_t *bias, const mcuqp_dims *output_dims,
                                       int8_t *output)
{
    if (params == NULL || quant == NULL || input_dims == NULL || input == NULL || filter_dims == NULL ||
        filter == NULL || output_dims == NULL || output == NULL ||
        !valid_args(params, quant, input_dims, filter_dims, output_dims)) {
        return MCUQP_ERR_ARG;
    }

    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t in_c = input_dims->c;
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const int32_t out_c = filter_dims->c;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t stride_h = params->stride_h;
    const int32_t stride_w = params->stride_w;
    const int32_t dil_h = params->dilation_h;
    const int32_t dil_w = params->dilation_w;
    const int32_t in_offset = params->input_offset;
    const int32_t out_offset = params->output_offset;
    /* clamp(r + out_offset, act_min, act_max) without an int32 overflow in the add */
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const size_t in_row = (size_t)in_w * (size_t)in_c;
    const size_t in_image = (size_t)in_h * in_row;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    const size_t in_tap_step = (size_t)dil_w * (size_t)in_c; /* next kx in the input */
    const size_t in_row_step = (size_t)dil_h * in_row;       /* next ky in the input */
    const size_t w_row = (size_t)k_w * (size_t)out_c;         /* next ky in the filter */

    /* Output columns whose window lies fully inside the input width. */
    int32_t ox_full_lo = 0;
    while (ox_full_lo < out_w && ox_full_lo * stride_w - params->pad_w < 0) {
        ++ox_full_lo;
    }
    int32_t ox_full_hi = ox_full_lo;
    while (ox_full_hi < out_w && ox_full_hi * stride_w - params->pad_w + (k_w - 1) * dil_w < in_w) {
        ++ox_full_hi;
    }

    int32_t oc;
    for (oc = 0; oc < out_c; ++oc) {
        const int8_t *w_oc = filter + oc;
        const int32_t ic = oc / params->depth_multiplier;
        const int32_t q = quant->count == 1 ? 0 : oc;
        const int32_t mult = quant->multiplier[q];
        const int32_t shift = quant->shift[q];
        const uint32_t b = bias != NULL ? (uint32_t)bias[oc] : 0u;
        uint32_t w_sum = 0u;
        int32_t t;
        for (t = 0; t < k_h * k_w; ++t) {
            w_sum += (uint32_t)w_oc[(size_t)t * (size_t)out_c];
        }
        const uint32_t full_offset_term = (uint32_t)in_offset * w_sum;
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            const int8_t *in_n = input + (size_t)n * in_image + (size_t)ic;
            int8_t *out_n = output + (size_t)n * out_image + (size_t)oc;
            int32_t oy;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * stride_h - params->pad_h;
                int32_t ky_lo;
                int32_t ky_hi;
                tap_range(y0, dil_h, k_h, in_h, &ky_lo, &ky_hi);
                const int full_rows = ky_lo == 0 && ky_hi == k_h;
                int32_t ox;
                for (ox = 0; ox < out_w; ++ox) {
                    const int32_t x0 = ox * stride_w - params->pad_w;
                    uint32_t acc = 0u;
                    int32_t ky;
                    int32_t kx;
                    if (full_rows && ox >= ox_full_lo && ox < ox_full_hi) {
                        const int8_t *in_px = in_n + (size_t)y0 * in_row + (size_t)x0 * (size_t)in_c;
                        for (ky = 0; ky < k_h; ++ky) {
                            const int8_t *in_r = in_px + (size_t)ky * in_row_step;
                            const int8_t *w_r = w_oc + (size_t)ky * w_row;
                            for (kx = 0; kx < k_w; ++kx) {
                                acc += (uint32_t)(in_r[(size_t)kx * in_tap_step] * w_r[(size_t)kx * (size_t)out_c]);
                            }
                        }
                        acc += full_offset_term;
                    } else {
                        int32_t kx_lo;
                        int32_t kx_hi;
                        tap_range(x0, dil_w, k_w, in_w, &kx_lo, &kx_hi);
                        for (ky = kx_hi > kx_lo ? ky_lo : ky_hi; ky < ky_hi; ++ky) {
                            const int8_t *in_px = in_n + (size_t)(y0 + ky * dil_h) * in_row +
                                                  (size_t)(x0 + kx_lo * dil_w) * (size_t)in_c;
                            const int8_t *w_px = w_oc + (size_t)ky * w_row + (size_t)kx_lo * (size_t)out_c;
                            for (kx = 0; kx < kx_hi - kx_lo; ++kx) {
                                acc += (uint32_t)((in_px[(size_t)kx * in_tap_step] + in_offset) *
                                                  w_px[(size_t)kx * (size_t)out_c]);
                            }
                        }
                    }
                    acc += b;
                    const int32_t r = mcuqp_requantize((int32_t)acc, mult, shift);
                    out_n[((size_t)oy * (size_t)out_w + (size_t)ox) * (size_t)out_c] =
                        (int8_t)(mcuqp_clamp_i32(r, lo, hi) + out_offset);
                }
            }
        }
    }
    return MCUQP_OK;
}
