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
 * wrap for k_h * k_w * in_c below 32768 and |bias| below 2^30.
 *
 * Speed (portable C, no scratch buffer, plain 32-bit multiply-accumulates so that Armv6-M
 * needs no 64-bit library calls): the input-offset term input_offset * sum(filter[oc]) is
 * computed once per channel and added to a plain int8 dot product for every window fully
 * inside the input (border windows add the offset to each input they read). A 1x1 filter
 * without padding walks the pixels two at a time (consecutive rows as one row when the
 * stride is 1) against two output channels: a 2x2 register block, each byte loaded feeding
 * two multiply-accumulates. Other filters take four output channels per pass: two pixels
 * whose windows lie inside the input width as two 2x2 blocks, a border or odd pixel as a
 * 1x4 block (each input byte loaded once for four channels). The inner loops are rolled
 * over walking pointers (Armv7-M loads with write-back, no spills).
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

/* Where one batch's image and filter rows live. */
typedef struct {
    const int8_t *input; /* (in_h, in_w, in_c) */
    size_t in_row;       /* bytes per input row */
    size_t tap_step;     /* bytes between horizontal taps: dilation_w * in_c */
    size_t w_row;        /* bytes per filter row: k_w * in_c */
    int32_t in_c;
    int32_t k_w;
    int32_t dil_h;
    int32_t dil_w;
} conv_geom;

/* Two pixels (x0, x1) times two filters (wa, wb) over n taps*channels, inputs offset by
 * `off` (the compiler drops the adds where off is the constant 0):
 * acc = {x0.wa, x1.wa, x0.wb, x1.wb}, modulo 2^32. A rolled loop over walking pointers:
 * Armv7-M loads with write-back need no pointer arithmetic, and the four pointers, four
 * accumulators and four operands fit the registers (an unrolled body spills). Plain
 * 32-bit multiply-accumulates: single-cycle MULS on Armv6-M, where a 64-bit product would
 * be a library call. */
