/*
 * 2-D convolution, int8 NHWC -> int8 NHWC (TFLite int8 ConvPerChannel semantics).
 *
 * input   (n, in_h, in_w, in_c) int8                 dims >= 1
 * filter  OHWI (out_c, k_h, k_w, in_c) int8          filter_dims = (out_c, k_h, k_w, in_c)
 * bias    (out_c,) int32, or NULL for none
 * output  (n, out_h, out_w, out_c) int8              output_dims->n == n, ->c == out_c
 * params  stride_h/w >= 1, dilation_h/w >= 1, pad_h/pad_w = top/left padding >= 0,
 *         input_offset = -input zero point in [-127, 128],
 *         output_offset = output zero point in [-128, 127],
 *         act_min <= act_max within [-128, 127]; depth_multiplier is ignored
 * quant   count 1 (per-tensor) or out_c (per-channel); shifts in [-31, 30]
 * Every dimension, stride, dilation and padding must be below 2^15.
 *
 * For output (b, oy, ox, oc), with taps at input row oy*stride_h - pad_h + ky*dilation_h
 * and column ox*stride_w - pad_w + kx*dilation_w:
 *   acc = sum over in-bounds taps and in_c of filter * (input + input_offset) + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * Taps outside the input contribute nothing (the input offset is added to in-bounds
 * inputs only), exactly as in TFLite. The accumulator is an int32 that wraps in two's
 * complement (arithmetic is done in uint32, so the wrap is defined behaviour); it cannot
 * wrap for filters below 65793 taps * channels and a bias below 2^30.
 *
 * Speed: the loops run one output channel at a time, so the input-offset term
 * input_offset * sum(filter[oc]) is computed once per channel and added to a plain
 * int8 dot product for every output whose window lies fully inside the input; only
 * border outputs add the offset per tap.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

#define CONV_MAX_DIM (1 << 15)

/* sum of x[i] * w[i], modulo 2^32 */
static inline uint32_t dot_s8(const int8_t *x, const int8_t *w, int32_t n)
{
    uint32_t acc = 0u;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        acc += (uint32_t)(x[i] * w[i] + x[i + 1] * w[i + 1] + x[i + 2] * w[i + 2] + x[i + 3] * w[i + 3]);
    }
    for (; i < n; ++i) {
        acc += (uint32_t)(x[i] * w[i]);
    }
    return acc;
}

/* sum of (x[i] + offset) * w[i], modulo 2^32 */
static inline uint32_t dot_offset_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t offset)
{
    uint32_t acc = 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc += (uint32_t)((x[i] + offset) * w[i]);
    }
    return acc;
}

static inline uint32_t sum_s8(const int8_t *w, int32_t n)
{
    uint32_t acc = 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc += (uint32_t)w[i];
    }
    return acc;
}

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

static int valid_dim(int32_t v) { return v >= 1 && v < CONV_MAX_DIM; }

static int valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q, const mcuqp_dims *in,
                      const mcuqp_dims *f, const mcuqp_dims *out)
{
    int32_t i;
    if (!valid_dim(p->stride_h) || !valid_dim(p->stride_w) || !valid_dim(p->dilation_h) ||
        !valid_dim(p->dilation_w) || p->pad_h < 0 || p->pad_w < 0 || p->pad_h >= CONV_MAX_DIM ||
        p->pad_w >= CONV_MAX_DIM || p->input_offset < -127 || p->input_offset > 128 ||
        p->output_offset < -128 || p->output_offset > 127 || p->act_min > p->act_max || p->act_min < -128 ||
        p->act_max > 127) {
        return 0;
    }
    if (!valid_dim(in->n) || !valid_dim(in->h) || !valid_dim(in->w) || !valid_dim(in->c) || !valid_dim(f->n) ||
        !valid_dim(f->h) || !valid_dim(f->w) || f->c != in->c || out->n != in->n || out->c != f->n ||
        !valid_dim(out->h) || !valid_dim(out->w)) {
        return 0;
    }
    if (q->multiplier == NULL || q->shift == NULL || (q->count != 1 && q->count != f->n)) {
        return 0;
    }
    for (i = 0; i < q->count; ++i) {
        if (q->shift[i] < -31 || q->shift[i] > 30) {
            return 0;
        }
    }
    return 1;
}

mcuqp_status mcuqp_conv2d_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                             const mcuqp_dims *input_dims, const int8_t *input,
                             const mcuqp_dims *filter_dims, const int8_t *filter,
                             const int32_t *bias, const mcuqp_dims *output_dims, int8_t *output)
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
    const int32_t out_c = filter_dims->n;
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
    const int32_t filter_size = k_h * k_w * in_c;
    /* With dilation_w == 1 the taps of one filter row are contiguous in memory. */
    const int32_t row_run = dil_w == 1 ? k_w * in_c : in_c;
    const int32_t row_steps = dil_w == 1 ? 1 : k_w;
    const size_t tap_step = (size_t)dil_w * (size_t)in_c; /* next kx in the input */

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
        const int8_t *w_oc = filter + (size_t)oc * (size_t)filter_size;
        const int32_t q = quant->count == 1 ? 0 : oc;
        const int32_t mult = quant->multiplier[q];
        const int32_t shift = quant->shift[q];
        const uint32_t b = bias != NULL ? (uint32_t)bias[oc] : 0u;
        const uint32_t full_offset_term = (uint32_t)in_offset * sum_s8(w_oc, filter_size);
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            const int8_t *in_n = input + (size_t)n * in_image;
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
                    if (full_rows && ox >= ox_full_lo && ox < ox_full_hi) {
                        for (ky = 0; ky < k_h; ++ky) {
                            const int8_t *in_px = in_n + (size_t)(y0 + ky * dil_h) * in_row + (size_t)x0 * (size_t)in_c;
                            const int8_t *w_px = w_oc + (size_t)ky * (size_t)k_w * (size_t)in_c;
                            int32_t s;
                            for (s = 0; s < row_steps; ++s) {
                                acc += dot_s8(in_px + (size_t)s * tap_step, w_px + (size_t)s * (size_t)in_c, row_run);
                            }
                        }
                        acc += full_offset_term;
                    } else {
                        int32_t kx_lo;
                        int32_t kx_hi;
                        tap_range(x0, dil_w, k_w, in_w, &kx_lo, &kx_hi);
                        const int32_t run = dil_w == 1 ? (kx_hi - kx_lo) * in_c : in_c;
                        const int32_t steps = dil_w == 1 ? 1 : kx_hi - kx_lo;
                        for (ky = kx_hi > kx_lo ? ky_lo : ky_hi; ky < ky_hi; ++ky) {
                            const int8_t *in_px = in_n + (size_t)(y0 + ky * dil_h) * in_row +
                                                  (size_t)(x0 + kx_lo * dil_w) * (size_t)in_c;
                            const int8_t *w_px = w_oc + ((size_t)ky * (size_t)k_w + (size_t)kx_lo) * (size_t)in_c;
                            int32_t s;
                            for (s = 0; s < steps; ++s) {
                                acc += dot_offset_s8(in_px + (size_t)s * tap_step, w_px + (size_t)s * (size_t)in_c,
                                                     run, in_offset);
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
