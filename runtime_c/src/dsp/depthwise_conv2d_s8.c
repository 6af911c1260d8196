/*
 * Depthwise 2-D convolution, int8 NHWC -> int8 NHWC, Cortex-M DSP-extension variant (same
 * contract and results as runtime_c/src/depthwise_conv2d_s8.c; TFLite int8
 * DepthwiseConvPerChannel semantics).
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
 * ox*stride_w - pad_w + kx*dilation_w. Taps outside the input contribute nothing. The
 * int32 accumulator wraps in two's complement (all sums modulo 2^32).
 *
 * Technique (depth_multiplier 1, no scratch from the caller): channels are taken four at
 * a time, over the whole output. The group's filter taps are sign-extended once into
 * a stack table of {w0, w2} {w1, w3} int16 pairs (at most DW_MAX_TAPS taps: 512 bytes).
 * For each output pixel and in-bounds tap, one word load brings the four input
 * channels, SXTAB16 and SXTAB16 ROR #8 split them into {x0, x2} {x1, x3} with the input
 * offset added in the same instruction, and SMLABB / SMLATT do the four per-channel
 * multiply-accumulates against the two table words. A 3x3 filter whose window lies
 * inside the input (the common case) runs fully unrolled. Border windows visit only
 * their in-bounds taps, so padding needs no other code.
 * Channels past the last multiple of four, depth multipliers above 1, filters with more
 * than DW_MAX_TAPS taps and a multiplier of INT32_MIN (outside the QuantizeMultiplier
 * range, but accepted) take a plain per-channel loop with mcuqp_requantize().
 * Requantization uses the exact SMLAL form of mcuqp_intrinsics.h.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_nn.h"

#define DW_MAX_DIM (1 << 15)
#define DW_MAX_TAPS 64

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

/* The plain path for output channels [oc_lo, out_c): one output at a time, any depth
 * multiplier, any multiplier, mcuqp_requantize(). */
static void dw_plain(const mcuqp_conv_params *p, const mcuqp_requant *quant, const mcuqp_dims *in,
                     const int8_t *input, const mcuqp_dims *f, const int8_t *filter, const int32_t *bias,
                     const mcuqp_dims *out, int8_t *output, int32_t oc_lo)
{
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    const int32_t out_c = f->c;
    int32_t b;
    int32_t oy;
    int32_t ox;
    int32_t oc;
    for (b = 0; b < in->n; ++b) {
        for (oy = 0; oy < out->h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky_lo;
            int32_t ky_hi;
            tap_range(y0, p->dilation_h, f->h, in->h, &ky_lo, &ky_hi);
            for (ox = 0; ox < out->w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx_lo;
                int32_t kx_hi;
                tap_range(x0, p->dilation_w, f->w, in->w, &kx_lo, &kx_hi);
                int8_t *o = output + (((size_t)b * (size_t)out->h + (size_t)oy) * (size_t)out->w + (size_t)ox) *
                                         (size_t)out_c;
                for (oc = oc_lo; oc < out_c; ++oc) {
                    const int32_t ic = oc / p->depth_multiplier;
                    uint32_t acc = bias != NULL ? (uint32_t)bias[oc] : 0u;
                    int32_t ky;
                    int32_t kx;
                    for (ky = ky_lo; ky < ky_hi; ++ky) {
                        const int32_t iy = y0 + ky * p->dilation_h;
                        for (kx = kx_lo; kx < kx_hi; ++kx) {
                            const int32_t ix = x0 + kx * p->dilation_w;
                            const int32_t x = input[(((size_t)b * (size_t)in->h + (size_t)iy) * (size_t)in->w +
                                                     (size_t)ix) * (size_t)in->c + (size_t)ic];
                            const int32_t w = filter[((size_t)ky * (size_t)f->w + (size_t)kx) * (size_t)out_c +
                                                     (size_t)oc];
                            acc += (uint32_t)(w * (x + p->input_offset));
                        }
                    }
                    const int32_t q = quant->count == 1 ? 0 : oc;
                    const int32_t r = mcuqp_requantize((int32_t)acc, quant->multiplier[q], quant->shift[q]);
                    o[oc] = (int8_t)(mcuqp_clamp_i32(r, lo, hi) + p->output_offset);
                }
            }
        }
    }
}

