/*
 * 2-D convolution, int8 NHWC -> int8 NHWC, Helium (MVE) variant for the Cortex-M55 (same
 * contract and results as runtime_c/src/conv2d_s8.c; TFLite int8 ConvPerChannel semantics).
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
 *   acc = sum over in-bounds taps and in_c of filter * (input + input_offset) + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * The int32 accumulator wraps in two's complement; every sum is taken modulo 2^32.
 *
 * Technique: sum(filter * (input + input_offset)) = sum(filter * input) + input_offset *
 * sum(filter); the second term and the bias are computed once per call for blocks of
 * MCUQP_MVE_BLOCK channels (on the stack, with the requantization split for the vector form). A tap outside the input is read as the input zero
 * point (-input_offset, an int8), whose term is exactly 0. Each output pixel's window is
 * gathered once into a column of k_h * k_w * in_c bytes on the stack (im2col, up to
 * CONV_COL_MAX = 1024 bytes; a 1x1 window inside the input is read in place), so a first
 * layer with few input channels (KWS 10x4x1, image 3x3x3) still fills whole vectors.
 * Four output channels then share each 16-byte input load: one VLDRB of input, four of
 * weights and four VMLADAVA (64 MACs); the window's tail is one predicated step. The
 * four accumulators are requantized together (mcuqp_mve.h) and stored by one narrowing
 * VSTRB. A 1x1 convolution without padding takes four pixels per pass instead: the four
 * dot products of one channel share each 16-byte filter load, and their outputs leave in one
 * requantization and one scatter store. Longer windows are taken tap by tap straight from the input. Requantizations
 * outside the vector form (multiplier INT32_MIN; single rounding with shift >= 0) take a
 * scalar output stage with mcuqp_requantize().
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_mve.h"
#include "mcuqp_nn.h"

#define CONV_COL_MAX 1024 /* im2col column bytes (stack) */
#define CONV_COL4 640     /* windows up to this long: four pixels per pass, four columns (stack) */

typedef struct {
    const int8_t *image; /* (in_h, in_w, in_c) of the current batch */
    int32_t in_h;
    int32_t in_w;
    int32_t in_c;
    int32_t k_h;
    int32_t k_w;
    int32_t dil_h;
    int32_t dil_w;
    int8_t zero_point; /* -input_offset: the value whose term is 0 */
} conv_geom;

/* The window at input (y0, x0) in filter order (ky, kx, ic) into col; padding taps are the
 * zero point. */
static void im2col(const conv_geom *g, int32_t y0, int32_t x0, int32_t kx_lo, int32_t kx_hi, int8_t *col)
{
    const int32_t run = g->k_w * g->in_c;
    int32_t ky;
    if (g->dil_w == 1 && run <= 16) {
        /* a filter row in one vector: lanes [lo, hi) from the input, the zero point elsewhere;
         * 16 bytes stored per row (the next row overwrites the excess; col has room past k) */
        const int8x16_t zv = vdupq_n_s8(g->zero_point);
        const int32_t lo = kx_lo * g->in_c;
        const int32_t hi = mcuqp_max_i32(kx_hi * g->in_c, lo);
        const mve_pred16_t p = (mve_pred16_t)(vctp8q((uint32_t)hi) ^ vctp8q((uint32_t)lo));
        for (ky = 0; ky < g->k_h; ++ky, col += run) {
            const int32_t iy = y0 + ky * g->dil_h;
            if (iy < 0 || iy >= g->in_h || hi == lo) {
                vstrbq_s8(col, zv);
                continue;
            }
            /* lane lo reads input column x0 + kx_lo; inactive lanes touch no memory */
            const uintptr_t first = (uintptr_t)(g->image + ((size_t)iy * (size_t)g->in_w + (size_t)(x0 + kx_lo)) *
                                                               (size_t)g->in_c);
            const int8_t *src = (const int8_t *)(first - (uintptr_t)lo);
            vstrbq_s8(col, vpselq_s8(vldrbq_z_s8(src, p), zv, p));
        }
        return;
    }
    for (ky = 0; ky < g->k_h; ++ky, col += run) {
        const int32_t iy = y0 + ky * g->dil_h;
        if (iy < 0 || iy >= g->in_h || kx_hi <= kx_lo) {
            mcuqp_mve_fill(col, g->zero_point, run);
            continue;
        }
        const int8_t *row = g->image + (size_t)iy * (size_t)g->in_w * (size_t)g->in_c;
        if (g->dil_w == 1) {
            const int32_t before = kx_lo * g->in_c;
            const int32_t inside = (kx_hi - kx_lo) * g->in_c;
            mcuqp_mve_fill(col, g->zero_point, before);
            mcuqp_mve_copy(col + before, row + (size_t)(x0 + kx_lo) * (size_t)g->in_c, inside);
            mcuqp_mve_fill(col + before + inside, g->zero_point, run - before - inside);
        } else {
            int32_t kx;
            for (kx = 0; kx < g->k_w; ++kx) {
                int8_t *dst = col + kx * g->in_c;
                if (kx >= kx_lo && kx < kx_hi) {
                    mcuqp_mve_copy(dst, row + (size_t)(x0 + kx * g->dil_w) * (size_t)g->in_c, g->in_c);
                } else {
                    mcuqp_mve_fill(dst, g->zero_point, g->in_c);
                }
            }
        }
    }
}

