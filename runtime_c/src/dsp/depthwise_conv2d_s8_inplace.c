/*
 * Depthwise 2-D convolution computed in place, Cortex-M DSP-extension variant (same contract,
 * argument checks and results as runtime_c/src/depthwise_conv2d_s8_inplace.c).
 *
 * data    (n, h, w, c) int8: the input on entry, the output on return
 * filter  1HWC (1, k_h, k_w, c) int8                 depth_multiplier == 1
 * bias    (c,) int32, or NULL for none
 * dims    input_dims == output_dims (n, h, w, c), every one >= 1; filter_dims (1, k_h, k_w, c)
 * params  depth_multiplier == 1, strides, dilations and padding that keep the output the
 *         input's h and w; offsets and clamp as mcuqp_depthwise_conv2d_s8
 * quant   count 1 (per-tensor) or c (per-channel); shifts in [-31, 30]
 * buffer  scratch of mcuqp_depthwise_conv2d_s8_inplace_buffer_size(input_dims) = h * w bytes,
 *         not overlapping data
 * Every dimension, stride, dilation and padding must be below 2^15.
 *
 *   acc = sum over in-bounds taps of filter[ky][kx][ch] * (input + input_offset) + bias[ch]
 *   y   = clamp(requantize(acc, multiplier[ch], shift[ch]) + output_offset, act_min, act_max)
 *
 * Why it is exact (3x3, stride 1, dilation 1, padding 1: KWS, MobileNet): channels are taken
 * G = min(DWD_G, h / 2) at a time and output rows top to bottom. Before any output of row y
 * is written, input row y (the pass's channels) is saved to the buffer, where input row y - 1
 * still is; two rows of w * G bytes fit the h * w buffer. Row y + 1 is still intact in data.
 * Other shapes (and h < 2) take the portable algorithm: channel by channel through the h * w
 * plane in the buffer.
 *
 * Technique: the three input rows of a tile of up to DWD_TILE output pixels are gathered into
 * a stack tile with the input zero point around them (whose term is 0), so every window is a
 * plain 3x3 dot product; per channel the nine taps and bias + input_offset * sum(taps) are
 * loaded once for the tile, and the requantization is prepared once per pass (mcuqp_rq). A
 * multiplier of INT32_MIN takes the plane path with mcuqp_requantize().
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

#define DWD_G 16    /* channels per pass */
#define DWD_TILE 32 /* output pixels per tile */
#define DWD_COLS (DWD_TILE + 2)

int32_t mcuqp_depthwise_conv2d_s8_inplace_buffer_size(const mcuqp_dims *input_dims)
{
    if (input_dims == NULL || !mcuqp_conv_valid_dim(input_dims->n) || !mcuqp_conv_valid_dim(input_dims->h) ||
        !mcuqp_conv_valid_dim(input_dims->w) || !mcuqp_conv_valid_dim(input_dims->c)) {
        return MCUQP_ERR_ARG;
    }
    return input_dims->h * input_dims->w;
}

static int dwd_valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q, const mcuqp_dims *in,
                          const mcuqp_dims *f, const mcuqp_dims *out)
{
    return p->depth_multiplier == 1 && mcuqp_conv_valid_params(p, 1) &&
           mcuqp_depthwise_conv2d_s8_inplace_buffer_size(in) >= 0 && out->n == in->n && out->h == in->h &&
           out->w == in->w && out->c == in->c && f->n == 1 && mcuqp_conv_valid_dim(f->h) &&
           mcuqp_conv_valid_dim(f->w) && f->c == in->c && mcuqp_valid_requant(q, in->c);
}

