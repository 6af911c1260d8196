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
 * (blocks of DW_CH_BLOCK on the stack); a window that crosses the border subtracts the
 * offset term of its missing taps instead of reading them. Channel counts that are not a
 * multiple of 4 end with predicated loads and stores.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_mve.h"
#include "mcuqp_nn.h"

#define DW_CH_BLOCK 128 /* channels per block of precomputed sums (stack) */

typedef struct {
    const int8_t *image;  /* (in_h, in_w, in_c) of the current batch */
    const int8_t *filter; /* 1HWC */
    const int32_t *base;  /* bias + input_offset * sum(filter), for channels c0 .. */
    int32_t c0;
    int32_t in_w;
    int32_t in_c;
    int32_t out_c;
    int32_t k_w;
    int32_t dil_h;
    int32_t dil_w;
    int32_t dm;
    int32_t input_offset;
    const mcuqp_requant *quant;
    int vec;
    mcuqp_mve_out o;
    int32_t act_min;
    int32_t act_max;
} dw_geom;

/* Four input channels of output channels c .. c + 3, at x (a pixel of the input). */
MCUQP_INLINE int32x4_t load_in(const int8_t *x, int32_t ic, uint32x4_t gather, int dm1, mve_pred16_t p)
{
    return dm1 ? vldrbq_z_s32(x + ic, p) : vldrbq_gather_offset_z_s32(x, gather, p);
}

/* The initial accumulators: base, minus the offset term of taps outside [ky_lo, ky_hi) x
 * [kx_lo, kx_hi). */
MCUQP_INLINE int32x4_t init_acc(const dw_geom *g, int32_t c, mve_pred16_t p, int32_t k_h, int32_t ky_lo,
                                int32_t ky_hi, int32_t kx_lo, int32_t kx_hi)
{
    int32x4_t acc = vldrwq_z_s32(g->base + (c - g->c0), p);
    if (ky_lo == 0 && ky_hi == k_h && kx_lo == 0 && kx_hi == g->k_w) {
        return acc;
    }
    const int32_t neg = -g->input_offset;
    int32_t ky;
    int32_t kx;
    for (ky = 0; ky < k_h; ++ky) {
        for (kx = 0; kx < g->k_w; ++kx) {
            if (ky >= ky_lo && ky < ky_hi && kx >= kx_lo && kx < kx_hi) {
                continue;
            }
            const int32x4_t w = vldrbq_z_s32(g->filter + (size_t)(ky * g->k_w + kx) * (size_t)g->out_c + c, p);
            acc = vmlaq_n_s32(acc, w, neg);
        }
    }
    return acc;
}

MCUQP_INLINE void store_out(const dw_geom *g, int8_t *out, int32_t c, int32_t n, int32x4_t acc, mve_pred16_t p)
{
    if (g->vec) {
        const mcuqp_mve_rq rq = mcuqp_mve_rq_load(g->quant, c, n);
        vstrbq_p_s32(out + c, mcuqp_mve_output(acc, &rq, &g->o), p);
    } else {
        int32_t a[4];
        int32_t j;
        vst1q_s32(a, acc);
        for (j = 0; j < n; ++j) {
            out[c + j] = mcuqp_mve_output_scalar(a[j], g->quant, c + j, g->act_min, g->act_max, g->o.offset);
        }
    }
}

/* Channels [c0, c1) of `np` (1 .. 4) output pixels sharing their tap ranges; pixel j's
 * window starts at input (y0, x0 + j * step) and its outputs go to out + j * out_c. */
MCUQP_INLINE void group4(const dw_geom *g, int dm1, int32_t k_h, int32_t y0, int32_t x0, int32_t step, int32_t np,
                         int32_t ky_lo, int32_t ky_hi, int32_t kx_lo, int32_t kx_hi, int32_t c1, int8_t *out)
{
    const size_t px = (size_t)g->in_c;
    const size_t s1 = np > 1 ? (size_t)step * px : 0u;
    const size_t s2 = np > 2 ? 2u * (size_t)step * px : 0u;
    const size_t s3 = np > 3 ? 3u * (size_t)step * px : 0u;
    const size_t o1 = np > 1 ? (size_t)g->out_c : 0u;
    const size_t o2 = np > 2 ? 2u * (size_t)g->out_c : 0u;
    const size_t o3 = np > 3 ? 3u * (size_t)g->out_c : 0u;
    int32_t c;
    for (c = g->c0; c < c1; c += 4) {
        const int32_t n = mcuqp_min_i32(4, c1 - c);
        const mve_pred16_t p = vctp32q((uint32_t)n);
        const int32_t ic = c / g->dm;
        uint32x4_t gather = vdupq_n_u32(0u);
        if (!dm1) {
            uint32_t t[4];
            int32_t j;
            for (j = 0; j < 4; ++j) {
                t[j] = (uint32_t)((c + j) / g->dm);
            }
            gather = vld1q_u32(t);
        }
        const int32x4_t init = init_acc(g, c, p, k_h, ky_lo, ky_hi, kx_lo, kx_hi);
        int32x4_t a0 = init;
        int32x4_t a1 = init;
        int32x4_t a2 = init;
        int32x4_t a3 = init;
        int32_t ky;
        for (ky = ky_lo; ky < ky_hi; ++ky) {
            const int8_t *row = g->image + ((size_t)(y0 + ky * g->dil_h) * (size_t)g->in_w) * px;
            const int8_t *wr = g->filter + (size_t)(ky * g->k_w) * (size_t)g->out_c + c;
            int32_t kx;
            for (kx = kx_lo; kx < kx_hi; ++kx) {
                const int8_t *x = row + (size_t)(x0 + kx * g->dil_w) * px;
                const int32x4_t w = vldrbq_z_s32(wr + (size_t)kx * (size_t)g->out_c, p);
                a0 = vaddq_s32(a0, vmulq_s32(load_in(x, ic, gather, dm1, p), w));
                if (np > 1) {
                    a1 = vaddq_s32(a1, vmulq_s32(load_in(x + s1, ic, gather, dm1, p), w));
                    a2 = vaddq_s32(a2, vmulq_s32(load_in(x + s2, ic, gather, dm1, p), w));
                    a3 = vaddq_s32(a3, vmulq_s32(load_in(x + s3, ic, gather, dm1, p), w));
                }
            }
        }
        store_out(g, out, c, n, a0, p);
        if (np > 1) {
            store_out(g, out + o1, c, n, a1, p);
            store_out(g, out + o2, c, n, a2, p);
            store_out(g, out + o3, c, n, a3, p);
        }
    }
}

