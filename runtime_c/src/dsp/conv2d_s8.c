/*
 * 2-D convolution, int8 NHWC -> int8 NHWC, Cortex-M DSP-extension variant (same contract
 * and results as runtime_c/src/conv2d_s8.c; TFLite int8 ConvPerChannel semantics).
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
 * Taps outside the input contribute nothing. The int32 accumulator wraps in two's
 * complement; all sums are taken modulo 2^32, so their order cannot change a result.
 *
 * Technique (im2col + SMLAD matrix product, no scratch from the caller):
 *  - Output pixels are taken four at a time, in raster order across rows and batches, so
 *    odd widths cost nothing. Each pixel's window, flattened in filter order (ky, kx, ic),
 *    is written as int16 (input + input_offset) into a column of a stack buffer (four
 *    columns of CONV_WIDE_K = 144 entries, 288 bytes apart: 3x3x16 windows fit); padding taps
 *    become 0, which is exactly "contributes nothing", so dilation and borders need no
 *    other code. Within every group of four entries the lanes are stored {x0, x2}
 *    {x1, x3}, the order in which SXTB16 / SXTB16 ROR #8 split a filter word, so the
 *    conversion is one load, two SXTAB16 (which add the offset for free) and two stores
 *    per four inputs. In-bounds runs are converted straight from the input when in_c is
 *    a multiple of 4 (and for windows that are one contiguous run, e.g. 1x1); otherwise
 *    the window is first gathered as int8, padded with the input zero point, in the
 *    upper half of its own column and converted in place.
 *  - For each output channel a filter word is loaded once, split into two int16 pairs and
 *    fed to two SMLADs per column; the columns sit at fixed offsets from each other, so
 *    each column pair of words is one LDRD with an immediate offset: 16 MACs for 1
 *    filter load, 2 SXTB16, 4 LDRD and 8 SMLAD, two groups per loop iteration,
 *    everything in registers (34 instructions per 32 MACs on Cortex-M4).
 *  - Windows longer than 144 entries are processed in equal chunks of at most 144, with
 *    the partial sums of a block of CONV_ACC_CH channels x 4 pixels in a 256-byte stack
 *    array; the columns are then rebuilt once per channel block.
 *  - Accumulators start at the bias. Requantization uses the exact high-word SMLAL form
 *    of mcuqp_intrinsics.h (7 instructions) and QADD + SSAT for the full int8 clamp; a
 *    multiplier of INT32_MIN (outside the QuantizeMultiplier range, but accepted) sends
 *    the call to a plain loop with mcuqp_requantize().
 * Stack: 1152 bytes of columns + 256 bytes of partial sums.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

#define CONV_WIDE_K 144                    /* four columns of 144 int16 entries, 288 bytes apart */
#define CONV_COL_WORDS (4 * CONV_WIDE_K / 2) /* the im2col buffer: 1152 bytes */
#define CONV_ACC_CH 16     /* channels per block when a window needs chunks */

/* One batch image and the convolution geometry. */
typedef struct {
    const int8_t *image; /* (in_h, in_w, in_c) of the current batch */
    int32_t in_h;
    int32_t in_w;
    int32_t in_c;
    int32_t k_h;
    int32_t k_w;
    int32_t dil_h;
    int32_t dil_w;
    int32_t zero_point; /* -input_offset: the int8 value that adds nothing */
    uint32_t off2;      /* input_offset in both int16 lanes */
} conv_geom;

static void copy_s8(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        mcuqp_write_s8x4(dst, mcuqp_read_s8x4(src));
    }
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
}

static void fill_s8(int8_t *dst, int32_t value, int32_t n)
{
    const uint32_t v4 = ((uint32_t)value & 0xFFu) * 0x01010101u;
    for (; n >= 4; n -= 4, dst += 4) {
        mcuqp_write_s8x4(dst, v4);
    }
    for (; n > 0; --n) {
        *dst++ = (int8_t)value;
    }
}

/* words[2g], words[2g + 1] = {x0, x2} + offset, {x1, x3} + offset for the groups of four
 * bytes of src[0 .. 4 * groups). */
