/*
 * int8 tanh exactly as TFLite Micro's reference kernel.
 *
 * params  mcuqp_logistic_params, derived as for LOGISTIC: input_zero_point;
 *         (input_multiplier, input_left_shift) from frexp of in_scale * 2^27 (input_multiplier =
 *         round(q * 2^31)); input_range_radius = CalculateInputRadius(4, left_shift).
 * Output scale 1/128, zero point 0.
 *
 * Per element, with d = x - input_zero_point:
 *   d <= -radius -> -128;  d >= radius -> 127;  otherwise
 *   a = MultiplyByQuantizedMultiplier(d, input_multiplier, input_left_shift), read as a
 *       gemmlowp FixedPoint<int32, 4>;
 *   t = gemmlowp tanh(a) in FixedPoint<int32, 0>: (1 - e) / (1 + e) with e = exp(-2|a|) (the
 *       raw of -|a| read as FixedPoint<int32, 5>), negated for a < 0, exactly 0 for a == 0;
 *   y = RoundingDivideByPOT(t, 24), clamped to [-128, 127].
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

#define TANH_INPUT_INTEGER_BITS 4

/* (1 - a) / (1 + a) for a FixedPoint<int32, 0> a in [0, 1): the Newton-Raphson reciprocal of
 * gemmlowp's one_over_one_plus_x_for_x_in_0_1, then x - 1 rescaled from Q2 to Q0. */
static int32_t one_minus_x_over_one_plus_x(int32_t a)
{
    const int32_t half_denominator = mcuqp_rounding_half_sum(a, INT32_MAX);
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x = 1515870810 + mcuqp_srdhm(half_denominator, -1010580540); /* 48/17 - 32/17 d */
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus_half_denominator_times_x = one_q2 - mcuqp_srdhm(half_denominator, x);
        x = x + mcuqp_fp_rescale(mcuqp_srdhm(x, one_minus_half_denominator_times_x), 4, 2);
    }
    return mcuqp_fp_rescale(x - one_q2, 2, 0);
}

static int32_t gemmlowp_tanh_q4(int32_t a)
{
    if (a == 0) {
        return 0;
    }
    const int32_t negative_magnitude = a < 0 ? a : -a;
    const int32_t t = one_minus_x_over_one_plus_x(
        mcuqp_exp_on_negative_values(negative_magnitude, TANH_INPUT_INTEGER_BITS + 1));
    return a < 0 ? -t : t;
}

mcuqp_status mcuqp_tanh_s8(const mcuqp_logistic_params *params, int32_t size, const int8_t *input,
                           int8_t *output)
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
            output[i] = (int8_t)mcuqp_clamp_i32(mcuqp_rdbpot(gemmlowp_tanh_q4(a), 31 - 7), -128, 127);
        }
    }
    return MCUQP_OK;
}