/* A window inside the input with dilation_w 1: k_h runs of k_w * in_c contiguous bytes. */
MCUQP_INLINE void im2col_full(const conv_geom *g, int32_t y0, int32_t x0, int8_t *col)
{
    const int32_t run = g->k_w * g->in_c;
    const size_t step = (size_t)g->dil_h * (size_t)g->in_w * (size_t)g->in_c;
    const int8_t *src = g->image + ((size_t)y0 * (size_t)g->in_w + (size_t)x0) * (size_t)g->in_c;
    int32_t ky;
    if (run <= 16) {
        const mve_pred16_t p = vctp8q((uint32_t)run);
        for (ky = 0; ky < g->k_h; ++ky, col += run, src += step) {
            vstrbq_p_s8(col, vldrbq_z_s8(src, p), p);
        }
        return;
    }
    for (ky = 0; ky < g->k_h; ++ky, col += run, src += step) {
        mcuqp_mve_copy(col, src, run);
    }
}

/* Windows longer than a column: the block's channels of one pixel, tap by tap from the
 * input; taps outside it read `zeros` (min(in_c, CONV_COL_MAX) zero points) chunk by chunk. */
MCUQP_MVE_NOINLINE static void pixel_direct(const conv_geom *g, int32_t y0, int32_t x0, const int8_t *filter,
                                            const int8_t *zeros, const mcuqp_mve_block *blk, const mcuqp_mve_out *o,
                                            int8_t *out)
{
    const int32_t k = g->k_h * g->k_w * g->in_c;
    int32_t i;
    for (i = 0; i < blk->n; i += 4) {
        const int32_t n = mcuqp_min_i32(4, blk->n - i);
        const int8_t *w = filter + (size_t)i * (size_t)k;
        const size_t s1 = n > 1 ? (size_t)k : 0u;
        const size_t s2 = n > 2 ? 2u * (size_t)k : 0u;
        const size_t s3 = n > 3 ? 3u * (size_t)k : 0u;
        int32x4_t acc = vld1q_s32(blk->base + i);
        int32_t ky;
        for (ky = 0; ky < g->k_h; ++ky) {
            const int32_t iy = y0 + ky * g->dil_h;
            int32_t kx;
            for (kx = 0; kx < g->k_w; ++kx) {
                const int32_t ix = x0 + kx * g->dil_w;
                const int inside = iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w;
                const int8_t *x = g->image + ((size_t)iy * (size_t)g->in_w + (size_t)ix) * (size_t)g->in_c;
                const int8_t *wt = w + (size_t)(ky * g->k_w + kx) * (size_t)g->in_c;
                int32_t c;
                for (c = 0; c < g->in_c; c += CONV_COL_MAX) {
                    const int32_t len = mcuqp_min_i32(CONV_COL_MAX, g->in_c - c);
                    const int8_t *xc = inside ? x + c : zeros;
                    acc = vaddq_s32(acc, mcuqp_mve_dot4(xc, wt + c, wt + s1 + c, wt + s2 + c, wt + s3 + c, len));
                }
            }
        }
        mcuqp_mve_store4(out, acc, blk, i, n, o);
    }
}

/* The block's channels of one pixel whose window is at x (see mcuqp_mve_pixel). */
MCUQP_MVE_NOINLINE static void conv_pixel(const int8_t *x, const int8_t *w, int32_t k, const mcuqp_mve_block *blk,
                                          const mcuqp_mve_out *o, int8_t *out)
{
    mcuqp_mve_pixel(x, w, k, blk, o, out);
}

/* Four interleaved pixels (see mcuqp_mve_pixels4_il). */
MCUQP_MVE_NOINLINE static void conv_pixels4_il(const int8_t *il, const int8_t *w, int32_t k,
                                               const mcuqp_mve_block *blk, const mcuqp_mve_out *o, int8_t *out,
                                               uint32x4_t offsets)
{
    mcuqp_mve_pixels4_il(il, w, k, blk, o, out, offsets);
}

