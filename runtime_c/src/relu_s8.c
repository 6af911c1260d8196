/*
 * int8 RELU / RELU6 / RELU_N1_TO_1 as standalone ops (TFLite's int8 activation kernels).
 *
 * params  input_zero_point, output_zero_point in [-128, 127];
 *         (multiplier, shift) = QuantizeMultiplier(in_scale / out_scale), multiplier in
 *         [0, 2^31), shift in [-31, 30]; (2^30, 1) is exactly 1.0 (RELU6 in TFLite Micro);
 *         act_min <= act_max, both in [-128, 127].
 * input, output: `size` int8 values, any layout (elementwise; output may equal input).
 *
 * Per element: y = output_zero_point + MultiplyByQuantizedMultiplier(x - input_zero_point,
 * multiplier, shift), clamped to [act_min, act_max].
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

mcuqp_status mcuqp_relu_s8(const mcuqp_relu_params *params, int32_t size, const int8_t *input, int8_t *output)
{
    if (params == NULL || size < 0 || (size > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (params->multiplier < 0 || params->shift < -31 || params->shift > 30 || params->act_min < -128 ||
        params->act_max > 127 || params->act_min > params->act_max) {
        return MCUQP_ERR_ARG;
    }
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t scaled = mcuqp_requantize((int32_t)input[i] - params->input_zero_point, params->multiplier,
                                                params->shift);
        output[i] = (int8_t)mcuqp_clamp_i32(params->output_zero_point + scaled, params->act_min, params->act_max);
    }
    return MCUQP_OK;
}