static inline void widen_groups(uint32_t *words, const int8_t *src, int32_t groups, uint32_t off2)
{
    int32_t g;
    for (g = 0; g < groups; ++g) {
        const uint32_t v = mcuqp_read_s8x4(src);
        src += 4;
        words[0] = mcuqp_sxtab16(off2, v);
        words[1] = mcuqp_sxtab16_ror8(off2, v);
        words += 2;
    }
}

/* Window entries [k0, k1) (k0 a multiple of 4) of the pixel whose window starts at input
 * (y0, x0), as a column of kc >= k1 - k0 entries: ceil((k1 - k0) / 4) groups, entries past
 * k1 - k0 zero. The column's upper half (bytes kc .. 2 kc) stages int8 windows. */
MCUQP_NOINLINE static void im2col(const conv_geom *g, int32_t y0, int32_t x0, int32_t k0, int32_t k1, int32_t kc, uint32_t *col)
{
    const int32_t len = k1 - k0;
    const int32_t groups = (len + 3) >> 2;
    const int32_t in_c = g->in_c;
    int32_t kx_lo;
    int32_t kx_hi;

    if (g->k_h == 1 && (g->k_w == 1 || g->dil_w == 1) && y0 >= 0 && y0 < g->in_h) {
        mcuqp_tap_range(x0, g->dil_w, g->k_w, g->in_w, &kx_lo, &kx_hi);
        if (kx_lo == 0 && kx_hi == g->k_w) {
            /* One contiguous in-bounds run: widen it straight from the input. */
            const int8_t *src = g->image + ((size_t)y0 * (size_t)g->in_w + (size_t)x0) * (size_t)in_c + (size_t)k0;
            const int32_t full = len >> 2;
            widen_groups(col, src, full, g->off2);
            if (full < groups) {
                int8_t tail[4];
                fill_s8(tail, g->zero_point, 4);
                copy_s8(tail, src + 4 * full, len & 3);
                widen_groups(col + 2 * full, tail, 1, g->off2);
            }
            return;
        }
    }

    const int aligned = (in_c & 3) == 0;
    int8_t *stage = (int8_t *)col + kc;
    const int32_t y_last = y0 + (g->k_h - 1) * g->dil_h;
    mcuqp_tap_range(x0, g->dil_w, g->k_w, g->in_w, &kx_lo, &kx_hi);
    if (k0 == 0 && k1 == g->k_h * g->k_w * in_c && g->dil_w == 1 && kx_lo == 0 && kx_hi == g->k_w && y0 >= 0 &&
        y_last < g->in_h) {
        /* A whole window inside the input: one run of k_w * in_c inputs per filter row. */
        const int32_t run = g->k_w * in_c;
        const size_t row_step = (size_t)g->dil_h * (size_t)g->in_w * (size_t)in_c;
        const int8_t *src = g->image + ((size_t)y0 * (size_t)g->in_w + (size_t)x0) * (size_t)in_c;
        int32_t ky;
        if (aligned) {
            for (ky = 0; ky < g->k_h; ++ky, src += row_step) {
                widen_groups(col + (size_t)ky * (size_t)(run >> 1), src, run >> 2, g->off2);
            }
            return;
        }
        for (ky = 0; ky < g->k_h; ++ky, src += row_step) {
            copy_s8(stage + (size_t)ky * (size_t)run, src, run);
        }
        fill_s8(stage + len, g->zero_point, 4 * groups - len);
        widen_groups(col, stage, groups, g->off2);
        return;
    }

    /* Runs of in-bounds inputs and of padding. With in_c a multiple of 4 every run starts
     * and ends on a group boundary and is widened (or zeroed) in place; otherwise the
     * int8 window (zero point in the padding) is gathered into the column's upper half
     * and widened afterwards. */
    uint32_t *dst_w = col;
    int8_t *dst = stage;
    int32_t t = k0 / in_c;
    int32_t ic = k0 - t * in_c;
    int32_t ky = t / g->k_w;
    int32_t kx = t - ky * g->k_w;
    int32_t k = k0;
    int32_t iy = y0 + ky * g->dil_h;
    int row_in = iy >= 0 && iy < g->in_h;
    while (k < k1) {
        int32_t end_kx; /* the run covers taps [kx, end_kx) of this row, from channel ic */
        int copy;
        if (!row_in) {
            end_kx = g->k_w;
            copy = 0;
        } else if (kx < kx_lo) {
            end_kx = kx_lo;
            copy = 0;
        } else if (kx < kx_hi) {
            end_kx = g->dil_w == 1 ? kx_hi : kx + 1;
            copy = 1;
        } else {
            end_kx = g->k_w;
            copy = 0;
        }
        const int32_t run = mcuqp_min_i32((end_kx - kx) * in_c - ic, k1 - k);
        if (copy) {
            const int8_t *src =
                g->image + ((size_t)iy * (size_t)g->in_w + (size_t)(x0 + kx * g->dil_w)) * (size_t)in_c + (size_t)ic;
            if (aligned) {
                widen_groups(dst_w, src, run >> 2, g->off2);
            } else {
                copy_s8(dst, src, run);
            }
        } else if (aligned) {
            int32_t i;
            for (i = 0; i < run >> 1; ++i) {
                dst_w[i] = 0u;
            }
        } else {
            fill_s8(dst, g->zero_point, run);
        }
        dst += run;
        dst_w += run >> 1;
        k += run;
        kx = end_kx;
        ic = 0;
        if (kx == g->k_w) {
            kx = 0;
            ++ky;
            iy += g->dil_h;
            row_in = iy >= 0 && iy < g->in_h;
        }
    }
    if (!aligned) {
        fill_s8(dst, g->zero_point, 4 * groups - len);
        /* In place, front to back: group j's words end at byte 8j + 8 <= the next group's
         * bytes at kc + 4j + 4, since 4j <= kc - 4. */
        widen_groups(col, stage, groups, g->off2);
    }
}