/* Four pixels of a 1x1 convolution (see mcuqp_mve_pixels4). */
MCUQP_MVE_NOINLINE static void conv_pixels4(const int8_t *const x[4], const int8_t *w, int32_t k,
                                            const mcuqp_mve_block *blk, const mcuqp_mve_out *o, int8_t *out,
                                            uint32x4_t offsets)
{
    if (k <= 16) {
        mcuqp_mve_pixels4_short(x, w, k, blk, o, out, offsets);
    } else {
        mcuqp_mve_pixels4(x, w, k, blk, o, out, offsets);
    }
}

/* Slots count .. 3 of an interleaved group repeat slot count - 1 (k bytes each). */
static void il_repeat(int8_t *il, int32_t count, int32_t k)
{
    const int32_t chunks = (k + 15) >> 4;
    int32_t j;
    for (j = count; j < 4; ++j) {
        int32_t c;
        for (c = 0; c < chunks; ++c) {
            vstrbq_s8(il + (4 * c + j) * 16, vldrbq_s8(il + (4 * c + count - 1) * 16));
        }
    }
}

/* Windows of at most CONV_COL4 bytes: output pixels four at a time in raster order, each
 * window gathered (through col where it is not one contiguous run) and interleaved into il
 * (see mcuqp_mve_pixels4_il). */
MCUQP_MVE_NOINLINE static void conv_windows4(const mcuqp_conv_params *params, conv_geom *g, const mcuqp_dims *in,
                                             const int8_t *input, const mcuqp_dims *out_dims, int8_t *output,
                                             const int8_t *w, const mcuqp_mve_block *blk, const mcuqp_mve_out *o,
                                             int32_t out_c, int8_t *il, int8_t *col)
{
    const int32_t pixels = in->n * out_dims->h * out_dims->w;
    const size_t in_image = (size_t)in->h * (size_t)in->w * (size_t)in->c;
    const int32_t k = g->k_h * g->k_w * g->in_c;
    const int contiguous = g->k_w * g->in_c == k || (g->dil_w == 1 && g->in_w == g->k_w);
    const int32_t run = g->k_w * g->in_c; /* bytes of one filter row */
    const int whole_runs = g->dil_w == 1 && (run & 15) == 0;
    const size_t row_step = (size_t)g->dil_h * (size_t)g->in_w * (size_t)g->in_c;
    const uint32x4_t four = mcuqp_mve_offsets4(4, out_c);
    int32_t nb = 0; /* the next pixel in raster order */
    int32_t ny = 0;
    int32_t nx = 0;
    int32_t p;
    for (p = 0; p < pixels; p += 4) {
        const int32_t count = mcuqp_min_i32(4, pixels - p);
        int32_t j;
        for (j = 0; j < count; ++j) {
            const int32_t y0 = ny * params->stride_h - params->pad_h;
            const int32_t x0 = nx * params->stride_w - params->pad_w;
            g->image = input + (size_t)nb * in_image;
            const int full = y0 >= 0 && y0 + (g->k_h - 1) * g->dil_h < g->in_h && x0 >= 0 &&
                             x0 + (g->k_w - 1) * g->dil_w < g->in_w;
            if (full && contiguous && g->dil_h == 1) {
                /* one run of k bytes in the input */
                mcuqp_mve_interleave(il, j, g->image + ((size_t)y0 * (size_t)g->in_w + (size_t)x0) * (size_t)g->in_c,
                                     k);
            } else if (full && whole_runs) {
                /* k_h runs of whole 16-byte chunks: straight from the input */
                const int8_t *src = g->image + ((size_t)y0 * (size_t)g->in_w + (size_t)x0) * (size_t)g->in_c;
                int8_t *dst = il + 16 * j;
                int32_t ky;
                for (ky = 0; ky < g->k_h; ++ky, src += row_step) {
                    const int8_t *x = src;
                    int32_t c;
                    for (c = 0; c < run; c += 16, dst += 64, x += 16) {
                        vstrbq_s8(dst, vldrbq_s8(x));
                    }
                }
            } else {
                if (full && g->dil_w == 1) {
                    im2col_full(g, y0, x0, col);
                } else {
                    int32_t kx_lo;
                    int32_t kx_hi;
                    mcuqp_tap_range(x0, g->dil_w, g->k_w, g->in_w, &kx_lo, &kx_hi);
                    im2col(g, y0, x0, kx_lo, kx_hi, col);
                }
                mcuqp_mve_interleave(il, j, col, k);
            }
            if (++nx == out_dims->w) {
                nx = 0;
                if (++ny == out_dims->h) {
                    ny = 0;
                    ++nb;
                }
            }
        }
        il_repeat(il, count, k);
        conv_pixels4_il(il, w, k, blk, o, output + (size_t)p * (size_t)out_c + (size_t)blk->c0,
                        count == 4 ? four : mcuqp_mve_offsets4(count, out_c));
    }
}