MCUQP_MVE_NOINLINE static void group_many(const dw_geom *g, int dm1, int32_t k_h, int32_t y0, int32_t x0,
                                          int32_t step, int32_t np, int32_t ky_lo, int32_t ky_hi, int32_t c1,
                                          int8_t *out)
{
    if (dm1) {
        group4(g, 1, k_h, y0, x0, step, np, ky_lo, ky_hi, 0, g->k_w, c1, out);
    } else {
        group4(g, 0, k_h, y0, x0, step, np, ky_lo, ky_hi, 0, g->k_w, c1, out);
    }
}

MCUQP_MVE_NOINLINE static void group_one(const dw_geom *g, int dm1, int32_t k_h, int32_t y0, int32_t x0,
                                         int32_t ky_lo, int32_t ky_hi, int32_t kx_lo, int32_t kx_hi, int32_t c1,
                                         int8_t *out)
{
    if (dm1) {
        group4(g, 1, k_h, y0, x0, 0, 1, ky_lo, ky_hi, kx_lo, kx_hi, c1, out);
    } else {
        group4(g, 0, k_h, y0, x0, 0, 1, ky_lo, ky_hi, kx_lo, kx_hi, c1, out);
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
    int32_t base[DW_CH_BLOCK];
    const int32_t k_h = filter_dims->h;
    const int32_t out_c = filter_dims->c;
    const int32_t out_h = output_dims->h;
    const int32_t out_w = output_dims->w;
    const int32_t stride_w = params->stride_w;
    const size_t in_image = (size_t)input_dims->h * (size_t)input_dims->w * (size_t)input_dims->c;
    const size_t out_image = (size_t)out_h * (size_t)out_w * (size_t)out_c;
    dw_geom g;
    g.filter = filter;
    g.base = base;
    g.in_w = input_dims->w;
    g.in_c = input_dims->c;
    g.out_c = out_c;
    g.k_w = filter_dims->w;
    g.dil_h = params->dilation_h;
    g.dil_w = params->dilation_w;
    g.dm = params->depth_multiplier;
    g.input_offset = params->input_offset;
    g.quant = quant;
    g.vec = mcuqp_mve_vector_requant(quant);
    g.o = mcuqp_mve_out_init(params->act_min, params->act_max, params->output_offset);
    g.act_min = params->act_min;
    g.act_max = params->act_max;
    const int dm1 = g.dm == 1;
    const int32_t taps = k_h * g.k_w;

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
    for (c0 = 0; c0 < out_c; c0 += DW_CH_BLOCK) {
        const int32_t c1 = mcuqp_min_i32(c0 + DW_CH_BLOCK, out_c);
        int32_t c;
        g.c0 = c0;
        for (c = c0; c < c1; c += 4) {
            const mve_pred16_t p = vctp32q((uint32_t)(c1 - c));
            int32x4_t s = vdupq_n_s32(0);
            int32_t t;
            for (t = 0; t < taps; ++t) {
                s = vaddq_s32(s, vldrbq_z_s32(filter + (size_t)t * (size_t)out_c + c, p));
            }
            int32x4_t b = bias != NULL ? vldrwq_z_s32(bias + c, p) : vdupq_n_s32(0);
            b = vmlaq_n_s32(b, s, params->input_offset);
            vstrwq_p_s32(base + (c - c0), b, p);
        }
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            g.image = input + (size_t)n * in_image;
            int32_t oy;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_h;
                int32_t ky_lo;
                int32_t ky_hi;
                mcuqp_tap_range(y0, g.dil_h, k_h, input_dims->h, &ky_lo, &ky_hi);
                int8_t *row_out = output + (size_t)n * out_image + (size_t)oy * (size_t)out_w * (size_t)out_c;
                int32_t ox = 0;
                while (ox < out_w) {
                    const int32_t x0 = ox * stride_w - params->pad_w;
                    int8_t *out = row_out + (size_t)ox * (size_t)out_c;
                    if (ox >= ox_lo && ox < ox_hi) {
                        const int32_t np = mcuqp_min_i32(4, ox_hi - ox);
                        group_many(&g, dm1, k_h, y0, x0, stride_w, np, ky_lo, ky_hi, c1, out);
                        ox += np;
                    } else {
                        int32_t kx_lo;
                        int32_t kx_hi;
                        mcuqp_tap_range(x0, g.dil_w, g.k_w, g.in_w, &kx_lo, &kx_hi);
                        group_one(&g, dm1, k_h, y0, x0, ky_lo, ky_hi, kx_lo, kx_hi, c1, out);
                        ox += 1;
                    }
                }
            }
        }
    }
    return MCUQP_OK;
}