/* One group of four entries of each column (columns `cb` bytes apart, the group at byte
 * offset goff) against one filter word v: a_j += col_j . w. */
#define MAC_GROUP4(col, goff, v)                                                                                 \
    do {                                                                                                         \
        const uint32_t wl_ = mcuqp_sxtb16(v);                                                                    \
        const uint32_t wh_ = mcuqp_sxtb16_ror8(v);                                                               \
        uint32_t xl_;                                                                                            \
        uint32_t xh_;                                                                                            \
        MCUQP_LDRD(col, (goff), xl_, xh_);                                                                       \
        a0 = mcuqp_smlad(xl_, wl_, a0);                                                                          \
        a0 = mcuqp_smlad(xh_, wh_, a0);                                                                          \
        MCUQP_LDRD(col, 2 * CONV_WIDE_K + (goff), xl_, xh_);                                                     \
        a1 = mcuqp_smlad(xl_, wl_, a1);                                                                          \
        a1 = mcuqp_smlad(xh_, wh_, a1);                                                                          \
        MCUQP_LDRD(col, 4 * CONV_WIDE_K + (goff), xl_, xh_);                                                     \
        a2 = mcuqp_smlad(xl_, wl_, a2);                                                                          \
        a2 = mcuqp_smlad(xh_, wh_, a2);                                                                          \
        MCUQP_LDRD(col, 6 * CONV_WIDE_K + (goff), xl_, xh_);                                                     \
        a3 = mcuqp_smlad(xl_, wl_, a3);                                                                          \
        a3 = mcuqp_smlad(xh_, wh_, a3);                                                                          \
    } while (0)

/* The filter word holding a last, partial group: whole (its extra lanes meet zero column
 * entries) unless it would pass the end of the filter. */
MCUQP_INLINE uint32_t tail_word(const int8_t *w, int32_t n, int whole)
{
    return whole ? mcuqp_read_s8x4(w) : mcuqp_read_partial_s8(w, n);
}

