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
 * Technique (im2col + 2x2 SMLAD matrix product, no scratch from the caller):
 *  - Output pixels are taken two at a time (in raster order across rows and batches, so
 *    an odd width costs nothing). Each pixel's window, flattened in filter order
 *    (ky, kx, ic), is written as int16 (input + input_offset) into a column on the stack;
 *    padding taps become 0, which is exactly "contributes nothing", and dilation and
 *    borders need no other code. Within every group of four entries the lanes are
 *    stored {x0, x2} {x1, x3}, the order SXTB16 / SXTB16 ROR #8 split a filter word
 *    into, so the conversion is one load, two SXTAB16 (which add the offset for free)
 *    and two stores per four inputs. A window that is one contiguous in-bounds run
 *    (1x1 convolutions) is converted straight from the input; any other is first
 *    gathered as int8, padded with the input zero point, in the upper half of its own
 *    column and converted in place.
 *  - For two output channels at a time, each filter word is loaded once, split into
 *    two int16 pairs and fed to four SMLADs (two per column): 16 MACs for 2 filter
 *    loads, 4 column loads, 4 SXTB16 and 8 SMLAD. The second column sits at a fixed
 *    offset from the first, so the loop needs few pointers and no register spills.
 *  - Columns hold CONV_COL_K entries (2 x 2 x 192 x 16 bit = 768 bytes of stack). A
 *    longer window is processed in chunks of CONV_COL_K entries, with the partial sums
 *    of a block of CONV_ACC_CH channels x 2 pixels kept in a 256-byte stack array; the
 *    columns are then rebuilt once per channel block. Total stack for buffers: 1 KiB.
 *  - An odd output channel count (or pixel count) computes its last channel (pixel)
 *    twice and stores it once.
 *  - Requantization uses the exact SMLAL form of mcuqp_intrinsics.h; a multiplier of
 *    INT32_MIN (outside the QuantizeMultiplier range, but accepted) sends the call to a
 *    plain loop with mcuqp_requantize().
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_nn.h"

#define CONV_MAX_DIM (1 << 15)
#define CONV_COL_K 192                  /* int16 entries per column chunk, a multiple of 4 */
#define CONV_COL_WORDS (CONV_COL_K / 2) /* uint32 words per column */
#define CONV_ACC_CH 32                  /* channels per block when a window needs chunks */

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
 * (y0, x0), as a column: ceil((k1 - k0) / 4) groups, entries past k1 - k0 zero. */
static void im2col(const conv_geom *g, int32_t y0, int32_t x0, int32_t k0, int32_t k1, uint32_t *col)
{
    const int32_t len = k1 - k0;
    const int32_t groups = (len + 3) >> 2;
    const int32_t in_c = g->in_c;
    int32_t kx_lo;
    int32_t kx_hi;

    if (g->k_h == 1 && (g->k_w == 1 || g->dil_w == 1) && y0 >= 0 && y0 < g->in_h) {
        tap_range(x0, g->dil_w, g->k_w, g->in_w, &kx_lo, &kx_hi);
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

    /* Gather the int8 window (zero point in the padding) into the column's upper half. */
    int8_t *stage = (int8_t *)col + CONV_COL_K;
    int8_t *dst = stage;
    int32_t t = k0 / in_c;
    int32_t ic = k0 - t * in_c;
    int32_t ky = t / g->k_w;
    int32_t kx = t - ky * g->k_w;
    int32_t k = k0;
    while (k < k1) {
        const int32_t iy = y0 + ky * g->dil_h;
        int32_t end_kx; /* the run covers taps [kx, end_kx) of this row, from channel ic */
        int copy;
        if (iy < 0 || iy >= g->in_h) {
            end_kx = g->k_w;
            copy = 0;
        } else {
            tap_range(x0, g->dil_w, g->k_w, g->in_w, &kx_lo, &kx_hi);
            if (kx < kx_lo) {
                end_kx = kx_lo;
                copy = 0;
            } else if (kx < kx_hi) {
                end_kx = g->dil_w == 1 ? kx_hi : kx + 1;
                copy = 1;
            } else {
                end_kx = g->k_w;
                copy = 0;
            }
        }
        const int32_t run = mcuqp_min_i32((end_kx - kx) * in_c - ic, k1 - k);
        if (copy) {
            const int8_t *src =
                g->image + ((size_t)iy * (size_t)g->in_w + (size_t)(x0 + kx * g->dil_w)) * (size_t)in_c + (size_t)ic;
            copy_s8(dst, src, run);
        } else {
            fill_s8(dst, g->zero_point, run);
        }
        dst += run;
        k += run;
        kx = end_kx;
        ic = 0;
        if (kx == g->k_w) {
            kx = 0;
            ++ky;
        }
    }
    fill_s8(dst, g->zero_point, 4 * groups - len);
    /* In place, front to back: group j's words end at byte 8j + 8 <= the next group's
     * bytes at CONV_COL_K + 4j + 4, since 4j <= CONV_COL_K - 4. */
    widen_groups(col, stage, groups, g->off2);
}

/* Up to 3 filter bytes, zero-extended into a word (lanes past n are 0). */
static inline uint32_t read_partial_s8(const int8_t *p, int32_t n)
{
    uint32_t v = 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        v |= ((uint32_t)(uint8_t)p[i]) << (8 * i);
    }
    return v;
}

