/*
 * Average pooling, int8 NHWC -> int8 NHWC (TFLite int8 reference semantics).
 *
 * input   (n, h, w, c) int8          output (n, out_h, out_w, c) int8
 * params  filter_h/w >= 1, stride_h/w >= 1, pad_h/pad_w = top/left padding >= 0,
 *         act_min <= act_max within [-128, 127]
 *
 * Each output averages the in-bounds part of its window only (padding is excluded from
 * the count), rounding half away from zero as TFLite does:
 *   sum > 0 ? (sum + count/2) / count : (sum - count/2) / count   (C division)
 * then clamps to [act_min, act_max]. A window with no in-bounds pixel is an error
 * (MCUQP_ERR_ARG), as in TFLite. The int32 sum holds any window below 2^24 pixels.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

mcuqp_status mcuqp_avg_pool2d_s8(const mcuqp_pool_params *params, const mcuqp_dims *input_dims,
                                 const int8_t *input, const mcuqp_dims *output_dims, int8_t *output)
{
    /* the window's count must stay exact in the rounding divide */
    if (!mcuqp_pool_valid_args(params, input_dims, input, output_dims, output) ||
        (int64_t)params->filter_h * params->filter_w >= ((int64_t)1 << 24)) {
        return MCUQP_ERR_ARG;
    }

    const int32_t in_h = input_dims->h;
    const int32_t in_w = input_dims->w;
    const int32_t ch = input_dims->c;
    int8_t *out = output;
    int32_t b;
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_b = input + (size_t)b * (size_t)in_h * (size_t)in_w * (size_t)ch;
        int32_t oy;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_h;
            const int32_t ky_start = mcuqp_max_i32(0, -y0);
            const int32_t ky_end = mcuqp_min_i32(params->filter_h, in_h - y0);
            int32_t ox;
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_w;
                const int32_t kx_start = mcuqp_max_i32(0, -x0);
                const int32_t kx_end = mcuqp_min_i32(params->filter_w, in_w - x0);
                if (ky_end <= ky_start || kx_end <= kx_start) {
                    return MCUQP_ERR_ARG;
                }
                const int32_t count = (ky_end - ky_start) * (kx_end - kx_start);
                int32_t c;
                for (c = 0; c < ch; ++c) {
                    int32_t sum = 0;
                    int32_t ky;
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        const int8_t *row = in_b + ((size_t)(y0 + ky) * (size_t)in_w) * (size_t)ch;
                        int32_t kx;
                        for (kx = kx_start; kx < kx_end; ++kx) {
                            sum += row[(size_t)(x0 + kx) * (size_t)ch + (size_t)c];
                        }
                    }
                    const int32_t avg = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                    *out++ = (int8_t)mcuqp_clamp_i32(avg, params->act_min, params->act_max);
                }
            }
        }
    }
    return MCUQP_OK;
}
