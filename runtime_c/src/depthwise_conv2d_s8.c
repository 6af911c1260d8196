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
 * Speed (portable C, no scratch buffer): output channels are taken four at a time (all
 * windows of a pixel share their geometry, borders included), so the loop overhead of
 * every tap is shared by four multiply-accumulates; with depth_multiplier 1 the four
 * inputs and weights are adjacent bytes. input_offset * sum(filter[.][.][oc]) is computed
 * once per channel and added to a plain dot product for every window fully inside the
 * input; border windows add the offset to each input they read. The common 3x3 undilated
 * case with depth_multiplier 1 copies the group's 36 filter bytes once (constant offsets
 * instead of nine tap pointers) and runs one unrolled nine-tap dot product for every
 * window: in place inside the input, and on a 3x3x4 patch padded with the input zero point
 * (whose offset-corrected value is zero) at the border.
 */
#include <string.h>

#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

/* Where one batch's image and the filter taps live. */
typedef struct {
    const int8_t *input;  /* the image, advanced to the group's first input channel */
    const int8_t *filter; /* (k_h, k_w, out_c), advanced to the group's first channel */
    size_t in_row;        /* bytes per input row */
    size_t in_px;         /* bytes per input pixel: in_c */
    size_t tap_step;      /* bytes between horizontal taps: dilation_w * in_c */
    size_t w_row;         /* bytes per filter row: k_w * out_c */
    size_t w_tap;         /* bytes between filter taps: out_c */
    int32_t dil_h;
    int32_t dil_w;
} dw_geom;

/* Four channels of one window, taps [ky_lo, ky_hi) x [kx_lo, kx_hi) (inside the input):
 * acc[j] = sum of (input[xo_j] + off) * filter[wo_j], inputs offset by `off`. Called with
 * constant offsets (0, 1, 2, 3) and off = 0 where it can, so the compiler drops the adds
 * and uses immediate addressing. */