/* Four channels of one window: acc[j] += sum over taps of (x_j + offset) * w_j, where x
 * points at the window's first in-bounds tap (channel c), step is the input distance
 * between horizontal taps, and wq at that tap's {w0, w2} {w1, w3} table entry. */
MCUQP_INLINE void taps_c4(const int8_t *x, const uint32_t *wq, int32_t rows, int32_t cols, size_t in_row,
                          size_t step, int32_t wq_row, uint32_t off2, int32_t acc[4])
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    int32_t r;
    for (r = 0; r < rows; ++r) {
        const int8_t *xp = x;
        const uint32_t *wp = wq;
        int32_t c;
        for (c = 0; c < cols; ++c) {
            const uint32_t v = mcuqp_read_s8x4(xp);
            const uint32_t xl = mcuqp_sxtab16(off2, v);
            const uint32_t xh = mcuqp_sxtab16_ror8(off2, v);
            a0 = mcuqp_smlabb(xl, wp[0], a0);
            a2 = mcuqp_smlatt(xl, wp[0], a2);
            a1 = mcuqp_smlabb(xh, wp[1], a1);
            a3 = mcuqp_smlatt(xh, wp[1], a3);
            xp += step;
            wp += 2;
        }
        x += in_row;
        wq += wq_row;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One 3-tap row of a 3x3 window inside the input. */
#define DW_TAP3(xp, wp)                                                                                          \
    do {                                                                                                         \
        uint32_t v_ = mcuqp_read_s8x4(xp);                                                                       \
        uint32_t xl_ = mcuqp_sxtab16(off2, v_);                                                                  \
        uint32_t xh_ = mcuqp_sxtab16_ror8(off2, v_);                                                             \
        a0 = mcuqp_smlabb(xl_, (wp)[0], a0);                                                                     \
        a2 = mcuqp_smlatt(xl_, (wp)[0], a2);                                                                     \
        a1 = mcuqp_smlabb(xh_, (wp)[1], a1);                                                                     \
        a3 = mcuqp_smlatt(xh_, (wp)[1], a3);                                                                     \
        v_ = mcuqp_read_s8x4((xp) + step);                                                                       \
        xl_ = mcuqp_sxtab16(off2, v_);                                                                           \
        xh_ = mcuqp_sxtab16_ror8(off2, v_);                                                                      \
        a0 = mcuqp_smlabb(xl_, (wp)[2], a0);                                                                     \
        a2 = mcuqp_smlatt(xl_, (wp)[2], a2);                                                                     \
        a1 = mcuqp_smlabb(xh_, (wp)[3], a1);                                                                     \
        a3 = mcuqp_smlatt(xh_, (wp)[3], a3);                                                                     \
        v_ = mcuqp_read_s8x4((xp) + 2 * step);                                                                   \
        xl_ = mcuqp_sxtab16(off2, v_);                                                                           \
        xh_ = mcuqp_sxtab16_ror8(off2, v_);                                                                      \
        a0 = mcuqp_smlabb(xl_, (wp)[4], a0);                                                                     \
        a2 = mcuqp_smlatt(xl_, (wp)[4], a2);                                                                     \
        a1 = mcuqp_smlabb(xh_, (wp)[5], a1);                                                                     \
        a3 = mcuqp_smlatt(xh_, (wp)[5], a3);                                                                     \
    } while (0)

/* A full 3x3 window, four channels. */
MCUQP_INLINE void taps_3x3_c4(const int8_t *x, const uint32_t *wq, size_t in_row, size_t step, uint32_t off2,
                              int32_t acc[4])
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    DW_TAP3(x, wq);
    DW_TAP3(x + in_row, wq + 6);
    DW_TAP3(x + 2 * in_row, wq + 12);
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
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
    const int32_t out_c = filter_dims->c;
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const int32_t taps = k_h * k_w;
    if (params->depth_multiplier != 1 || taps > DW_MAX_TAPS ||
        !mcuqp_multipliers_nomin(quant->multiplier, quant->count)) {
        dw_plain(params, quant, input_dims, input, filter_dims, filter, bias, output_dims, output, 0);
        return MCUQP_OK;
    }

    uint32_t wq[2 * DW_MAX_TAPS]; /* {w0, w2}, {w1, w3} per tap for the current group */
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t dil_h = params->dilation_h;
    const int32_t dil_w = params->dilation_w;
    const size_t in_px = (size_t)out_c; /* depth_multiplier 1: in_c == out_c */
    const size_t in_row = (size_t)in_w * in_px;
    const size_t in_image = (size_t)in_h * in_row;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    const size_t step = (size_t)dil_w * in_px;
    const size_t row_step = (size_t)dil_h * in_row;
    const uint32_t off2 = mcuqp_dup_s16(params->input_offset);
    const int32_t out_offset = params->output_offset;
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const int full3x3 = k_h == 3 && k_w == 3;
    const int32_t groups_end = out_c & ~3;

    int32_t c;
    for (c = 0; c < groups_end; c += 4) {
        int32_t mult[4];
        int32_t shift[4];
        uint32_t b4[4];
        int32_t j;
        int32_t t;
        for (j = 0; j < 4; ++j) {
            const int32_t q = quant->count == 1 ? 0 : c + j;
            mult[j] = quant->multiplier[q];
            shift[j] = quant->shift[q];
            b4[j] = bias != NULL ? (uint32_t)bias[c + j] : 0u;
        }
        for (t = 0; t < taps; ++t) {
            const uint32_t v = mcuqp_read_s8x4(filter + (size_t)t * (size_t)out_c + (size_t)c);
            wq[2 * t] = mcuqp_sxtb16(v);
            wq[2 * t + 1] = mcuqp_sxtb16_ror8(v);
        }
        int32_t b;
        for (b = 0; b < input_dims->n; ++b) {
            const int8_t *image = input + (size_t)b * in_image + (size_t)c;
            int8_t *out = output + (size_t)b * out_image + (size_t)c;
            int32_t oy;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_h;
                int32_t ky_lo;
                int32_t ky_hi;
                tap_range(y0, dil_h, k_h, in_h, &ky_lo, &ky_hi);
                const int row_full = ky_lo == 0 && ky_hi == k_h;
                int32_t ox;
                for (ox = 0; ox < out_w; ++ox, out += out_c) {
                    const int32_t x0 = ox * params->stride_w - params->pad_w;
                    int32_t kx_lo;
                    int32_t kx_hi;
                    int32_t acc[4] = {0, 0, 0, 0};
                    tap_range(x0, dil_w, k_w, in_w, &kx_lo, &kx_hi);
                    if (row_full && kx_lo == 0 && kx_hi == k_w && full3x3) {
                        taps_3x3_c4(image + (size_t)y0 * in_row + (size_t)x0 * in_px, wq, row_step, step, off2, acc);
                    } else if (kx_hi > kx_lo && ky_hi > ky_lo) {
                        const int8_t *x = image + (size_t)(y0 + ky_lo * dil_h) * in_row +
                                          (size_t)(x0 + kx_lo * dil_w) * in_px;
                        taps_c4(x, wq + 2 * (ky_lo * k_w + kx_lo), ky_hi - ky_lo, kx_hi - kx_lo, row_step, step,
                                2 * k_w, off2, acc);
                    }
                    for (j = 0; j < 4; ++j) {
                        out[j] = mcuqp_output_nomin((int32_t)((uint32_t)acc[j] + b4[j]), mult[j], shift[j], lo, hi,
                                                    out_offset);
                    }
                }
            }
        }
    }
    if (groups_end < out_c) {
        dw_plain(params, quant, input_dims, input, filter_dims, filter, bias, output_dims, output, groups_end);
    }
    return MCUQP_OK;
}
