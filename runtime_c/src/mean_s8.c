/*
 * Mean of an int8 NHWC tensor over h and w (TFLite Micro's int8 MEAN, axes 1 and 2).
 *
 * input_dims  (n, h, w, c) with h * w == params->count; output n * c int8 values
 * params  input_offset = -input zero point, output_offset = output zero point;
 *         (multiplier, shift) is QuantizeMultiplier(in_scale / out_scale) with TFLM's 1/count
 *         folded in: shifted left by k = min(floor(log2(count)), 32, 31 + shift), divided
 *         by count, shift - k. multiplier >= 0, shift in [-31, 30].
 *
 * Per channel:
 *   y = MultiplyByQuantizedMultiplier(sum(x) + count * input_offset, multiplier, shift)
 *       + output_offset, clamped to [-128, 127]
 * TFLite Micro takes this path even when input and output quantization are equal.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

mcuqp_status mcuqp_mean_s8(const mcuqp_mean_params *params, const mcuqp_dims *input_dims,
                           const int8_t *input, int8_t *output)
{
    if (params == NULL || input_dims == NULL || input == NULL || output == NULL) {
        return MCUQP_ERR_ARG;
    }
    const mcuqp_dims *d = input_dims;
    if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 0 || (int64_t)d->h * d->w != params->count ||
        params->count > (1 << 23) || params->multiplier < 0 || params->shift < -31 || params->shift > 30) {
        return MCUQP_ERR_ARG;
    }
    const int32_t offset = params->count * params->input_offset; /* |.| < 2^31 for count <= 2^23 */
    int32_t n, i, c;
    for (n = 0; n < d->n; ++n) {
        const int8_t *x = input + n * params->count * d->c;
        for (c = 0; c < d->c; ++c) {
            int32_t sum = 0;
            for (i = 0; i < params->count; ++i) {
                sum += x[i * d->c + c];
            }
            const int32_t r = mcuqp_requantize(sum + offset, params->multiplier, params->shift);
            output[n * d->c + c] = (int8_t)mcuqp_clamp_i32(r + params->output_offset, -128, 127);
        }
    }
    return MCUQP_OK;
}
