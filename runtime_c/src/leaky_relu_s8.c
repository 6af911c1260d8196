/*
 * int8 leaky ReLU exactly as TFLite Micro's reference kernel.
 *
 * params  input_zero_point, output_zero_point in [-128, 127];
 *         (identity_multiplier, identity_shift) = QuantizeMultiplier(in_scale / out_scale),
 *         (alpha_multiplier, alpha_shift) = QuantizeMultiplier(in_scale * alpha / out_scale),
 *         multipliers in [0, 2^31), shifts in [-31, 30].
 * input, output: `size` int8 values, any layout (elementwise; output may equal input).
 *
 * Per element, with d = x - input_zero_point:
 *   y = output_zero_point + MultiplyByQuantizedMultiplier(d, identity) if d >= 0,
 *   y = output_zero_point + MultiplyByQuantizedMultiplier(d, alpha)    if d <  0,
 *   clamped to [-128, 127].
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

mcuqp_status mcuqp_leaky_relu_s8(const mcuqp_leaky_relu_params *params, int32_t size,
                                 const int8_t *input, int8_t *output)
{
    if (params == NULL || size < 0 || (size > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (params->identity_multiplier < 0 || params->alpha_multiplier < 0 ||
        params->identity_shift < -31 || params->identity_shift > 30 ||
        params->alpha_shift < -31 || params->alpha_shift > 30) {
        return MCUQP_ERR_ARG;
    }
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t d = (int32_t)input[i] - params->input_zero_point;
        const int32_t scaled = d >= 0
            ? mcuqp_requantize(d, params->identity_multiplier, params->identity_shift)
            : mcuqp_requantize(d, params->alpha_multiplier, params->alpha_shift);
        output[i] = (int8_t)mcuqp_clamp_i32(params->output_zero_point + scaled, -128, 127);
    }
    return MCUQP_OK;
}
