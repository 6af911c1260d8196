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
 * Technique (no scratch from the caller): output channels are taken four at a time, over
 * the whole output.
 *  - The group's filter taps are sign-extended once into a stack table of {w0, w2}
 *    {w1, w3} int16 pairs (at most DW_MAX_TAPS taps: 256 bytes).
 *  - The input rows a window row needs are widened once into a ring of DW_ROWS slots on
 *    the stack (768 bytes): per pixel, the group's four input channels (one word load
 *    with depth_multiplier 1, four byte loads otherwise) are split by SXTAB16 / SXTAB16
 *    ROR #8 into {x0, x2} {x1, x3} with the input offset added in the same instruction;
 *    pixels left or right of the input and rows above or below it are 0, which is
 *    exactly "contributes nothing", so borders need no other code. Input row iy sits in
 *    slot iy mod k_h, so each row is widened once per output-row sweep (columns are
 *    tiled when a row does not fit a slot).
 *  - Per output pixel and tap, one LDRD brings the two input words and one the two
 *    weight words; SMLABB / SMLATT do the four per-channel multiply-accumulates. A 3x3
 *    filter (dilation_w 1) runs fully unrolled with immediate offsets: 9 x (2 LDRD + 4
 *    MAC) per pixel and four channels.
 *  - Accumulators start at the bias; requantization uses the exact high-word SMLAL form
 *    of mcuqp_intrinsics.h and QADD + SSAT for the full int8 clamp.
 * Channels past the last multiple of four, filters with more than DW_MAX_TAPS taps or
 * DW_ROWS rows (or too wide for a ring slot) and a multiplier of INT32_MIN (outside the
 * QuantizeMultiplier range, but accepted) take a plain per-channel loop with
 * mcuqp_requantize().
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

#define DW_MAX_TAPS 32    /* filter taps of the fast path: a 256-byte table */
#define DW_ROWS 8         /* filter rows of the fast path */
#define DW_RING_WORDS 192 /* the input-row ring: 768 bytes */

/* The plain path for output channels [oc_lo, out_c): one output at a time, any depth
 * multiplier, any multiplier, mcuqp_requantize(). */