/* Any shape: channel by channel through the h * w plane in the buffer, one output at a time. */
MCUQP_NOINLINE static void dwd_plain(const mcuqp_conv_params *p, const mcuqp_requant *quant, const mcuqp_dims *in,
                                     int8_t *data, const mcuqp_dims *f, const int8_t *filter, const int32_t *bias,
                                     int8_t *plane)
{
    const int32_t h = in->h;
    const int32_t w = in->w;
    const int32_t c = in->c;
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    int32_t n;
    for (n = 0; n < in->n; ++n) {
        int8_t *img = data + (size_t)n * (size_t)h * (size_t)w * (size_t)c;
        int32_t ch;
        for (ch = 0; ch < c; ++ch) {
            const int32_t q = quant->count == 1 ? 0 : ch;
            int32_t i;
            for (i = 0; i < h * w; ++i) {
                plane[i] = img[(size_t)i * (size_t)c + (size_t)ch];
            }
            int32_t oy;
            for (oy = 0; oy < h; ++oy) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                int32_t ky_lo;
                int32_t ky_hi;
                mcuqp_tap_range(y0, p->dilation_h, f->h, h, &ky_lo, &ky_hi);
                int32_t ox;
                for (ox = 0; ox < w; ++ox) {
                    const int32_t x0 = ox * p->stride_w - p->pad_w;
                    int32_t kx_lo;
                    int32_t kx_hi;
                    mcuqp_tap_range(x0, p->dilation_w, f->w, w, &kx_lo, &kx_hi);
                    uint32_t acc = bias != NULL ? (uint32_t)bias[ch] : 0u;
                    int32_t ky;
                    for (ky = ky_lo; ky < ky_hi; ++ky) {
                        const int8_t *row = plane + (size_t)(y0 + ky * p->dilation_h) * (size_t)w;
                        int32_t kx;
                        for (kx = kx_lo; kx < kx_hi; ++kx) {
                            const int32_t x = row[x0 + kx * p->dilation_w] + p->input_offset;
                            acc += (uint32_t)(x * filter[(size_t)(ky * f->w + kx) * (size_t)c + (size_t)ch]);
                        }
                    }
                    const int32_t r = mcuqp_requantize((int32_t)acc, quant->multiplier[q], quant->shift[q]);
                    img[((size_t)oy * (size_t)w + (size_t)ox) * (size_t)c + (size_t)ch] =
                        (int8_t)(mcuqp_clamp_i32(r, lo, hi) + p->output_offset);
                }
            }
        }
    }
}

/* What a pass shares. */
typedef struct {
    int8_t tile[3][DWD_G][DWD_COLS]; /* per channel, the tile's three input rows, zero point outside */
    int8_t taps[DWD_G][9];
    int32_t base[DWD_G]; /* bias + input_offset * sum(taps) */
    mcuqp_rq rq[DWD_G];
    int32_t g;      /* channels in the pass */
    int32_t out_offset;
    int32_t lo;
    int32_t hi;
    int full;
} dwd_pass;

/* tile[r][k][u] for u < cols: column x0 - 1 + u of the row at src (pixel stride px, channel k),
 * or the zero point outside [0, w) or when src is NULL. */
static void dwd_fill(dwd_pass *ps, int32_t r, const int8_t *src, size_t px, int32_t x0, int32_t cols, int32_t w,
                     int8_t z)
{
    int32_t u;
    for (u = 0; u < cols; ++u) {
        const int32_t x = x0 - 1 + u;
        const int inside = src != NULL && x >= 0 && x < w;
        const int8_t *s = inside ? src + (size_t)x * px : NULL;
        int32_t k;
        for (k = 0; k < ps->g; ++k) {
            ps->tile[r][k][u] = inside ? s[k] : z;
        }
    }
}

/* Outputs [0, tile) of the pass's channels, to out (pixel stride px). */
MCUQP_NOINLINE static void dwd_tile(const dwd_pass *ps, int32_t tile, int8_t *out, size_t px)
{
    int32_t k;
    for (k = 0; k < ps->g; ++k) {
        const int8_t *t = ps->taps[k];
        const int32_t w0 = t[0], w1 = t[1], w2 = t[2], w3 = t[3], w4 = t[4], w5 = t[5], w6 = t[6], w7 = t[7],
                      w8 = t[8];
        const int8_t *r0 = ps->tile[0][k];
        const int8_t *r1 = ps->tile[1][k];
        const int8_t *r2 = ps->tile[2][k];
        const mcuqp_rq *rq = &ps->rq[k];
        int8_t *o = out + k;
        int32_t x;
        for (x = 0; x < tile; ++x, o += px) {
            /* nine products of int8s: no int32 overflow; the bias is added modulo 2^32 */
            const int32_t s = w0 * r0[x] + w1 * r0[x + 1] + w2 * r0[x + 2] + w3 * r1[x] + w4 * r1[x + 1] +
                              w5 * r1[x + 2] + w6 * r2[x] + w7 * r2[x + 1] + w8 * r2[x + 2];
            const int32_t acc = (int32_t)((uint32_t)ps->base[k] + (uint32_t)s);
            *o = mcuqp_rq_output(acc, rq, ps->full, ps->lo, ps->hi, ps->out_offset);
        }
    }
}

