/*
 * Depthwise 2-D convolution, int8 NHWC -> int8 NHWC, Helium (MVE) variant for the
 * Cortex-M55 (same contract and results as runtime_c/src/depthwise_conv2d_s8.c; TFLite int8
 * DepthwiseConvPerChannel semantics).
 *
 * input   (n, in_h, in_w, in_c) int8                 dims >= 1
 * filter  1HWC (1, k_h, k_w, in_c * depth_multiplier) int8
 * bias    (out_c,) int32, or NULL for none            out_c = in_c * depth_multiplier
 * output  (n, out_h, out_w, out_c) int8
 * params  stride_h/w >= 1, dilation_h/w >= 1, pad_h/pad_w = top/left padding >= 0,
 *         depth_multiplier >= 1, input_offset = -input zero point in [-127, 128],
 *         output_offset = output zero point in [-128, 127], act_min <= act_max within int8
 * quant   count 1 (per-tensor) or out_c (per-channel); shifts in [-31, 30]
 * Every dimension, stride, dilation and padding must be below 2^15.
 *
 * For output (b, oy, ox, oc), input channel ic = oc / depth_multiplier:
 *   acc = sum over in-bounds taps of filter[ky][kx][oc] * (input[iy][ix][ic] + input_offset)
 *         + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * The int32 accumulator wraps in two's complement; every sum is taken modulo 2^32.
 *
 * Technique: four channels per vector (int32 lanes: VLDRB.S32 widens four bytes; a depth
 * multiplier above 1 gathers the input channels), four output pixels of a row at a time
 * when their windows lie inside the input width, so each filter load feeds four VMUL + VADD (MVE has no vector-by-vector VMLA). The
 * input offset term input_offset * sum(filter) and the bias are precomputed per channel
 * (blocks of MCUQP_MVE_BLOCK on the stack); a window that crosses the border subtracts the
 * offset term of its missing taps instead of reading them. Channel counts that are not a
 * multiple of 4 end with predicated loads and stores.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_mve.h"
#include "mcuqp_mve_dw3.h"
#include "mcuqp_nn.h"

typedef struct {
    const int8_t *image;  /* (in_h, in_w, in_c) of the current batch */
    const int8_t *filter; /* 1HWC */
    int32_t in_w;
    int32_t in_c;
    int32_t out_c;
    int32_t k_h;
    int32_t k_w;
    int32_t dil_h;
    int32_t dil_w;
    int32_t dm;
    int32_t input_offset;
} dw_geom;

/* Where a group of output pixels (sharing their tap ranges) reads and writes. */
typedef struct {
    int32_t y0; /* window origin of the first pixel */
    int32_t x0;
    int32_t step; /* input columns between the pixels' windows */
    int32_t ky_lo;
    int32_t ky_hi;
    int32_t kx_lo;
    int32_t kx_hi;
    int8_t *out; /* the first pixel's outputs, channel 0 */
} dw_group;

/* Four input channels for output channels c .. c + 3 at pixel x: contiguous (depth multiplier
 * 1) or gathered; predicated for the block's last, partial group. */
MCUQP_INLINE int32x4_t load_in(const int8_t *x, uint32x4_t gather, int dm1, int part, mve_pred16_t p)
{
    if (dm1) {
        return part ? vldrbq_z_s32(x, p) : vldrbq_s32(x);
    }
    return part ? vldrbq_gather_offset_z_s32(x, gather, p) : vldrbq_gather_offset_s32(x, gather);
}

MCUQP_INLINE int32x4_t load_w(const int8_t *w, int part, mve_pred16_t p)
{
    return part ? vldrbq_z_s32(w, p) : vldrbq_s32(w);
}

/* init - input_offset * (filter taps of channels c .. c + 3 outside the group's tap ranges). */
MCUQP_MVE_NOINLINE static int32x4_t border_init(const dw_geom *g, const dw_group *q, int32_t c, int32x4_t init,
                                                mve_pred16_t p)
{
    const int32_t neg = -g->input_offset;
    int32_t ky;
    int32_t kx;
    for (ky = 0; ky < g->k_h; ++ky) {
        for (kx = 0; kx < g->k_w; ++kx) {
            if (ky < q->ky_lo || ky >= q->ky_hi || kx < q->kx_lo || kx >= q->kx_hi) {
                const int8_t *wt = g->filter + (size_t)(ky * g->k_w + kx) * (size_t)g->out_c + (size_t)c;
                init = vmlaq_n_s32(init, vldrbq_z_s32(wt, p), neg);
            }
        }
    }
    return init;
}