MCUQP_INLINE void mac_2x2(const int8_t *x0, const int8_t *x1, const int8_t *wa, const int8_t *wb, int32_t n,
                          int32_t off, uint32_t acc[4])
{
    uint32_t a0 = acc[0];
    uint32_t a1 = acc[1];
    uint32_t b0 = acc[2];
    uint32_t b1 = acc[3];
    const int8_t *const end = x0 + n;
    while (x0 != end) {
        const int32_t u = *x0++ + off;
        const int32_t v = *x1++ + off;
        const int32_t p = *wa++;
        const int32_t q = *wb++;
        a0 += (uint32_t)(u * p);
        a1 += (uint32_t)(v * p);
        b0 += (uint32_t)(u * q);
        b1 += (uint32_t)(v * q);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}

/* One pixel times two filters: acc = {x.wa, x.wb}. */
MCUQP_INLINE void mac_1x2(const int8_t *x, const int8_t *wa, const int8_t *wb, int32_t n, int32_t off,
                          uint32_t acc[2])
{
    uint32_t a = acc[0];
    uint32_t b = acc[1];
    const int8_t *const end = x + n;
    while (x != end) {
        const int32_t u = *x++ + off;
        a += (uint32_t)(u * *wa++);
        b += (uint32_t)(u * *wb++);
    }
    acc[0] = a;
    acc[1] = b;
}

/* Rows [ky_lo, ky_hi) of the full-width windows of two pixels pix_step bytes apart whose
 * first window starts at input column x0 (x0 and both windows inside the input width). */
MCUQP_INLINE void window_2x2(const conv_geom *g, int32_t y0, int32_t x0, size_t pix_step, int32_t ky_lo,
                             int32_t ky_hi, const int8_t *wa, const int8_t *wb, int32_t off, uint32_t acc[4])
{
    /* With dilation_w == 1 a whole filter row is one contiguous run. */
    const int32_t run = g->dil_w == 1 ? g->k_w * g->in_c : g->in_c;
    const int32_t steps = g->dil_w == 1 ? 1 : g->k_w;
    int32_t ky;
    for (ky = ky_lo; ky < ky_hi; ++ky) {
        const int8_t *x = g->input + (size_t)(y0 + ky * g->dil_h) * g->in_row + (size_t)x0 * (size_t)g->in_c;
        const size_t w_off = (size_t)ky * g->w_row;
        int32_t s;
        for (s = 0; s < steps; ++s) {
            const size_t xs = (size_t)s * g->tap_step;
            const size_t ws = w_off + (size_t)s * (size_t)g->in_c;
            mac_2x2(x + xs, x + xs + pix_step, wa + ws, wb + ws, run, off, acc);
        }
    }
}

/* One pixel times four filters: acc = {x.w0, x.w1, x.w2, x.w3}; each input byte loaded
 * feeds four multiply-accumulates (the border and odd-pixel path). */
MCUQP_INLINE void mac_1x4(const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2, const int8_t *w3,
                          int32_t n, int32_t off, uint32_t acc[4])
{
    uint32_t a0 = acc[0];
    uint32_t a1 = acc[1];
    uint32_t a2 = acc[2];
    uint32_t a3 = acc[3];
    const int8_t *const end = x + n;
    while (x != end) {
        const int32_t u = *x++ + off;
        a0 += (uint32_t)(u * *w0++);
        a1 += (uint32_t)(u * *w1++);
        a2 += (uint32_t)(u * *w2++);
        a3 += (uint32_t)(u * *w3++);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Four output channels of the quad kernel: filters, requantization, bias and
 * bias + input_offset * sum(filter); past out_c the last channel is repeated, not stored. */
typedef struct {
    const int8_t *w[4];
    mcuqp_requant_ch rq[4];
    uint32_t bias[4];
    uint32_t full[4];
    int32_t count; /* channels stored: 1..4 */
} conv_quad;

/* Taps [ky_lo, ky_hi) x [kx_lo, kx_hi) (all inside the input) of one pixel's window, four
 * filters. */
MCUQP_INLINE void window_1x4(const conv_geom *g, int32_t y0, int32_t x0, int32_t ky_lo, int32_t ky_hi,
                             int32_t kx_lo, int32_t kx_hi, const conv_quad *qd, int32_t off, uint32_t acc[4])
{
    if (kx_hi <= kx_lo) {
        return;
    }
    const int32_t run = g->dil_w == 1 ? (kx_hi - kx_lo) * g->in_c : g->in_c;
    const int32_t steps = g->dil_w == 1 ? 1 : kx_hi - kx_lo;
    int32_t ky;
    for (ky = ky_lo; ky < ky_hi; ++ky) {
        const int8_t *x = g->input + (size_t)(y0 + ky * g->dil_h) * g->in_row +
                          (size_t)(x0 + kx_lo * g->dil_w) * (size_t)g->in_c;
        const size_t w_off = (size_t)ky * g->w_row + (size_t)kx_lo * (size_t)g->in_c;
        int32_t s;
        for (s = 0; s < steps; ++s) {
            const size_t ws = w_off + (size_t)s * (size_t)g->in_c;
            mac_1x4(x + (size_t)s * g->tap_step, qd->w[0] + ws, qd->w[1] + ws, qd->w[2] + ws, qd->w[3] + ws, run, off,
                    acc);
        }
    }
}

/* Requantize and store a pixel's four channel sums (acc[j] + base[j]). */
MCUQP_INLINE void store_quad(int8_t *o, const uint32_t acc[4], const uint32_t base[4], const conv_quad *qd, int32_t lo,
                             int32_t hi, int32_t out_offset)
{
    int32_t j;
    for (j = 0; j < qd->count; ++j) {
        o[j] = mcuqp_requant_ch_apply(&qd->rq[j], acc[j] + base[j], lo, hi, out_offset);
    }
}

/* A 1x1 filter without padding on any side: output (oy, ox) reads input pixel (oy * stride_h,
 * ox * stride_w) alone and every window lies inside the input, so the input offset is all
 * in full[] and each output is a plain dot product over in_c. Output channels two at a
 * time (packed), pixels two at a time, for one batch image. */
typedef struct {
    const int8_t *input;
    int8_t *output;    /* advanced to channel oc */
    size_t out_px;     /* out_c */
    size_t pix_step;   /* stride_w * in_c */
    size_t row_step;   /* stride_h * in_w * in_c */
    int32_t rows;
    int32_t cols;
    int32_t in_c;
} pw_geom;

static void pointwise_pair(const pw_geom *g, const int8_t *wa, const int8_t *wb, const uint32_t full[2],
                           const mcuqp_requant_ch rq[2], int32_t lo, int32_t hi, int32_t out_offset,
                           int two)
{
    const size_t out_px = g->out_px;
    int32_t r;
    for (r = 0; r < g->rows; ++r) {
        const int8_t *x = g->input + (size_t)r * g->row_step;
        int8_t *o = g->output + (size_t)r * (size_t)g->cols * out_px;
        int32_t col = 0;
        for (; col + 2 <= g->cols; col += 2) {
            uint32_t acc[4] = {full[0], full[0], full[1], full[1]};
            mac_2x2(x, x + g->pix_step, wa, wb, g->in_c, 0, acc);
            o[0] = mcuqp_requant_ch_apply(&rq[0], acc[0], lo, hi, out_offset);
            o[out_px] = mcuqp_requant_ch_apply(&rq[0], acc[1], lo, hi, out_offset);
            if (two) {
                o[1] = mcuqp_requant_ch_apply(&rq[1], acc[2], lo, hi, out_offset);
                o[out_px + 1] = mcuqp_requant_ch_apply(&rq[1], acc[3], lo, hi, out_offset);
            }
            x += 2 * g->pix_step;
            o += 2 * out_px;
        }
        if (col < g->cols) {
            uint32_t acc[2] = {full[0], full[1]};
            mac_1x2(x, wa, wb, g->in_c, 0, acc);
            o[0] = mcuqp_requant_ch_apply(&rq[0], acc[0], lo, hi, out_offset);
            if (two) {
                o[1] = mcuqp_requant_ch_apply(&rq[1], acc[1], lo, hi, out_offset);
            }
        }
    }
}

static inline uint32_t sum_s8(const int8_t *w, int32_t n)
{
    uint32_t acc = 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = w[i]; /* a named int32: gcc's -Wsign-conversion sees through a cast chain */
        acc += (uint32_t)v;
    }
    return acc;
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

    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t in_c = input_dims->c;
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const int32_t out_c = filter_dims->n;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t stride_w = params->stride_w;
    const int32_t in_offset = params->input_offset;
    const int32_t out_offset = params->output_offset;
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const size_t in_image = (size_t)in_h * (size_t)in_w * (size_t)in_c;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    const size_t out_px = (size_t)out_c;                      /* bytes between output pixels */
    const size_t pix_step = (size_t)stride_w * (size_t)in_c;  /* between neighbouring windows */
    const int32_t filter_size = k_h * k_w * in_c;
    conv_geom g;
    g.in_row = (size_t)in_w * (size_t)in_c;
    g.tap_step = (size_t)params->dilation_w * (size_t)in_c;
    g.w_row = (size_t)k_w * (size_t)in_c;
    g.in_c = in_c;
    g.k_w = k_w;
    g.dil_h = params->dilation_h;
    g.dil_w = params->dilation_w;

    /* Output columns [ox_full_lo, ox_full_hi) have windows inside the input width. */
    int32_t ox_full_lo = 0;
    while (ox_full_lo < out_w && ox_full_lo * stride_w - params->pad_w < 0) {
        ++ox_full_lo;
    }
    int32_t ox_full_hi = ox_full_lo;
    while (ox_full_hi < out_w && ox_full_hi * stride_w - params->pad_w + (k_w - 1) * g.dil_w < in_w) {
        ++ox_full_hi;
    }

    /* 1x1, no top/left padding and no bottom/right padding either: every window inside */
    const int pointwise = k_h == 1 && k_w == 1 && params->pad_h == 0 && params->pad_w == 0 &&
                          (out_h - 1) * params->stride_h < in_h && (out_w - 1) * stride_w < in_w;
    pw_geom pw;
    pw.out_px = out_px;
    pw.pix_step = pix_step;
    pw.row_step = (size_t)params->stride_h * g.in_row;
    pw.rows = out_h;
    pw.cols = out_w;
    pw.in_c = in_c;
    if (params->stride_h == 1 && params->stride_w == 1 && out_w == in_w) {
        /* consecutive pixels all the way: one long row */
        pw.rows = 1;
        pw.cols = out_h * out_w;
    }

    int32_t oc;
    int32_t n;
    if (pointwise) {
        for (oc = 0; oc < out_c; oc += 2) {
            /* Channels oc and oc + 1; an odd last channel is computed twice, stored once. */
            const int two = oc + 1 < out_c;
            const int32_t ch[2] = {oc, two ? oc + 1 : oc};
            const int8_t *wa = filter + (size_t)ch[0] * (size_t)filter_size;
            const int8_t *wb = filter + (size_t)ch[1] * (size_t)filter_size;
            uint32_t full[2];
            mcuqp_requant_ch rq[2];
            int32_t j;
            for (j = 0; j < 2; ++j) {
                const int32_t q = quant->count == 1 ? 0 : ch[j];
                /* bias + input_offset * sum(filter): every 1x1 window is inside the input */
                full[j] = (bias != NULL ? (uint32_t)bias[ch[j]] : 0u) +
                          (uint32_t)in_offset * sum_s8(j == 0 ? wa : wb, filter_size);
                rq[j] = mcuqp_requant_ch_make(quant->multiplier[q], quant->shift[q]);
            }
            for (n = 0; n < input_dims->n; ++n) {
                pw.input = input + (size_t)n * in_image;
                pw.output = output + (size_t)n * out_image + (size_t)oc;
                pointwise_pair(&pw, wa, wb, full, rq, lo, hi, out_offset, two);
            }
        }
        return MCUQP_OK;
    }

    for (oc = 0; oc < out_c; oc += 4) {
        conv_quad qd;
        int32_t j;
        for (j = 0; j < 4; ++j) {
            const int32_t c = mcuqp_min_i32(oc + j, out_c - 1);
            const int32_t q = quant->count == 1 ? 0 : c;
            qd.w[j] = filter + (size_t)c * (size_t)filter_size;
            qd.rq[j] = mcuqp_requant_ch_make(quant->multiplier[q], quant->shift[q]);
            qd.bias[j] = bias != NULL ? (uint32_t)bias[c] : 0u;
            /* bias + input_offset * sum(filter): the whole sum for a window inside the input */
            qd.full[j] = qd.bias[j] + (uint32_t)in_offset * sum_s8(qd.w[j], filter_size);
        }
        qd.count = mcuqp_min_i32(4, out_c - oc);
        for (n = 0; n < input_dims->n; ++n) {
            g.input = input + (size_t)n * in_image;
            int32_t oy;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_h;
                int8_t *out = output + (size_t)n * out_image + (size_t)oy * (size_t)out_w * out_px + (size_t)oc;
                int32_t ky_lo;
                int32_t ky_hi;
                mcuqp_tap_range(y0, g.dil_h, k_h, in_h, &ky_lo, &ky_hi);
                const int row_full = ky_lo == 0 && ky_hi == k_h;
                const uint32_t *row_base = row_full ? qd.full : qd.bias;
                int32_t ox = 0;
                while (ox < out_w) {
                    const int32_t x0 = ox * stride_w - params->pad_w;
                    int8_t *o = out + (size_t)ox * out_px;
                    if (ox >= ox_full_lo && ox + 1 < ox_full_hi) {
                        /* two pixels whose windows are inside the input width: 2x2 blocks */
                        uint32_t ab[4] = {0u, 0u, 0u, 0u};
                        uint32_t cd[4] = {0u, 0u, 0u, 0u};
                        if (row_full) { /* constant zero offset: no adds in the loop */
                            window_2x2(&g, y0, x0, pix_step, 0, k_h, qd.w[0], qd.w[1], 0, ab);
                            window_2x2(&g, y0, x0, pix_step, 0, k_h, qd.w[2], qd.w[3], 0, cd);
                        } else {
                            window_2x2(&g, y0, x0, pix_step, ky_lo, ky_hi, qd.w[0], qd.w[1], in_offset, ab);
                            window_2x2(&g, y0, x0, pix_step, ky_lo, ky_hi, qd.w[2], qd.w[3], in_offset, cd);
                        }
                        const uint32_t p0[4] = {ab[0], ab[2], cd[0], cd[2]};
                        const uint32_t p1[4] = {ab[1], ab[3], cd[1], cd[3]};
                        store_quad(o, p0, row_base, &qd, lo, hi, out_offset);
                        store_quad(o + out_px, p1, row_base, &qd, lo, hi, out_offset);
                        ox += 2;
                    } else {
                        int32_t kx_lo;
                        int32_t kx_hi;
                        mcuqp_tap_range(x0, g.dil_w, k_w, in_w, &kx_lo, &kx_hi);
                        const int full = row_full && kx_lo == 0 && kx_hi == k_w;
                        uint32_t acc[4] = {0u, 0u, 0u, 0u};
                        if (full) {
                            window_1x4(&g, y0, x0, 0, k_h, 0, k_w, &qd, 0, acc);
                        } else {
                            window_1x4(&g, y0, x0, ky_lo, ky_hi, kx_lo, kx_hi, &qd, in_offset, acc);
                        }
                        store_quad(o, acc, full ? qd.full : qd.bias, &qd, lo, hi, out_offset);
                        ox += 1;
                    }
                }
            }
        }
    }
    return MCUQP_OK;
}

/* No scratch: the portable kernel keeps its working values in registers. */
int32_t mcuqp_conv2d_s8_get_buffer_size(const mcuqp_dims *input_dims, const mcuqp_dims *filter_dims)
{
    if (!(mcuqp_conv_valid_shapes(input_dims, filter_dims))) {
        return MCUQP_ERR_ARG;
    }
    return 0;
}