/* acc[j] += column j . w over len entries, four columns 256 bytes apart. */
MCUQP_INLINE void mac_4x1(const uint32_t *col, const int8_t *w, int32_t len, int whole_tail, int32_t acc[4])
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    const uint32_t *end = col + 4 * (len >> 3);
    while (col != end) {
        uint32_t v = mcuqp_read_s8x4(w);
        MAC_GROUP4(col, 0, v);
        v = mcuqp_read_s8x4(w + 4);
        MAC_GROUP4(col, 8, v);
        w += 8;
        col += 4;
    }
    if ((len & 4) != 0) {
        const uint32_t v = mcuqp_read_s8x4(w);
        MAC_GROUP4(col, 0, v);
        w += 4;
        col += 2;
    }
    if ((len & 3) != 0) {
        const uint32_t v = tail_word(w, len & 3, whole_tail);
        MAC_GROUP4(col, 0, v);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* The quick output stage (multiplier in high-word form, clamp [-128, 127]). */
MCUQP_INLINE int8_t out_quick(int32_t acc, const mcuqp_rq *rq, int32_t out_offset)
{
    return (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast(acc, rq), out_offset);
}

/* What the output channels share. */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
    int32_t per_channel;
    int32_t k_total;
    int32_t out_c;
    int32_t out_offset;
    int32_t lo; /* act_min - out_offset */
    int32_t hi; /* act_max - out_offset */
    int full;   /* clamp [-128, 127] */
} conv_out;

/* Four pixels, complete columns, quick output stage: every output channel. */
MCUQP_NOINLINE static void channels_quick4(const uint32_t *cols, const conv_out *c, int8_t *const out[4])
{
    int8_t *o0 = out[0];
    int8_t *o1 = out[1];
    int8_t *o2 = out[2];
    int8_t *o3 = out[3];
    const int8_t *w = c->filter;
    const int32_t k_total = c->k_total;
    const int32_t out_c = c->out_c;
    const int32_t out_offset = c->out_offset;
    int32_t oc;
    for (oc = 0; oc < out_c; ++oc, w += k_total) {
        const int32_t b = c->bias != NULL ? c->bias[oc] : 0;
        int32_t acc[4] = {b, b, b, b};
        mac_4x1(cols, w, k_total, (out_c - 1 - oc) * k_total >= 3, acc); /* whole tail words stay inside */
        const int32_t q = c->per_channel ? oc : 0;
        const mcuqp_rq rq = mcuqp_rq_prepare(c->mult[q], c->shift[q]);
        o0[oc] = out_quick(acc[0], &rq, out_offset);
        o1[oc] = out_quick(acc[1], &rq, out_offset);
        o2[oc] = out_quick(acc[2], &rq, out_offset);
        o3[oc] = out_quick(acc[3], &rq, out_offset);
    }
}

/* Channels [c0, c1) over window entries [k0, k0 + len) for the four columns; `first`:
 * start from the bias, else from the partial sums; `last`: store the outputs, else the
 * partial sums (four per channel from part, for chunked windows). */
MCUQP_NOINLINE static void channels_general(const uint32_t *cols, const conv_out *c, int32_t c0, int32_t c1,
                                            int32_t k0, int32_t len, int first, int last, int quick, int32_t *part,
                                            int8_t *const out[4])
{
    const int8_t *w = c->filter + (size_t)c0 * (size_t)c->k_total + (size_t)k0;
    const int32_t k_total = c->k_total;
    const int32_t out_offset = c->out_offset;
    int8_t *o0 = out[0];
    int8_t *o1 = out[1];
    int8_t *o2 = out[2];
    int8_t *o3 = out[3];
    int32_t *pp = part;
    int32_t oc;
    for (oc = c0; oc < c1; ++oc, w += k_total) {
        /* A tail word read whole passes this run's end by up to 3 bytes: only inside the filter. */
        const int whole = (k_total - k0 - len) + (c->out_c - 1 - oc) * k_total >= 3;
        int32_t acc[4];
        if (first) {
            const int32_t b = c->bias != NULL ? c->bias[oc] : 0;
            acc[0] = b;
            acc[1] = b;
            acc[2] = b;
            acc[3] = b;
        } else {
            acc[0] = pp[0];
            acc[1] = pp[1];
            acc[2] = pp[2];
            acc[3] = pp[3];
        }
        mac_4x1(cols, w, len, whole, acc);
        if (!last) {
            pp[0] = acc[0];
            pp[1] = acc[1];
            pp[2] = acc[2];
            pp[3] = acc[3];
            pp += 4;
            continue;
        }
        pp += first ? 0 : 4;
        const int32_t q = c->per_channel ? oc : 0;
        const mcuqp_rq rq = mcuqp_rq_prepare(c->mult[q], c->shift[q]);
        if (quick) {
            o3[oc] = out_quick(acc[3], &rq, out_offset);
            o2[oc] = out_quick(acc[2], &rq, out_offset);
            o1[oc] = out_quick(acc[1], &rq, out_offset);
            o0[oc] = out_quick(acc[0], &rq, out_offset);
        } else {
            o3[oc] = mcuqp_rq_output(acc[3], &rq, c->full, c->lo, c->hi, out_offset);
            o2[oc] = mcuqp_rq_output(acc[2], &rq, c->full, c->lo, c->hi, out_offset);
            o1[oc] = mcuqp_rq_output(acc[1], &rq, c->full, c->lo, c->hi, out_offset);
            o0[oc] = mcuqp_rq_output(acc[0], &rq, c->full, c->lo, c->hi, out_offset);
        }
    }
}