mcuqp_status mcuqp_depthwise_conv2d_s8_inplace(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                               const mcuqp_dims *input_dims, int8_t *data,
                                               const mcuqp_dims *filter_dims, const int8_t *filter,
                                               const int32_t *bias, const mcuqp_dims *output_dims,
                                               int8_t *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || data == NULL || filter_dims == NULL ||
        filter == NULL || output_dims == NULL || buffer == NULL ||
        !dwd_valid_args(params, quant, input_dims, filter_dims, output_dims)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t h = input_dims->h;
    const int32_t w = input_dims->w;
    const int32_t c = input_dims->c;
    const int32_t g_max = mcuqp_min_i32(DWD_G, h / 2);
    const int rows_3x3 = filter_dims->h == 3 && filter_dims->w == 3 && params->stride_h == 1 &&
                         params->stride_w == 1 && params->dilation_h == 1 && params->dilation_w == 1 &&
                         params->pad_h == 1 && params->pad_w == 1;
    if (!rows_3x3 || g_max < 1 || !mcuqp_requant_nomin(quant)) {
        dwd_plain(params, quant, input_dims, data, filter_dims, filter, bias, buffer);
        return MCUQP_OK;
    }
    dwd_pass ps;
    const int8_t z = (int8_t)(-params->input_offset);
    const size_t px = (size_t)c;
    ps.out_offset = params->output_offset;
    ps.lo = params->act_min - params->output_offset;
    ps.hi = params->act_max - params->output_offset;
    ps.full = params->act_min == -128 && params->act_max == 127;
    int32_t c0;
    for (c0 = 0; c0 < c; c0 += g_max) {
        const int32_t g = mcuqp_min_i32(g_max, c - c0);
        int32_t k;
        ps.g = g;
        for (k = 0; k < g; ++k) {
            const int32_t ch = c0 + k;
            const int32_t q = quant->count == 1 ? 0 : ch;
            uint32_t sum = 0u;
            int32_t t;
            for (t = 0; t < 9; ++t) {
                ps.taps[k][t] = filter[(size_t)t * (size_t)c + (size_t)ch];
                const int32_t v = ps.taps[k][t]; /* named: gcc's -Wsign-conversion sees through a cast chain */
                sum += (uint32_t)v;
            }
            ps.base[k] = (int32_t)((bias != NULL ? (uint32_t)bias[ch] : 0u) + (uint32_t)params->input_offset * sum);
            ps.rq[k] = mcuqp_rq_prepare(quant->multiplier[q], quant->shift[q]);
        }
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            int8_t *img = data + (size_t)n * (size_t)h * (size_t)w * px + (size_t)c0;
            int8_t *above = buffer;                          /* input row y - 1, g bytes per pixel */
            int8_t *current = buffer + (size_t)w * (size_t)g; /* input row y */
            int32_t y;
            for (y = 0; y < h; ++y) {
                int8_t *row = img + (size_t)y * (size_t)w * px;
                int32_t x;
                for (x = 0; x < w; ++x) {
                    for (k = 0; k < g; ++k) {
                        current[(size_t)x * (size_t)g + (size_t)k] = row[(size_t)x * px + (size_t)k];
                    }
                }
                int32_t x0;
                for (x0 = 0; x0 < w; x0 += DWD_TILE) {
                    const int32_t tile = mcuqp_min_i32(DWD_TILE, w - x0);
                    dwd_fill(&ps, 0, y > 0 ? above : NULL, (size_t)g, x0, tile + 2, w, z);
                    dwd_fill(&ps, 1, current, (size_t)g, x0, tile + 2, w, z);
                    dwd_fill(&ps, 2, y + 1 < h ? row + (size_t)w * px : NULL, px, x0, tile + 2, w, z);
                    dwd_tile(&ps, tile, row + (size_t)x0 * px, px);
                }
                int8_t *t = above;
                above = current;
                current = t;
            }
        }
    }
    return MCUQP_OK;
}
