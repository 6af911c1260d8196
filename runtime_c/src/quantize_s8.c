/*
 * int8 -> int8 requantization (TFLite QUANTIZE between two int8 quantizations).
 *
 * params  input_offset = -input zero point, output_offset = output zero point;
 *         (multiplier, shift) = QuantizeMultiplier(in_scale / out_scale), multiplier >= 0,
 *         shift in [-31, 30].
 * Per element: y = MultiplyByQuantizedMultiplier(x + input_offset, multiplier, shift)
 *              + output_offset, clamped to [-128, 127].
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

mcuqp_status mcuqp_quantize_s8(const mcuqp_quantize_params *params, int32_t size,
                               const int8_t *input, int8_t *output)
{
    if (params == NULL || size < 0 || (size > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (params->multiplier < 0 || params->shift < -31 || params->shift > 30) {
        return MCUQP_ERR_ARG;
    }
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t r = mcuqp_requantize(input[i] + params->input_offset, params->multiplier, params->shift);
        output[i] = (int8_t)mcuqp_clamp_i32(r + params->output_offset, -128, 127);
    }
    return MCUQP_OK;
}