/* The plain path (any multiplier): one output at a time, mcuqp_requantize(). */
MCUQP_NOINLINE static void conv_plain(const mcuqp_conv_params *p, const mcuqp_requant *quant, const mcuqp_dims *in,
                       const int8_t *input, const mcuqp_dims *f, const int8_t *filter, const int32_t *bias,
                       const mcuqp_dims *out, int8_t *output)
{
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    int32_t b;
    int32_t oy;
    int32_t ox;
    int32_t oc;
    for (b = 0; b < in->n; ++b) {
        for (oy = 0; oy < out->h; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                for (oc = 0; oc < f->n; ++oc) {
                    uint32_t acc = bias != NULL ? (uint32_t)bias[oc] : 0u;
                    int32_t ky;
                    int32_t kx;
                    int32_t ic;
                    for (ky = 0; ky < f->h; ++ky) {
                        const int32_t iy = oy * p->stride_h - p->pad_h + ky * p->dilation_h;
                        for (kx = 0; kx < f->w; ++kx) {
                            const int32_t ix = ox * p->stride_w - p->pad_w + kx * p->dilation_w;
                            if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
                                continue;
                            }
                            const int8_t *x = input + (((size_t)b * (size_t)in->h + (size_t)iy) * (size_t)in->w +
                                                       (size_t)ix) * (size_t)in->c;
                            const int8_t *w = filter + (((size_t)oc * (size_t)f->h + (size_t)ky) * (size_t)f->w +
                                                        (size_t)kx) * (size_t)in->c;
                            for (ic = 0; ic < in->c; ++ic) {
                                acc += (uint32_t)(w[ic] * (x[ic] + p->input_offset));
                            }
                        }
                    }
                    const int32_t q = quant->count == 1 ? 0 : oc;
                    const int32_t r = mcuqp_requantize((int32_t)acc, quant->multiplier[q], quant->shift[q]);
                    output[(((size_t)b * (size_t)out->h + (size_t)oy) * (size_t)out->w + (size_t)ox) * (size_t)f->n +
                           (size_t)oc] = (int8_t)(mcuqp_clamp_i32(r, lo, hi) + p->output_offset);
                }
            }
        }
    }
}