MCUQP_INLINE void window_c4(const dw_geom *g, int32_t y0, int32_t x0, int32_t ky_lo, int32_t ky_hi, int32_t kx_lo,
                            int32_t kx_hi, int32_t off, size_t xo1, size_t xo2, size_t xo3, size_t wo1, size_t wo2,
                            size_t wo3, uint32_t acc[4])
{
    uint32_t a0 = 0u;
    uint32_t a1 = 0u;
    uint32_t a2 = 0u;
    uint32_t a3 = 0u;
    if (kx_hi > kx_lo) {
        int32_t ky;
        for (ky = ky_lo; ky < ky_hi; ++ky) {
            const int8_t *x = g->input + (size_t)(y0 + ky * g->dil_h) * g->in_row +
                              (size_t)(x0 + kx_lo * g->dil_w) * g->in_px;
            const int8_t *w = g->filter + (size_t)ky * g->w_row + (size_t)kx_lo * g->w_tap;
            int32_t kx;
            for (kx = 0; kx < kx_hi - kx_lo; ++kx) {
                const int8_t *xp = x + (size_t)kx * g->tap_step;
                const int8_t *wp = w + (size_t)kx * g->w_tap;
                a0 += (uint32_t)((xp[0] + off) * wp[0]);
                a1 += (uint32_t)((xp[xo1] + off) * wp[wo1]);
                a2 += (uint32_t)((xp[xo2] + off) * wp[wo2]);
                a3 += (uint32_t)((xp[xo3] + off) * wp[wo3]);
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One tap of four adjacent channels (depth_multiplier 1): a[j] += x[j] * w[j]. */
MCUQP_INLINE void tap_c4(const int8_t *x, const int8_t *w, uint32_t a[4])
{
    a[0] += (uint32_t)(x[0] * w[0]);
    a[1] += (uint32_t)(x[1] * w[1]);
    a[2] += (uint32_t)(x[2] * w[2]);
    a[3] += (uint32_t)(x[3] * w[3]);
}

/* A 3x3 window inside the input, four adjacent channels, no offset: the nine taps
 * unrolled (x at the window's top-left input, rows in_row apart, columns in_px apart; the
 * filter's taps w_tap apart). */
MCUQP_INLINE void window_3x3_c4(const int8_t *x, const int8_t *w, size_t in_row, size_t in_px, size_t w_tap,
                                uint32_t a[4])
{
    const int8_t *x1 = x + in_row;
    const int8_t *x2 = x1 + in_row;
    tap_c4(x, w, a);
    tap_c4(x + in_px, w + w_tap, a);
    tap_c4(x + 2 * in_px, w + 2 * w_tap, a);
    tap_c4(x1, w + 3 * w_tap, a);
    tap_c4(x1 + in_px, w + 4 * w_tap, a);
    tap_c4(x1 + 2 * in_px, w + 5 * w_tap, a);
    tap_c4(x2, w + 6 * w_tap, a);
    tap_c4(x2 + in_px, w + 7 * w_tap, a);
    tap_c4(x2 + 2 * in_px, w + 8 * w_tap, a);
}

/* A group of four channels over the whole output. full[j] = bias + input_offset *
 * sum(filter) and bias[j] are added for windows inside / crossing the input border. */
typedef struct {
    const mcuqp_requant_ch *rq;
    const uint32_t *full;
    const uint32_t *bias;
    int32_t count; /* channels stored: 1..4 */
} dw_group;

/* One batch image for one channel group; xo/wo as in window_c4. */
MCUQP_INLINE void run_group(const dw_geom *g, const dw_group *grp, const mcuqp_conv_params *p, int32_t in_h,
                            int32_t in_w, int32_t k_h, int32_t k_w, int32_t out_h, int32_t out_w, int8_t *out,
                            size_t out_px, size_t xo1, size_t xo2, size_t xo3, size_t wo1, size_t wo2, size_t wo3)
{
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    int32_t oy;
    for (oy = 0; oy < out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        int32_t ky_lo;
        int32_t ky_hi;
        mcuqp_tap_range(y0, g->dil_h, k_h, in_h, &ky_lo, &ky_hi);
        const int row_full = ky_lo == 0 && ky_hi == k_h;
        int32_t ox;
        for (ox = 0; ox < out_w; ++ox) {
            int8_t *o = out + ((size_t)oy * (size_t)out_w + (size_t)ox) * out_px;
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int32_t kx_lo;
            int32_t kx_hi;
            mcuqp_tap_range(x0, g->dil_w, k_w, in_w, &kx_lo, &kx_hi);
            const int full = row_full && kx_lo == 0 && kx_hi == k_w;
            uint32_t acc[4];
            const uint32_t *base;
            if (full) {
                window_c4(g, y0, x0, 0, k_h, 0, k_w, 0, xo1, xo2, xo3, wo1, wo2, wo3, acc);
                base = grp->full;
            } else {
                window_c4(g, y0, x0, ky_lo, ky_hi, kx_lo, kx_hi, p->input_offset, xo1, xo2, xo3, wo1, wo2, wo3,
                          acc);
                base = grp->bias;
            }
            int32_t j;
            for (j = 0; j < grp->count; ++j) {
                o[j] = mcuqp_requant_ch_apply(&grp->rq[j], acc[j] + base[j], lo, hi, p->output_offset);
            }
        }
    }
}

/* Four adjacent channels' requantized outputs at o. */
MCUQP_INLINE void store_c4(int8_t *o, const uint32_t a[4], const dw_group *grp, int32_t lo, int32_t hi,
                           int32_t out_offset)
{
    o[0] = mcuqp_requant_ch_apply(&grp->rq[0], a[0], lo, hi, out_offset);
    o[1] = mcuqp_requant_ch_apply(&grp->rq[1], a[1], lo, hi, out_offset);
    o[2] = mcuqp_requant_ch_apply(&grp->rq[2], a[2], lo, hi, out_offset);
    o[3] = mcuqp_requant_ch_apply(&grp->rq[3], a[3], lo, hi, out_offset);
}

/* Four input bytes where keep is all ones, the zero point (four times in zp4) where it is
 * zero; src is always readable (coordinates clamped into the input). */
MCUQP_INLINE uint32_t gather4(const int8_t *src, uint32_t keep, uint32_t zp4)
{
    uint32_t v;
    memcpy(&v, src, 4);
    return (v & keep) | (zp4 & ~keep);
}

/* 3x3 undilated filter, depth_multiplier 1, four channels: one batch image. A window
 * inside the input is read in place; a border window is first gathered into a 3x3x4
 * patch whose outside taps hold the input zero point (-input_offset), which makes their
 * (input + input_offset) terms zero, so every window is the same unrolled dot product
 * plus bias + input_offset * sum(filter), with constant strides for the patch. */
static void run_group_3x3(const dw_geom *g, const dw_group *grp, const mcuqp_conv_params *p, int32_t in_h,
                          int32_t in_w, int32_t out_h, int32_t out_w, int8_t *out, size_t out_px)
{
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    const uint32_t zp4 = 0x01010101u * (uint32_t)(uint8_t)(-p->input_offset); /* the zero point, four times */
    /* columns [ox_lo, ox_hi) have windows inside the input width */
    int32_t ox_lo = 0;
    while (ox_lo < out_w && ox_lo * p->stride_w - p->pad_w < 0) {
        ++ox_lo;
    }
    int32_t ox_hi = ox_lo;
    while (ox_hi < out_w && ox_hi * p->stride_w - p->pad_w + 2 < in_w) {
        ++ox_hi;
    }
    const size_t x_step = (size_t)p->stride_w * g->in_px;
    /* The group's 3x3x4 filter bytes, gathered once: the windows then read them at
     * constant offsets instead of holding nine tap pointers. */
    int8_t wl[36];
    int32_t t;
    for (t = 0; t < 9; ++t) {
        memcpy(wl + 4 * t, g->filter + (size_t)t * g->w_tap, 4);
    }
    int32_t oy;
    for (oy = 0; oy < out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        const int row_in = y0 >= 0 && y0 + 2 < in_h;
        int8_t *o = out + (size_t)oy * (size_t)out_w * out_px;
        int32_t ox = 0;
        while (ox < out_w) {
            if (row_in && ox >= ox_lo && ox < ox_hi) {
                const int8_t *x = g->input + (size_t)y0 * g->in_row + (size_t)(ox * p->stride_w - p->pad_w) * g->in_px;
                for (; ox < ox_hi; ++ox) {
                    uint32_t a[4] = {grp->full[0], grp->full[1], grp->full[2], grp->full[3]};
                    window_3x3_c4(x, wl, g->in_row, g->in_px, 4, a);
                    store_c4(o + (size_t)ox * out_px, a, grp, lo, hi, p->output_offset);
                    x += x_step;
                }
                continue;
            }
            /* Branch-free gather: every tap loads from coordinates clamped into the input and
             * keeps the bytes where the tap is inside, the zero point elsewhere. */
            uint32_t patch[9]; /* 3x3 taps of four bytes */
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            const size_t c0 = (size_t)mcuqp_clamp_i32(x0, 0, in_w - 1) * g->in_px;
            const size_t c1 = (size_t)mcuqp_clamp_i32(x0 + 1, 0, in_w - 1) * g->in_px;
            const size_t c2 = (size_t)mcuqp_clamp_i32(x0 + 2, 0, in_w - 1) * g->in_px;
            const uint32_t k0 = x0 >= 0 && x0 < in_w ? 0xFFFFFFFFu : 0u;
            const uint32_t k1 = x0 + 1 >= 0 && x0 + 1 < in_w ? 0xFFFFFFFFu : 0u;
            const uint32_t k2 = x0 + 2 >= 0 && x0 + 2 < in_w ? 0xFFFFFFFFu : 0u;
            int32_t r;
            for (r = 0; r < 3; ++r) {
                const int32_t y = y0 + r;
                const int8_t *row = g->input + (size_t)mcuqp_clamp_i32(y, 0, in_h - 1) * g->in_row;
                const uint32_t y_in = y >= 0 && y < in_h ? 0xFFFFFFFFu : 0u;
                patch[3 * r] = gather4(row + c0, y_in & k0, zp4);
                patch[3 * r + 1] = gather4(row + c1, y_in & k1, zp4);
                patch[3 * r + 2] = gather4(row + c2, y_in & k2, zp4);
            }
            uint32_t a[4] = {grp->full[0], grp->full[1], grp->full[2], grp->full[3]};
            window_3x3_c4((const int8_t *)patch, wl, 12, 4, 4, a);
            store_c4(o + (size_t)ox * out_px, a, grp, lo, hi, p->output_offset);
            ++ox;
        }
    }
}

mcuqp_status mcuqp_depthwise_conv2d_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                       const mcuqp_dims *input_dims, const int8_t *input,
                                       const mcuqp_dims *filter_dims, const int8_t *filter,
                                       const int32_t *bias, const mcuqp_dims *output_dims,
                                       int8_t *output)
{
    if (params == NULL || quant == NULL || input_dims == NULL || input == NULL || filter_dims == NULL ||
        filter == NULL || output_dims == NULL || output == NULL ||
        !mcuqp_depthwise_valid_args(params, quant, input_dims, filter_dims, output_dims)) {
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
    const int32_t dm = params->depth_multiplier;
    const size_t in_image = (size_t)in_h * (size_t)in_w * (size_t)in_c;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    dw_geom g;
    g.in_row = (size_t)in_w * (size_t)in_c;
    g.in_px = (size_t)in_c;
    g.tap_step = (size_t)params->dilation_w * (size_t)in_c;
    g.w_row = (size_t)k_w * (size_t)out_c;
    g.w_tap = (size_t)out_c;
    g.dil_h = params->dilation_h;
    g.dil_w = params->dilation_w;

    int32_t oc0;
    for (oc0 = 0; oc0 < out_c; oc0 += 4) {
        /* Channels oc0 .. oc0 + 3; past the last channel, the last one is recomputed, not stored. */
        mcuqp_requant_ch rq[4];
        uint32_t full[4];
        uint32_t b[4];
        size_t xo[4];
        size_t wo[4];
        const int32_t ic0 = oc0 / dm;
        int32_t j;
        for (j = 0; j < 4; ++j) {
            const int32_t oc = mcuqp_min_i32(oc0 + j, out_c - 1);
            const int32_t q = quant->count == 1 ? 0 : oc;
            uint32_t w_sum = 0u;
            int32_t t;
            for (t = 0; t < k_h * k_w; ++t) {
                const int32_t v = filter[(size_t)t * g.w_tap + (size_t)oc]; /* named: see conv2d_s8.c */
                w_sum += (uint32_t)v;
            }
            rq[j] = mcuqp_requant_ch_make(quant->multiplier[q], quant->shift[q]);
            b[j] = bias != NULL ? (uint32_t)bias[oc] : 0u;
            full[j] = b[j] + (uint32_t)params->input_offset * w_sum;
            xo[j] = (size_t)(oc / dm - ic0);
            wo[j] = (size_t)(oc - oc0);
        }
        const dw_group grp = {rq, full, b, mcuqp_min_i32(4, out_c - oc0)};
        /* The common case gets constant offsets: adjacent input and filter bytes. */
        const int adjacent = dm == 1 && grp.count == 4;
        g.filter = filter + oc0;
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            g.input = input + (size_t)n * in_image + (size_t)ic0;
            int8_t *out = output + (size_t)n * out_image + (size_t)oc0;
            if (adjacent && k_h == 3 && k_w == 3 && g.dil_h == 1 && g.dil_w == 1) {
                run_group_3x3(&g, &grp, params, in_h, in_w, out_h, out_w, out, (size_t)out_c);
            } else if (adjacent) {
                run_group(&g, &grp, params, in_h, in_w, k_h, k_w, out_h, out_w, out, (size_t)out_c, 1, 2, 3, 1, 2, 3);
            } else {
                run_group(&g, &grp, params, in_h, in_w, k_h, k_w, out_h, out_w, out, (size_t)out_c, xo[1], xo[2],
                          xo[3], wo[1], wo[2], wo[3]);
            }
        }
    }
    return MCUQP_OK;
}

/* No scratch: the portable kernel keeps its working values in registers. */
int32_t mcuqp_depthwise_conv2d_s8_get_buffer_size(const mcuqp_dims *input_dims, const mcuqp_dims *filter_dims)
{
    if (!(mcuqp_conv_valid_shapes(input_dims, filter_dims))) {
        return MCUQP_ERR_ARG;
    }
    return 0;
}