/* Every channel of the block for the group's `count` pixels (1 .. 4; np = 4 computes four
 * windows, repeating the last one past `count`, np = 1 one). */
MCUQP_INLINE void dw_block(const dw_geom *g, const dw_group *q, const mcuqp_mve_block *b, const mcuqp_mve_out *o,
                           int dm1, int np, int32_t count)
{
    const int32_t nky = q->ky_hi - q->ky_lo;
    const int32_t nkx = q->kx_hi - q->kx_lo;
    const size_t in_c = (size_t)g->in_c;
    const size_t out_c = (size_t)g->out_c;
    const size_t tap_x = (size_t)g->dil_w * in_c;
    const size_t row_x = (size_t)g->dil_h * (size_t)g->in_w * in_c - (size_t)nkx * tap_x;
    const size_t row_w = (size_t)(g->k_w - nkx) * out_c;
    const size_t ps = (size_t)q->step * in_c;
    const size_t s1 = count > 1 ? ps : 0u;
    const size_t s2 = count > 2 ? 2u * ps : s1;
    const size_t s3 = count > 3 ? 3u * ps : s2;
    const size_t o1 = count > 1 ? out_c : 0u;
    const size_t o2 = count > 2 ? 2u * out_c : o1;
    const size_t o3 = count > 3 ? 3u * out_c : o2;
    const int border = nky != g->k_h || nkx != g->k_w;
    const int32_t n = b->n;
    const int32_t dm = g->dm;
    const int32_t c0 = b->c0;
    const int8_t *x_first = g->image + ((size_t)(q->y0 + q->ky_lo * g->dil_h) * (size_t)g->in_w +
                                        (size_t)(q->x0 + q->kx_lo * g->dil_w)) * in_c;
    const int8_t *w_first = g->filter + (size_t)(q->ky_lo * g->k_w + q->kx_lo) * out_c + (size_t)c0;
    int8_t *out = q->out;
    int32_t i;
    for (i = 0; i < n; i += 4) {
        const int part = n - i < 4;
        const mve_pred16_t p = vctp32q((uint32_t)(n - i));
        uint32x4_t gather = vdupq_n_u32(0u);
        const int8_t *x = x_first;
        if (dm1) {
            x += c0 + i;
        } else {
            uint32_t t[4];
            int32_t j;
            for (j = 0; j < 4; ++j) {
                t[j] = (uint32_t)((c0 + i + j) / dm);
            }
            gather = vld1q_u32(t);
        }
        const int8_t *w = w_first + i;
        int32x4_t init = vld1q_s32(b->base + i);
        if (border) {
            init = border_init(g, q, c0 + i, init, p);
        }
        int32x4_t a0 = init;
        int32x4_t a1 = init;
        int32x4_t a2 = init;
        int32x4_t a3 = init;
        int32_t ky;
        for (ky = 0; ky < nky; ++ky) {
            int32_t kx;
            for (kx = 0; kx < nkx; ++kx) {
                const int32x4_t wv = load_w(w, part, p);
                a0 = vaddq_s32(a0, vmulq_s32(load_in(x, gather, dm1, part, p), wv));
                if (np > 1) {
                    a1 = vaddq_s32(a1, vmulq_s32(load_in(x + s1, gather, dm1, part, p), wv));
                    a2 = vaddq_s32(a2, vmulq_s32(load_in(x + s2, gather, dm1, part, p), wv));
                    a3 = vaddq_s32(a3, vmulq_s32(load_in(x + s3, gather, dm1, part, p), wv));
                }
                x += tap_x;
                w += out_c;
            }
            x += row_x;
            w += row_w;
        }
        const int32_t m = part ? n - i : 4;
        mcuqp_mve_store4(out, a0, b, i, m, o);
        if (np > 1) {
            mcuqp_mve_store4(out + o1, a1, b, i, m, o);
            mcuqp_mve_store4(out + o2, a2, b, i, m, o);
            mcuqp_mve_store4(out + o3, a3, b, i, m, o);
        }
    }
}

