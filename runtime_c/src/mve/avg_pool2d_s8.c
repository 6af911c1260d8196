/*
 * Average pooling, int8 NHWC -> int8 NHWC (TFLite int8 reference semantics), Helium (MVE)
 * variant for the Cortex-M55 (same contract and results as runtime_c/src/avg_pool2d_s8.c).
 *
 * input   (n, h, w, c) int8          output (n, out_h, out_w, c) int8
 * params  filter_h/w >= 1, stride_h/w >= 1, pad_h/pad_w = top/left padding >= 0,
 *         act_min <= act_max within [-128, 127]; filter_h * filter_w below 2^24
 *
 * Each output averages the in-bounds part of its window only, rounding half away from zero:
 *   sum > 0 ? (sum + count/2) / count : (sum - count/2) / count   (C division)
 * then clamps to [act_min, act_max]. A window with no in-bounds pixel is an error
 * (MCUQP_ERR_ARG), found before anything is written.
 *
 * Technique: the window sums of eight channels at a time in int16 lanes when a window has at
 * most 256 taps (|sum| <= 256 * 128 fits), else, and for the last channels, four at a time in
 * int32 lanes (one widening VLDRB and one VADD per tap); the rounding divisions stay scalar
 * (one per output), which for the global pools of the MLPerf models is a few per channel.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_mve.h"
#include "mcuqp_nn.h"

/* The in-bounds taps [lo, hi) of a window starting at origin over `size` inputs. */
MCUQP_INLINE void taps(int32_t origin, int32_t filter, int32_t size, int32_t *lo, int32_t *hi)
{
    *lo = mcuqp_max_i32(0, -origin);
    *hi = mcuqp_min_i32(filter, size - origin);
}

/* The rounded average of each of n sums s[j] of count taps, clamped, to out[j]. */
MCUQP_INLINE void pool_store(const int32_t *s, int32_t n, int32_t count, int32_t act_min, int32_t act_max, int8_t *out)
{
    int32_t j;
    for (j = 0; j < n; ++j) {
        const int32_t avg = s[j] > 0 ? (s[j] + count / 2) / count : (s[j] - count / 2) / count;
        out[j] = (int8_t)mcuqp_clamp_i32(avg, act_min, act_max);
    }
}

MCUQP_MVE_NOINLINE static void pool_pixel(const int8_t *first, size_t row_step, int32_t rows, int32_t cols,
                                          int32_t ch, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int32_t count = rows * cols;
    int32_t c = 0;
    if (count <= 256) {
        /* eight channels per vector in int16 lanes: |sum| <= 256 * 128 */
        for (; c + 8 <= ch; c += 8) {
            int16x8_t sum = vdupq_n_s16(0);
            const int8_t *row = first + c;
            int32_t y;
            for (y = 0; y < rows; ++y, row += row_step) {
                const int8_t *x = row;
                int32_t k;
                for (k = 0; k < cols; ++k, x += ch) {
                    sum = vaddq_s16(sum, vldrbq_s16(x));
                }
            }
            int16_t h[8];
            int32_t s[8];
            int32_t j;
            vst1q_s16(h, sum);
            for (j = 0; j < 8; ++j) {
                s[j] = h[j];
            }
            pool_store(s, 8, count, act_min, act_max, out + c);
        }
    }
    for (; c < ch; c += 4) {
        const int32_t n = mcuqp_min_i32(4, ch - c);
        const mve_pred16_t p = vctp32q((uint32_t)n);
        int32x4_t sum = vdupq_n_s32(0);
        const int8_t *row = first + c;
        int32_t y;
        for (y = 0; y < rows; ++y, row += row_step) {
            const int8_t *x = row;
            int32_t k;
            for (k = 0; k < cols; ++k, x += ch) {
                sum = vaddq_s32(sum, vldrbq_z_s32(x, p));
            }
        }
        int32_t s[4];
        vst1q_s32(s, sum);
        pool_store(s, n, count, act_min, act_max, out + c);
    }
}

mcuqp_status mcuqp_avg_pool2d_s8(const mcuqp_pool_params *params, const mcuqp_dims *input_dims,
                                 const int8_t *input, const mcuqp_dims *output_dims, int8_t *output)
{
    if (!mcuqp_pool_valid_args(params, input_dims, input, output_dims, output) ||
        (int64_t)params->filter_h * params->filter_w >= ((int64_t)1 << 24)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t ch = input_dims->c;
    int32_t oy;
    int32_t ox;
    for (oy = 0; oy < output_dims->h; ++oy) { /* every window must see the input */
        int32_t lo;
        int32_t hi;
        taps(oy * params->stride_h - params->pad_h, params->filter_h, in_h, &lo, &hi);
        if (hi <= lo) {
            return MCUQP_ERR_ARG;
        }
    }
    for (ox = 0; ox < output_dims->w; ++ox) {
        int32_t lo;
        int32_t hi;
        taps(ox * params->stride_w - params->pad_w, params->filter_w, in_w, &lo, &hi);
        if (hi <= lo) {
            return MCUQP_ERR_ARG;
        }
    }
    const size_t row_step = (size_t)in_w * (size_t)ch;
    int8_t *out = output;
    int32_t b;
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_b = input + (size_t)b * (size_t)in_h * row_step;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_h;
            int32_t ky_lo;
            int32_t ky_hi;
            taps(y0, params->filter_h, in_h, &ky_lo, &ky_hi);
            for (ox = 0; ox < output_dims->w; ++ox, out += ch) {
                const int32_t x0 = ox * params->stride_w - params->pad_w;
                int32_t kx_lo;
                int32_t kx_hi;
                taps(x0, params->filter_w, in_w, &kx_lo, &kx_hi);
                const int8_t *first = in_b + (size_t)(y0 + ky_lo) * row_step + (size_t)(x0 + kx_lo) * (size_t)ch;
                pool_pixel(first, row_step, ky_hi - ky_lo, kx_hi - kx_lo, ch, params->act_min, params->act_max, out);
            }
        }
    }
    return MCUQP_OK;
}