/* A 1x1 convolution over contiguous pixels (stride 1, no padding) with 16 < in_c <=
 * CONV_COL4: groups of four pixels interleaved into il (see mcuqp_mve_pixels4_il), the last
 * group of four ending at the last pixel as in conv_pointwise_short. */
MCUQP_MVE_NOINLINE static void conv_pointwise_il(const int8_t *input, int32_t pixels, int32_t in_c, int8_t *output,
                                                 int32_t out_c, const int8_t *w, const mcuqp_mve_block *blk,
                                                 const mcuqp_mve_out *o, int8_t *il)
{
    int32_t j;
    output += blk->c0;
    if (pixels < 4) {
        for (j = 0; j < 4; ++j) {
            mcuqp_mve_interleave(il, j, input + (size_t)mcuqp_min_i32(j, pixels - 1) * (size_t)in_c, in_c);
        }
        conv_pixels4_il(il, w, in_c, blk, o, output, mcuqp_mve_offsets4(pixels, out_c));
        return;
    }
    const uint32x4_t four = mcuqp_mve_offsets4(4, out_c);
    int32_t p;
    for (p = 0; p < pixels; p += 4) {
        const int32_t q = mcuqp_min_i32(p, pixels - 4);
        for (j = 0; j < 4; ++j) {
            mcuqp_mve_interleave(il, j, input + (size_t)(q + j) * (size_t)in_c, in_c);
        }
        conv_pixels4_il(il, w, in_c, blk, o, output + (size_t)q * (size_t)out_c, four);
    }
}

/* A 1x1 convolution without padding: output pixels four at a time in raster order. */
MCUQP_MVE_NOINLINE static void conv_pointwise(const mcuqp_conv_params *params, const mcuqp_dims *in,
                                              const int8_t *input, const mcuqp_dims *out_dims, int8_t *output,
                                              const int8_t *w, const mcuqp_mve_block *blk, const mcuqp_mve_out *o,
                                              int32_t out_c)
{
    const int32_t pixels = in->n * out_dims->h * out_dims->w;
    const uint32x4_t four = mcuqp_mve_offsets4(4, out_c);
    int32_t nb = 0; /* the next pixel in raster order */
    int32_t ny = 0;
    int32_t nx = 0;
    int32_t p;
    for (p = 0; p < pixels; p += 4) {
        const int32_t count = mcuqp_min_i32(4, pixels - p);
        const int8_t *x[4];
        int32_t j;
        for (j = 0; j < 4; ++j) {
            if (j < count) {
                x[j] = input + (((size_t)nb * (size_t)in->h + (size_t)(ny * params->stride_h)) * (size_t)in->w +
                                (size_t)(nx * params->stride_w)) * (size_t)in->c;
                if (++nx == out_dims->w) {
                    nx = 0;
                    if (++ny == out_dims->h) {
                        ny = 0;
                        ++nb;
                    }
                }
            } else {
                x[j] = x[j - 1];
            }
        }
        conv_pixels4(x, w, in->c, blk, o, output + (size_t)p * (size_t)out_c + (size_t)blk->c0,
                     count == 4 ? four : mcuqp_mve_offsets4(count, out_c));
    }
}

/* A 1x1 convolution over contiguous pixels (stride 1, no padding) with in_c <= 16: groups of
 * four pixels in one loop (see mcuqp_mve_pixels4_short); the last group of four ends at
 * the last pixel (recomputing a few outputs, which the input does not alias). */