MCUQP_MVE_NOINLINE static void dw_four(const dw_geom *g, const dw_group *q, const mcuqp_mve_block *b,
                                       const mcuqp_mve_out *o, int32_t count)
{
    if (g->dm == 1) {
        dw_block(g, q, b, o, 1, 4, count);
    } else {
        dw_block(g, q, b, o, 0, 4, count);
    }
}

MCUQP_MVE_NOINLINE static void dw_one(const dw_geom *g, const dw_group *q, const mcuqp_mve_block *b,
                                      const mcuqp_mve_out *o)
{
    if (g->dm == 1) {
        dw_block(g, q, b, o, 1, 1, 1);
    } else {
        dw_block(g, q, b, o, 0, 1, 1);
    }
}

/* The 3x3 path over the whole tensor; the block (b->c0, b->n <= DW3_G) is prepared. Tiles
 * of output columns outermost and output rows inside, so that the three row slots of buf
 * act as a ring: input row iy lives in slot iy mod 3 and is gathered once per tile, not
 * once for each of the (up to three) output rows that read it. */
MCUQP_MVE_NOINLINE static void dw3_pass(const mcuqp_conv_params *p, const mcuqp_dims *in, const int8_t *input,
                                        const mcuqp_dims *out_dims, int8_t *output, int32_t out_c,
                                        const mcuqp_mve_block *b, const mcuqp_mve_out *o, dw3_buf *buf)
{
    const int8_t z = (int8_t)(-p->input_offset);
    const int32_t sw = p->stride_w;
    const size_t in_c = (size_t)in->c;
    const mve_pred16_t pc = vctp8q((uint32_t)b->n);
    const int8x16_t zv = vdupq_n_s8(z);
    int32_t n;
    for (n = 0; n < in->n; ++n) {
        const int8_t *image = input + (size_t)n * (size_t)in->h * (size_t)in->w * in_c + (size_t)b->c0;
        int8_t *image_out = output + (size_t)n * (size_t)out_dims->h * (size_t)out_dims->w * (size_t)out_c +
                            (size_t)b->c0;
        int32_t ox0;
        for (ox0 = 0; ox0 < out_dims->w; ox0 += DW3_TILE) {
            const int32_t tile = mcuqp_min_i32(DW3_TILE, out_dims->w - ox0);
            const int32_t cols = (tile - 1) * sw + 3;
            const int32_t ix0 = ox0 * sw - p->pad_w;
            int32_t held[3]; /* the input row in each slot; below every row's index when empty */
            held[0] = held[1] = held[2] = -p->pad_h - 3;
            int32_t oy;
            for (oy = 0; oy < out_dims->h; ++oy) {
                int32_t ky;
                for (ky = 0; ky < 3; ++ky) {
                    const int32_t iy = oy * p->stride_h - p->pad_h + ky;
                    const int32_t slot = (iy + 3 * (p->pad_h + 3)) % 3;
                    int8_t *dst = buf->store[slot];
                    buf->rows[ky] = dst;
                    if (held[slot] == iy) {
                        continue;
                    }
                    held[slot] = iy;
                    if (iy < 0 || iy >= in->h) {
                        int32_t u;
                        for (u = 0; u < cols; ++u, dst += DW3_G) {
                            vstrbq_s8(dst, zv);
                        }
                        continue;
                    }
                    dw3_fill_row(dst, image + (size_t)iy * (size_t)in->w * in_c, in_c, ix0, cols, in->w, zv, pc);
                }
                dw3_tile(buf, tile, sw, b, o,
                         image_out + ((size_t)oy * (size_t)out_dims->w + (size_t)ox0) * (size_t)out_c,
                         (size_t)out_c);
            }
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
    mcuqp_mve_block blk;
    const int32_t out_c = filter_dims->c;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t stride_w = params->stride_w;
    const size_t in_image = (size_t)input_dims->h * (size_t)input_dims->w * (size_t)input_dims->c;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    const mcuqp_mve_out o = mcuqp_mve_out_init(quant, params->act_min, params->act_max, params->output_offset);
    dw_geom g;
    g.filter = filter;
    g.in_w = input_dims->w;
    g.in_c = input_dims->c;
    g.out_c = out_c;
    g.k_h = filter_dims->h;
    g.k_w = filter_dims->w;
    g.dil_h = params->dilation_h;
    g.dil_w = params->dilation_w;
    g.dm = params->depth_multiplier;
    g.input_offset = params->input_offset;
    const int32_t taps = g.k_h * g.k_w;

    /* Output columns [ox_lo, ox_hi) have windows inside the input width. */
    int32_t ox_lo = 0;
    while (ox_lo < out_w && ox_lo * stride_w - params->pad_w < 0) {
        ++ox_lo;
    }
    int32_t ox_hi = ox_lo;
    while (ox_hi < out_w && ox_hi * stride_w - params->pad_w + (g.k_w - 1) * g.dil_w < g.in_w) {
        ++ox_hi;
    }

    int32_t c0;
    if (g.k_h == 3 && g.k_w == 3 && g.dil_h == 1 && g.dil_w == 1 && g.dm == 1 && (stride_w == 1 || stride_w == 2)) {
        dw3_buf buf;
        dw3_buf_init(&buf);
        for (c0 = 0; c0 < out_c; c0 += DW3_G) {
            mcuqp_mve_block_quant(&blk, quant, c0, mcuqp_min_i32(DW3_G, out_c - c0));
            dw3_prepare(&buf, &blk, filter, bias, out_c, params->input_offset);
            dw3_pass(params, input_dims, input, output_dims, output, out_c, &blk, &o, &buf);
        }
        return MCUQP_OK;
    }
    for (c0 = 0; c0 < out_c; c0 += MCUQP_MVE_BLOCK) {
        mcuqp_mve_block_quant(&blk, quant, c0, mcuqp_min_i32(MCUQP_MVE_BLOCK, out_c - c0));
        int32_t i;
        for (i = 0; i < blk.n; i += 4) {
            const int32_t c = c0 + i;
            const mve_pred16_t p = vctp32q((uint32_t)(blk.n - i));
            int32x4_t s = vdupq_n_s32(0);
            int32_t t;
            for (t = 0; t < taps; ++t) {
                s = vaddq_s32(s, vldrbq_z_s32(filter + (size_t)t * (size_t)out_c + c, p));
            }
            int32x4_t bv = bias != NULL ? vldrwq_z_s32(bias + c, p) : vdupq_n_s32(0);
            bv = vmlaq_n_s32(bv, s, params->input_offset);
            vstrwq_p_s32(blk.base + i, bv, p);
        }
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            g.image = input + (size_t)n * in_image;
            int32_t oy;
            for (oy = 0; oy < out_h; ++oy) {
                dw_group q;
                q.y0 = oy * params->stride_h - params->pad_h;
                mcuqp_tap_range(q.y0, g.dil_h, g.k_h, input_dims->h, &q.ky_lo, &q.ky_hi);
                int8_t *row_out = output + (size_t)n * out_image + (size_t)oy * (size_t)out_w * (size_t)out_c +
                                  (size_t)c0;
                int32_t ox = 0;
                while (ox < out_w) {
                    q.x0 = ox * stride_w - params->pad_w;
                    q.out = row_out + (size_t)ox * (size_t)out_c;
                    if (ox >= ox_lo && ox + 1 < ox_hi) {
                        const int32_t count = mcuqp_min_i32(4, ox_hi - ox);
                        q.step = stride_w;
                        q.kx_lo = 0;
                        q.kx_hi = g.k_w;
                        dw_four(&g, &q, &blk, &o, count);
                        ox += count;
                    } else {
                        q.step = 0;
                        mcuqp_tap_range(q.x0, g.dil_w, g.k_w, g.in_w, &q.kx_lo, &q.kx_hi);
                        dw_one(&g, &q, &blk, &o);
                        ox += 1;
                    }
                }
            }
        }
    }
    return MCUQP_OK;
}