MCUQP_NOINLINE static void dw_plain(const mcuqp_conv_params *p, const mcuqp_requant *quant, const mcuqp_dims *in,
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
            mcuqp_tap_range(y0, p->dilation_h, f->h, in->h, &ky_lo, &ky_hi);
            for (ox = 0; ox < out->w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t kx_lo;
                int32_t kx_hi;
                mcuqp_tap_range(x0, p->dilation_w, f->w, in->w, &kx_lo, &kx_hi);
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

/* Input rows for one channel group, as int16 (input + input_offset) pairs {x0, x2}
 * {x1, x3} per pixel (two words), padding pixels and rows 0: a ring of at most DW_ROWS
 * slots, each DW_RING_WORDS / slots words long, tagged with the input row it holds. */
typedef struct {
    uint32_t *slot[DW_ROWS];
    int32_t tag[DW_ROWS]; /* input row held, or INT32_MIN */
    int32_t slots;
} dw_ring;

/* The four input channels of an output-channel group, as offsets from the first: 0, 1, 2,
 * 3 for depth_multiplier 1 (one word load), else (c + j) / dm - c / dm. */
typedef struct {
    int32_t l1;
    int32_t l2;
    int32_t l3;
    int contiguous;
} dw_lanes;

/* Fill `dst` with input row iy (any row: outside the input gives zeros), pixels
 * [x_lo, x_lo + count) of the current image (image points at the group's first input
 * channel). */
static void gather_row(uint32_t *dst, const int8_t *image, int32_t iy, int32_t x_lo, int32_t count, int32_t in_h,
                       int32_t in_w, size_t in_px, const dw_lanes *lanes, uint32_t off2)
{
    int32_t i = 0;
    if (iy < 0 || iy >= in_h) {
        for (; i < count; ++i) {
            dst[2 * i] = 0u;
            dst[2 * i + 1] = 0u;
        }
        return;
    }
    const int8_t *row = image + (size_t)iy * (size_t)in_w * in_px;
    const int32_t lead = mcuqp_clamp_i32(-x_lo, 0, count);          /* pixels left of the input */
    const int32_t inside = mcuqp_clamp_i32(in_w - x_lo, lead, count); /* end of the in-bounds part */
    for (; i < lead; ++i) {
        dst[2 * i] = 0u;
        dst[2 * i + 1] = 0u;
    }
    const int8_t *src = row + (size_t)(x_lo + i) * in_px;
    if (lanes->contiguous) {
        for (; i < inside; ++i) {
            const uint32_t v = mcuqp_read_s8x4(src);
            src += in_px;
            dst[2 * i] = mcuqp_sxtab16(off2, v);
            dst[2 * i + 1] = mcuqp_sxtab16_ror8(off2, v);
        }
    } else {
        for (; i < inside; ++i) {
            const uint32_t v = (uint32_t)(uint8_t)src[0] | ((uint32_t)(uint8_t)src[lanes->l1] << 8) |
                               ((uint32_t)(uint8_t)src[lanes->l2] << 16) | ((uint32_t)(uint8_t)src[lanes->l3] << 24);
            src += in_px;
            dst[2 * i] = mcuqp_sxtab16(off2, v);
            dst[2 * i + 1] = mcuqp_sxtab16_ror8(off2, v);
        }
    }
    for (; i < count; ++i) {
        dst[2 * i] = 0u;
        dst[2 * i + 1] = 0u;
    }
}

/* One tap: acc += x * w per channel, x and w two words {c0, c2} {c1, c3} each. */
#define DW_TAP(xp, wp)                                                                                           \
    do {                                                                                                         \
        const uint32_t xl_ = (xp)[0];                                                                            \
        const uint32_t xh_ = (xp)[1];                                                                            \
        const uint32_t wl_ = (wp)[0];                                                                            \
        const uint32_t wh_ = (wp)[1];                                                                            \
        a0 = mcuqp_smlabb(xl_, wl_, a0);                                                                         \
        a2 = mcuqp_smlatt(xl_, wl_, a2);                                                                         \
        a1 = mcuqp_smlabb(xh_, wh_, a1);                                                                         \
        a3 = mcuqp_smlatt(xh_, wh_, a3);                                                                         \
    } while (0)

/* What the outputs of a channel group need. */
typedef struct {
    mcuqp_rq rq[4];
    int32_t bias[4];
    int32_t out_offset;
    int32_t lo; /* act_min - out_offset */
    int32_t hi; /* act_max - out_offset */
    int quick;  /* all four requantizations take the high-word form and the clamp is [-128, 127] */
} dw_group;

/* Requantize and store the four channels of one output pixel. */
MCUQP_INLINE void store_c4(int8_t *out, const dw_group *g, int32_t a0, int32_t a1, int32_t a2, int32_t a3)
{
    if (g->quick) {
        out[0] = (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast(a0, &g->rq[0]), g->out_offset);
        out[1] = (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast(a1, &g->rq[1]), g->out_offset);
        out[2] = (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast(a2, &g->rq[2]), g->out_offset);
        out[3] = (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast(a3, &g->rq[3]), g->out_offset);
    } else {
        const int full = g->lo == -128 - g->out_offset && g->hi == 127 - g->out_offset;
        out[0] = mcuqp_rq_output(a0, &g->rq[0], full, g->lo, g->hi, g->out_offset);
        out[1] = mcuqp_rq_output(a1, &g->rq[1], full, g->lo, g->hi, g->out_offset);
        out[2] = mcuqp_rq_output(a2, &g->rq[2], full, g->lo, g->hi, g->out_offset);
        out[3] = mcuqp_rq_output(a3, &g->rq[3], full, g->lo, g->hi, g->out_offset);
    }
}

/* One tap at constant byte offsets: x at row + xoff, w at wq + woff (two words each). */
#define DW_TAP_AT(row, xoff, woff)                                                                               \
    do {                                                                                                         \
        uint32_t xl_;                                                                                            \
        uint32_t xh_;                                                                                            \
        uint32_t wl_;                                                                                            \
        uint32_t wh_;                                                                                            \
        MCUQP_LDRD(row, xoff, xl_, xh_);                                                                         \
        MCUQP_LDRD(wq, woff, wl_, wh_);                                                                          \
        a0 = mcuqp_smlabb(xl_, wl_, a0);                                                                         \
        a2 = mcuqp_smlatt(xl_, wl_, a2);                                                                         \
        a1 = mcuqp_smlabb(xh_, wh_, a1);                                                                         \
        a3 = mcuqp_smlatt(xh_, wh_, a3);                                                                         \
    } while (0)

/* One output pixel of a 3x3 window (dilation_w 1): rows r0, r1, r2 at its first pixel. */
MCUQP_INLINE void pixel_3x3(int8_t *out, const uint32_t *r0, const uint32_t *r1, const uint32_t *r2,
                            const uint32_t *wq, const dw_group *g)
{
    int32_t a0 = g->bias[0];
    int32_t a1 = g->bias[1];
    int32_t a2 = g->bias[2];
    int32_t a3 = g->bias[3];
    DW_TAP_AT(r0, 0, 0);
    DW_TAP_AT(r0, 8, 8);
    DW_TAP_AT(r0, 16, 16);
    DW_TAP_AT(r1, 0, 24);
    DW_TAP_AT(r1, 8, 32);
    DW_TAP_AT(r1, 16, 40);
    DW_TAP_AT(r2, 0, 48);
    DW_TAP_AT(r2, 8, 56);
    DW_TAP_AT(r2, 16, 64);
    store_c4(out, g, a0, a1, a2, a3);
}

/* A row of tw output pixels of a 3x3 window (dilation_w 1), stride_w pixels apart. */
MCUQP_NOINLINE static void row_3x3(int8_t *out, size_t out_step, uint32_t *const *rows, size_t stride_w, int32_t tw,
                                   const uint32_t *wq, const dw_group *g)
{
    const uint32_t *r0 = rows[0];
    const uint32_t *r1 = rows[1];
    const uint32_t *r2 = rows[2];
    const size_t px_step = 2u * stride_w;
    int32_t i;
    for (i = 0; i < tw; ++i, out += out_step) {
        pixel_3x3(out, r0, r1, r2, wq, g);
        r0 += px_step;
        r1 += px_step;
        r2 += px_step;
    }
}

/* One output pixel of any window: row ky of the window is rows[ky] + px, taps dil_w
 * pixels apart. */
MCUQP_INLINE void pixel_any(int8_t *out, uint32_t *const *rows, size_t px, const uint32_t *wq, int32_t k_h,
                            int32_t k_w, int32_t dil_w, const dw_group *g)
{
    int32_t a0 = g->bias[0];
    int32_t a1 = g->bias[1];
    int32_t a2 = g->bias[2];
    int32_t a3 = g->bias[3];
    int32_t ky;
    int32_t kx;
    for (ky = 0; ky < k_h; ++ky) {
        const uint32_t *x = rows[ky] + px;
        for (kx = 0; kx < k_w; ++kx) {
            DW_TAP(x, wq);
            x += 2 * dil_w;
            wq += 2;
        }
    }
    store_c4(out, g, a0, a1, a2, a3);
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
    const int32_t out_c = filter_dims->c;
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const int32_t taps = k_h * k_w;
    if (taps > DW_MAX_TAPS || k_h > DW_ROWS ||
        (DW_RING_WORDS / 2 / k_h) < (k_w - 1) * params->dilation_w + 1 ||
        !mcuqp_requant_nomin(quant)) {
        dw_plain(params, quant, input_dims, input, filter_dims, filter, bias, output_dims, output, 0);
        return MCUQP_OK;
    }

    uint32_t wq[2 * DW_MAX_TAPS];    /* {w0, w2}, {w1, w3} per tap for the current group */
    /* cppcheck-suppress unassignedVariable ; written through ring.slot[] by gather_row */
    uint32_t ring_words[DW_RING_WORDS]; /* the input-row ring */
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t stride_w = params->stride_w;
    const int32_t dil_h = params->dilation_h;
    const int32_t dil_w = params->dilation_w;
    const int32_t dm = params->depth_multiplier;
    const size_t in_px = (size_t)input_dims->c;
    const size_t in_image = (size_t)in_h * (size_t)in_w * in_px;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    const uint32_t off2 = mcuqp_dup_s16(params->input_offset);
    const int32_t out_offset = params->output_offset;
    const int full = params->act_min == -128 && params->act_max == 127;
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const int fast3x3 = k_h == 3 && k_w == 3 && dil_w == 1;
    const int32_t groups_end = out_c & ~3;
    /* Output columns per tile: their input span must fit a ring slot. */
    const int32_t slot_px = DW_RING_WORDS / 2 / k_h;
    const int32_t reach = (k_w - 1) * dil_w + 1;
    const int32_t tile_w = mcuqp_min_i32(out_w, (slot_px - reach) / stride_w + 1);
    dw_ring ring;
    int32_t j;
    /* Rows map to slots by iy mod k_h when dilation_h and k_h are coprime. */
    int32_t ga = k_h;
    int32_t gb = dil_h;
    while (gb != 0) {
        const int32_t t = ga % gb;
        ga = gb;
        gb = t;
    }
    const int ring_mod = ga == 1;
    for (j = 0; j < k_h; ++j) {
        ring.slot[j] = ring_words + (size_t)j * (size_t)slot_px * 2u;
    }
    /* cppcheck-suppress unreadVariable ; kept so that the frame (and the benchmarks' stack figures) stay as they are */
    ring.slots = k_h;

    int32_t c;
    for (c = 0; c < groups_end; c += 4) {
        dw_group grp;
        int32_t t;
        grp.out_offset = out_offset;
        grp.lo = lo;
        grp.hi = hi;
        grp.quick = full;
        for (j = 0; j < 4; ++j) {
            const int32_t q = quant->count == 1 ? 0 : c + j;
            grp.rq[j] = mcuqp_rq_prepare(quant->multiplier[q], quant->shift[q]);
            grp.bias[j] = bias != NULL ? bias[c + j] : 0;
            grp.quick = grp.quick && mcuqp_rq_fast(&grp.rq[j]);
        }
        dw_lanes lanes;
        lanes.l1 = (c + 1) / dm - c / dm;
        lanes.l2 = (c + 2) / dm - c / dm;
        lanes.l3 = (c + 3) / dm - c / dm;
        lanes.contiguous = dm == 1;
        for (t = 0; t < taps; ++t) {
            const uint32_t v = mcuqp_read_s8x4(filter + (size_t)t * (size_t)out_c + (size_t)c);
            wq[2 * t] = mcuqp_sxtb16(v);
            wq[2 * t + 1] = mcuqp_sxtb16_ror8(v);
        }
        int32_t b;
        for (b = 0; b < input_dims->n; ++b) {
            const int8_t *image = input + (size_t)b * in_image + (size_t)(c / dm);
            int32_t ox0;
            for (ox0 = 0; ox0 < out_w; ox0 += tile_w) {
                const int32_t tw = mcuqp_min_i32(tile_w, out_w - ox0);
                const int32_t x_lo = ox0 * stride_w - params->pad_w; /* input column of the slot's pixel 0 */
                const int32_t span = (tw - 1) * stride_w + reach;
                for (j = 0; j < k_h; ++j) {
                    ring.tag[j] = INT32_MIN;
                }
                int32_t oy;
                for (oy = 0; oy < out_h; ++oy) {
                    const int32_t y0 = oy * params->stride_h - params->pad_h;
                    uint32_t *rows[DW_ROWS];
                    int32_t ky;
                    /* The k_h rows of this output row: input row iy lives in slot iy mod k_h
                     * (distinct within a window when dilation_h and k_h are coprime), else
                     * in slot ky; a slot holding another row is reloaded. */
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = y0 + ky * dil_h;
                        int32_t slot = ky;
                        if (ring_mod) {
                            slot = iy % k_h;
                            slot += slot < 0 ? k_h : 0;
                        }
                        if (ring.tag[slot] != iy) {
                            ring.tag[slot] = iy;
                            gather_row(ring.slot[slot], image, iy, x_lo, span, in_h, in_w, in_px, &lanes, off2);
                        }
                        rows[ky] = ring.slot[slot];
                    }
                    int8_t *out = output + (size_t)b * out_image +
                                  ((size_t)oy * (size_t)out_w + (size_t)ox0) * (size_t)out_c + (size_t)c;
                    if (fast3x3) {
                        row_3x3(out, (size_t)out_c, rows, (size_t)stride_w, tw, wq, &grp);
                    } else {
                        int32_t i;
                        for (i = 0; i < tw; ++i, out += out_c) {
                            pixel_any(out, rows, (size_t)i * (size_t)stride_w * 2u, wq, k_h, k_w, dil_w, &grp);
                        }
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

/* The split filter taps and the input-row ring: 1024 bytes (on this kernel's stack today). */
int32_t mcuqp_depthwise_conv2d_s8_get_buffer_size(const mcuqp_dims *input_dims, const mcuqp_dims *filter_dims)
{
    if (!(mcuqp_conv_valid_shapes(input_dims, filter_dims))) {
        return MCUQP_ERR_ARG;
    }
    return (int32_t)(sizeof(uint32_t) * (2 * DW_MAX_TAPS + DW_RING_WORDS));
}
