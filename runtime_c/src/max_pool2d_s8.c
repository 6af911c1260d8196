/*
 * Max pooling, int8 NHWC -> int8 NHWC (TFLite int8 reference semantics).
 *
 * input   (n, h, w, c) int8          output (n, out_h, out_w, c) int8
 * params  filter_h/w >= 1, stride_h/w >= 1, pad_h/pad_w = top/left padding >= 0,
 *         act_min <= act_max within [-128, 127]
 *
 * Each output is the maximum over the part of its window that lies inside the input
 * (padding never wins), clamped to [act_min, act_max]; a window entirely in the
 * padding yields act_min-clamped -128, as in TFLite. Input and output share scale and
 * zero point, so no requantization.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

mcuqp_status mcuqp_max_pool2d_s8(const mcuqp_pool_params *params, const mcuqp_dims *input_dims,
                                 const int8_t *input, const mcuqp_dims *output_dims, int8_t *output)
{
    if (!mcuqp_pool_valid_args(params, input_dims, input, output_dims, output)) {
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
                int32_t c;
                for (c = 0; c < ch; ++c) {
                    int32_t max = -128;
                    int32_t ky;
                    for (ky = ky_start; ky < ky_end; ++ky) {
                        const int8_t *row = in_b + ((size_t)(y0 + ky) * (size_t)in_w) * (size_t)ch;
                        int32_t kx;
                        for (kx = kx_start; kx < kx_end; ++kx) {
                            max = mcuqp_max_i32(max, row[(size_t)(x0 + kx) * (size_t)ch + (size_t)c]);
                        }
                    }
                    *out++ = (int8_t)mcuqp_clamp_i32(max, params->act_min, params->act_max);
                }
            }
        }
    }
    return MCUQP_OK;
}