MCUQP_MVE_NOINLINE static void conv_pointwise_short(const int8_t *input, int32_t pixels, int32_t in_c,
                                                    int8_t *output, int32_t out_c, const int8_t *w,
                                                    const mcuqp_mve_block *blk, const mcuqp_mve_out *o)
{
    const int8_t *x[4];
    int32_t j;
    output += blk->c0;
    if (pixels < 4) {
        for (j = 0; j < 4; ++j) {
            x[j] = input + (size_t)mcuqp_min_i32(j, pixels - 1) * (size_t)in_c;
        }
        mcuqp_mve_pixels4_short(x, w, in_c, blk, o, output, mcuqp_mve_offsets4(pixels, out_c));
        return;
    }
    const uint32x4_t four = mcuqp_mve_offsets4(4, out_c);
    int32_t p;
    for (p = 0; p < pixels; p += 4) {
        const int32_t q = mcuqp_min_i32(p, pixels - 4);
        for (j = 0; j < 4; ++j) {
            x[j] = input + (size_t)(q + j) * (size_t)in_c;
        }
        mcuqp_mve_pixels4_short(x, w, in_c, blk, o, output + (size_t)q * (size_t)out_c, four);
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
    mcuqp_mve_block blk;
    int8_t col[CONV_COL_MAX + 16]; /* 16 bytes of slack: im2col stores whole vectors per short filter row */
    int8_t col4[4 * CONV_COL4];

    const int32_t out_c = filter_dims->n;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t k = filter_dims->h * filter_dims->w * input_dims->c;
    const size_t in_image = (size_t)input_dims->h * (size_t)input_dims->w * (size_t)input_dims->c;
    const mcuqp_mve_out o = mcuqp_mve_out_init(quant, params->act_min, params->act_max, params->output_offset);
    const int pointwise = filter_dims->h == 1 && filter_dims->w == 1;
    conv_geom g;
    g.in_h = input_dims->h;
    g.in_w = input_dims->w;
    g.in_c = input_dims->c;
    g.k_h = filter_dims->h;
    g.k_w = filter_dims->w;
    g.dil_h = params->dilation_h;
    g.dil_w = params->dilation_w;
    g.zero_point = (int8_t)(-params->input_offset);
    if (k > CONV_COL_MAX) {
        mcuqp_mve_fill(col, g.zero_point, mcuqp_min_i32(g.in_c, CONV_COL_MAX));
    }

    int32_t c0;
    for (c0 = 0; c0 < out_c; c0 += MCUQP_MVE_BLOCK) {
        const int8_t *w = filter + (size_t)c0 * (size_t)k;
        mcuqp_mve_block_quant(&blk, quant, c0, mcuqp_min_i32(MCUQP_MVE_BLOCK, out_c - c0));
        mcuqp_mve_block_row_sums(&blk, filter, (size_t)k, bias, params->input_offset);
        if (pointwise && params->pad_h == 0 && params->pad_w == 0 && params->stride_h == 1 &&
            params->stride_w == 1 && k <= 16 && out_h == input_dims->h && out_w == input_dims->w) {
            conv_pointwise_short(input, input_dims->n * out_h * out_w, k, output, out_c, w, &blk, &o);
            continue;
        }
        if (pointwise && params->pad_h == 0 && params->pad_w == 0 && params->stride_h == 1 &&
            params->stride_w == 1 && k <= CONV_COL4 && out_h == input_dims->h && out_w == input_dims->w) {
            conv_pointwise_il(input, input_dims->n * out_h * out_w, k, output, out_c, w, &blk, &o, col4);
            continue;
        }
        if (pointwise && params->pad_h == 0 && params->pad_w == 0) {
            conv_pointwise(params, input_dims, input, output_dims, output, w, &blk, &o, out_c);
            continue;
        }
        if (k <= CONV_COL4) {
            conv_windows4(params, &g, input_dims, input, output_dims, output, w, &blk, &o, out_c, col4, col);
            continue;
        }
        int8_t *out = output + c0;
        int32_t b;
        for (b = 0; b < input_dims->n; ++b) {
            g.image = input + (size_t)b * in_image;
            int32_t oy;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_h;
                int32_t ky_lo;
                int32_t ky_hi;
                mcuqp_tap_range(y0, g.dil_h, g.k_h, g.in_h, &ky_lo, &ky_hi);
                int32_t ox;
                for (ox = 0; ox < out_w; ++ox, out += out_c) {
                    const int32_t x0 = ox * params->stride_w - params->pad_w;
                    int32_t kx_lo;
                    int32_t kx_hi;
                    mcuqp_tap_range(x0, g.dil_w, g.k_w, g.in_w, &kx_lo, &kx_hi);
                    const int full = ky_lo == 0 && ky_hi == g.k_h && kx_lo == 0 && kx_hi == g.k_w;
                    if (pointwise && full) {
                        const int8_t *x = g.image + ((size_t)y0 * (size_t)g.in_w + (size_t)x0) * (size_t)g.in_c;
                        conv_pixel(x, w, k, &blk, &o, out);
                    } else if (k <= CONV_COL_MAX) {
                        im2col(&g, y0, x0, kx_lo, kx_hi, col);
                        conv_pixel(col, w, k, &blk, &o, out);
                    } else {
                        pixel_direct(&g, y0, x0, w, col, &blk, &o, out);
                    }
                }
            }
        }
    }
    return MCUQP_OK;
}