mcuqp_status mcuqp_conv2d_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                             const mcuqp_dims *input_dims, const int8_t *input,
                             const mcuqp_dims *filter_dims, const int8_t *filter,
                             const int32_t *bias, const mcuqp_dims *output_dims, int8_t *output)
{
    if (params == NULL || quant == NULL || input_dims == NULL || input == NULL || filter_dims == NULL ||
        filter == NULL || output_dims == NULL || output == NULL ||
        !mcuqp_conv2d_valid_args(params, quant, input_dims, filter_dims, output_dims)) {
        return MCUQP_ERR_ARG;
    }
    if (!mcuqp_requant_nomin(quant)) {
        conv_plain(params, quant, input_dims, input, filter_dims, filter, bias, output_dims, output);
        return MCUQP_OK;
    }

    uint32_t cols[CONV_COL_WORDS];    /* four columns of CONV_WIDE_K int16 entries */
    int32_t partial[4 * CONV_ACC_CH]; /* chunked windows: four pixels per channel */

    const int32_t out_c = filter_dims->n;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t k_total = filter_dims->h * filter_dims->w * input_dims->c;
    const size_t in_image = (size_t)input_dims->h * (size_t)input_dims->w * (size_t)input_dims->c;
    const int32_t pixels = input_dims->n * out_h * out_w;
    /* Chunks of equal length (a multiple of 4) of at most CONV_WIDE_K entries. */
    const int32_t chunks = (k_total + CONV_WIDE_K - 1) / CONV_WIDE_K;
    const int32_t chunk_len = ((k_total + chunks - 1) / chunks + 3) & ~3;
    const int32_t block = chunks == 1 ? out_c : CONV_ACC_CH;
    conv_out co;
    co.filter = filter;
    co.bias = bias;
    co.mult = quant->multiplier;
    co.shift = quant->shift;
    co.per_channel = quant->count != 1;
    co.k_total = k_total;
    co.out_c = out_c;
    co.out_offset = params->output_offset;
    co.lo = params->act_min - params->output_offset;
    co.hi = params->act_max - params->output_offset;
    co.full = params->act_min == -128 && params->act_max == 127;
    conv_geom g;
    g.in_h = input_dims->h;
    g.in_w = input_dims->w;
    g.in_c = input_dims->c;
    g.k_h = filter_dims->h;
    g.k_w = filter_dims->w;
    g.dil_h = params->dilation_h;
    g.dil_w = params->dilation_w;
    g.zero_point = -params->input_offset;
    g.off2 = mcuqp_dup_s16(params->input_offset);

    /* The quick output stage: every requantization in high-word form, clamp [-128, 127]. */
    int quick = co.full;
    int32_t i;
    for (i = 0; i < quant->count; ++i) {
        const mcuqp_rq rq = mcuqp_rq_prepare(quant->multiplier[i], quant->shift[i]);
        quick = quick && mcuqp_rq_fast(&rq);
    }

    int32_t nb = 0; /* the next pixel in raster order */
    int32_t ny = 0;
    int32_t nx = 0;
    int32_t p;
    for (p = 0; p < pixels; p += 4) {
        /* Pixels p .. p + 3; past the last pixel, the last one is repeated (and its outputs
         * stored again, with the same values). */
        const int8_t *image[4];
        int32_t y0[4];
        int32_t x0[4];
        int8_t *out[4];
        int32_t j;
        for (j = 0; j < 4; ++j) {
            if (p + j < pixels) {
                image[j] = input + (size_t)nb * in_image;
                y0[j] = ny * params->stride_h - params->pad_h;
                x0[j] = nx * params->stride_w - params->pad_w;
                out[j] = output + (size_t)(p + j) * (size_t)out_c;
                if (++nx == out_w) {
                    nx = 0;
                    if (++ny == out_h) {
                        ny = 0;
                        ++nb;
                    }
                }
            } else {
                image[j] = image[j - 1];
                y0[j] = y0[j - 1];
                x0[j] = x0[j - 1];
                out[j] = out[j - 1];
            }
        }
        int32_t c0;
        for (c0 = 0; c0 < out_c; c0 += block) {
            const int32_t c1 = mcuqp_min_i32(c0 + block, out_c);
            int32_t chunk;
            for (chunk = 0; chunk < chunks; ++chunk) {
                const int32_t k0 = chunk * chunk_len;
                const int32_t k1 = mcuqp_min_i32(k0 + chunk_len, k_total);
                for (j = 0; j < 4; ++j) {
                    g.image = image[j];
                    im2col(&g, y0[j], x0[j], k0, k1, CONV_WIDE_K, cols + j * (CONV_WIDE_K / 2));
                }
                if (chunks == 1 && quick) {
                    channels_quick4(cols, &co, out);
                } else {
                    channels_general(cols, &co, c0, c1, k0, k1 - k0, chunk == 0, chunk == chunks - 1, quick,
                                     partial, out);
                }
            }
        }
    }
    return MCUQP_OK;
}

/* The im2col columns and the chunked partial sums: 1408 bytes (on this kernel's stack today). */
int32_t mcuqp_conv2d_s8_get_buffer_size(const mcuqp_dims *input_dims, const mcuqp_dims *filter_dims)
{
    if (!(mcuqp_conv_valid_shapes(input_dims, filter_dims))) {
        return MCUQP_ERR_ARG;
    }
    return (int32_t)(sizeof(uint32_t) * CONV_COL_WORDS + sizeof(int32_t) * 4 * CONV_ACC_CH);
}