/* acc += {col0 . wa, col0 . wb, col1 . wa, col1 . wb} over len entries; col1 is
 * CONV_COL_WORDS words after col0. */
MCUQP_INLINE void mac_2x2(const uint32_t *col, const int8_t *wa, const int8_t *wb, int32_t len, int32_t acc[4])
{
    int32_t a00 = acc[0];
    int32_t a01 = acc[1];
    int32_t a10 = acc[2];
    int32_t a11 = acc[3];
    const uint32_t *end = col + 2 * (len >> 2);
    while (col != end) {
        const uint32_t va = mcuqp_read_s8x4(wa);
        const uint32_t vb = mcuqp_read_s8x4(wb);
        const uint32_t wal = mcuqp_sxtb16(va);
        const uint32_t wah = mcuqp_sxtb16_ror8(va);
        const uint32_t wbl = mcuqp_sxtb16(vb);
        const uint32_t wbh = mcuqp_sxtb16_ror8(vb);
        uint32_t xl = col[0];
        uint32_t xh = col[1];
        wa += 4;
        wb += 4;
        a00 = mcuqp_smlad(xl, wal, a00);
        a01 = mcuqp_smlad(xl, wbl, a01);
        a00 = mcuqp_smlad(xh, wah, a00);
        a01 = mcuqp_smlad(xh, wbh, a01);
        xl = col[CONV_COL_WORDS];
        xh = col[CONV_COL_WORDS + 1];
        col += 2;
        a10 = mcuqp_smlad(xl, wal, a10);
        a11 = mcuqp_smlad(xl, wbl, a11);
        a10 = mcuqp_smlad(xh, wah, a10);
        a11 = mcuqp_smlad(xh, wbh, a11);
    }
    if ((len & 3) != 0) {
        /* The last group: its column entries past len are 0; read only the filter bytes. */
        const uint32_t va = read_partial_s8(wa, len & 3);
        const uint32_t vb = read_partial_s8(wb, len & 3);
        a00 = mcuqp_smlad(col[0], mcuqp_sxtb16(va), a00);
        a00 = mcuqp_smlad(col[1], mcuqp_sxtb16_ror8(va), a00);
        a01 = mcuqp_smlad(col[0], mcuqp_sxtb16(vb), a01);
        a01 = mcuqp_smlad(col[1], mcuqp_sxtb16_ror8(vb), a01);
        a10 = mcuqp_smlad(col[CONV_COL_WORDS], mcuqp_sxtb16(va), a10);
        a10 = mcuqp_smlad(col[CONV_COL_WORDS + 1], mcuqp_sxtb16_ror8(va), a10);
        a11 = mcuqp_smlad(col[CONV_COL_WORDS], mcuqp_sxtb16(vb), a11);
        a11 = mcuqp_smlad(col[CONV_COL_WORDS + 1], mcuqp_sxtb16_ror8(vb), a11);
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
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

/* The plain path (any multiplier): one output at a time, mcuqp_requantize(). */
static void conv_plain(const mcuqp_conv_params *p, const mcuqp_requant *quant, const mcuqp_dims *in,
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

/* An output pixel in raster order and where its window starts. */
typedef struct {
    int32_t b;
    int32_t oy;
    int32_t ox;
} conv_pixel;

static inline void next_pixel(conv_pixel *px, int32_t out_h, int32_t out_w)
{
    if (++px->ox == out_w) {
        px->ox = 0;
        if (++px->oy == out_h) {
            px->oy = 0;
            ++px->b;
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
        !valid_args(params, quant, input_dims, filter_dims, output_dims)) {
        return MCUQP_ERR_ARG;
    }
    if (!mcuqp_multipliers_nomin(quant->multiplier, quant->count)) {
        conv_plain(params, quant, input_dims, input, filter_dims, filter, bias, output_dims, output);
        return MCUQP_OK;
    }

    /* Two columns of CONV_COL_K int16 entries, the second CONV_COL_WORDS words after the first. */
    uint32_t cols[2 * CONV_COL_WORDS];
    /* Partial sums of a channel block (chunked windows only): {pixel 0, pixel 1} per channel. */
    int32_t partial[2 * CONV_ACC_CH];

    const int32_t out_c = filter_dims->n;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t k_total = filter_dims->h * filter_dims->w * input_dims->c;
    const size_t in_image = (size_t)input_dims->h * (size_t)input_dims->w * (size_t)input_dims->c;
    const int32_t out_offset = params->output_offset;
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const int32_t chunks = (k_total + CONV_COL_K - 1) / CONV_COL_K;
    const int32_t block = chunks == 1 ? out_c : CONV_ACC_CH;
    const int32_t pixels = input_dims->n * out_h * out_w;
    const int32_t *mult = quant->multiplier;
    const int32_t *shift = quant->shift;
    const int per_channel = quant->count != 1;
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

    conv_pixel p0 = {0, 0, 0};
    int32_t p;
    for (p = 0; p < pixels; p += 2) {
        /* The pair (p0, p1); past the last pixel, p1 repeats p0 and is not stored. */
        const int two = p + 1 < pixels;
        conv_pixel p1 = p0;
        if (two) {
            next_pixel(&p1, out_h, out_w);
        }
        const int32_t y0a = p0.oy * params->stride_h - params->pad_h;
        const int32_t x0a = p0.ox * params->stride_w - params->pad_w;
        const int32_t y0b = p1.oy * params->stride_h - params->pad_h;
        const int32_t x0b = p1.ox * params->stride_w - params->pad_w;
        int8_t *out0 = output + (size_t)p * (size_t)out_c;
        int8_t *out1 = out0 + (two ? (size_t)out_c : 0u);
        int32_t c0;
        for (c0 = 0; c0 < out_c; c0 += block) {
            const int32_t c1 = mcuqp_min_i32(c0 + block, out_c);
            int32_t chunk;
            for (chunk = 0; chunk < chunks; ++chunk) {
                const int32_t k0 = chunk * CONV_COL_K;
                const int32_t k1 = mcuqp_min_i32(k0 + CONV_COL_K, k_total);
                const int last = chunk == chunks - 1;
                g.image = input + (size_t)p0.b * in_image;
                im2col(&g, y0a, x0a, k0, k1, cols);
                g.image = input + (size_t)p1.b * in_image;
                im2col(&g, y0b, x0b, k0, k1, cols + CONV_COL_WORDS);
                int32_t oc;
                for (oc = c0; oc < c1; oc += 2) {
                    /* Channels oc and ocb; an odd last channel is computed twice, stored once. */
                    const int pair = oc + 1 < c1;
                    const int32_t ocb = pair ? oc + 1 : oc;
                    int32_t *part = partial + 2 * (oc - c0);
                    int32_t acc[4] = {0, 0, 0, 0};
                    if (chunk > 0) {
                        acc[0] = part[0];
                        acc[2] = part[1];
                        if (pair) {
                            acc[1] = part[2];
                            acc[3] = part[3];
                        }
                    }
                    mac_2x2(cols, filter + (size_t)oc * (size_t)k_total + (size_t)k0,
                            filter + (size_t)ocb * (size_t)k_total + (size_t)k0, k1 - k0, acc);
                    if (!last) {
                        part[0] = acc[0];
                        part[1] = acc[2];
                        if (pair) {
                            part[2] = acc[1];
                            part[3] = acc[3];
                        }
                        continue;
                    }
                    const int32_t qa = per_channel ? oc : 0;
                    const uint32_t bias_a = bias != NULL ? (uint32_t)bias[oc] : 0u;
                    /* out1 == out0 for a lone last pixel: its (equal) value is stored twice. */
                    out1[oc] = mcuqp_output_nomin((int32_t)((uint32_t)acc[2] + bias_a), mult[qa], shift[qa], lo, hi,
                                                  out_offset);
                    out0[oc] = mcuqp_output_nomin((int32_t)((uint32_t)acc[0] + bias_a), mult[qa], shift[qa], lo, hi,
                                                  out_offset);
                    if (pair) {
                        const int32_t qb = per_channel ? ocb : 0;
                        const uint32_t bias_b = bias != NULL ? (uint32_t)bias[ocb] : 0u;
                        out1[ocb] = mcuqp_output_nomin((int32_t)((uint32_t)acc[3] + bias_b), mult[qb], shift[qb], lo,
                                                       hi, out_offset);
                        out0[ocb] = mcuqp_output_nomin((int32_t)((uint32_t)acc[1] + bias_b), mult[qb], shift[qb], lo,
                                                       hi, out_offset);
                    }
                }
            }
        }
        p0 = p1;
        next_pixel(&p0, out_h, out_w);
    }
    return MCUQP_OK;
}
