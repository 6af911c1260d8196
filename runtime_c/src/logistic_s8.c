/*
 * int8 logistic (sigmoid) exactly as TFLite Micro's reference kernel.
 *
 * params  input_zero_point; (input_multiplier, input_left_shift) from frexp of
 *         in_scale * 2^27 (input_multiplier = round(q * 2^31), not normalised by
 *         QuantizeMultiplier); input_range_radius = CalculateInputRadius(4, left_shift).
 * Output scale 1/256, zero point -128.
 *
 * Per element, with d = x - input_zero_point:
 *   d <= -radius -> -128;  d >= radius -> 127;  otherwise
 *   a = MultiplyByQuantizedMultiplier(d, input_multiplier, input_left_shift), read as a
 *       gemmlowp FixedPoint<int32, 4>;
 *   s = gemmlowp logistic(a) in FixedPoint<int32, 0>: 1 / (1 + exp(-|a|)) for a > 0, one
 *       minus that for a < 0, exactly 1/2 for a == 0;
 *   y = RoundingDivideByPOT(s, 23) - 128, clamped to [-128, 127].
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

#define LOGISTIC_INPUT_INTEGER_BITS 4

static int32_t gemmlowp_logistic_q4(int32_t a)
{
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    const int32_t magnitude = a > 0 ? a : -a;
    const int32_t on_positive = mcuqp_one_over_one_plus_x_for_x_in_0_1(
        mcuqp_exp_on_negative_values(-magnitude, LOGISTIC_INPUT_INTEGER_BITS));
    return a > 0 ? on_positive : INT32_MAX - on_positive;
}

mcuqp_status mcuqp_logistic_s8(const mcuqp_logistic_params *params, int32_t size,
                               const int8_t *input, int8_t *output)
{
    if (params == NULL || size < 0 || (size > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (params->input_range_radius < 0 || params->input_left_shift < -31 || params->input_left_shift > 30) {
        return MCUQP_ERR_ARG;
    }
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t d = (int32_t)input[i] - params->input_zero_point;
        if (d <= -params->input_range_radius) {
            output[i] = -128;
        } else if (d >= params->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t a = mcuqp_requantize(d, params->input_multiplier, params->input_left_shift);
            const int32_t s = gemmlowp_logistic_q4(a);
            output[i] = (int8_t)mcuqp_clamp_i32(mcuqp_rdbpot(s, 31 - 8) - 128, -128, 127);
        }
    }
    return MCUQP_OK;
}
