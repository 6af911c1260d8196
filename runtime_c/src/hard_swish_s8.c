/*
 * int8 hard swish, y = x * relu6(x + 3) / 6, exactly as TFLite Micro's reference kernel
 * (int16 fixed point throughout).
 *
 * params  input_zero_point, output_zero_point in [-128, 127];
 *         reluish_multiplier, output_multiplier: Q0.15 int16 multipliers (TFLM
 *         DownScaleInt32ToInt16Multiplier of QuantizeMultiplier of in_scale / 128 / (3 / 32768)
 *         and of in_scale / 128 / out_scale); reluish_exponent in [-15, 15],
 *         output_exponent in [-15, 0].
 * input, output: `size` int8 values, any layout (elementwise; output may equal input).
 *
 * Per element, h = (x - input_zero_point) * 128:
 *   p = SRDHM16(h, output_multiplier);
 *   r = SRDHM16(h << (reluish_exponent - 1) saturated, reluish_multiplier) << 1 saturated when
 *       reluish_exponent > 0, else RoundingDivideByPOT(SRDHM16(h, reluish_multiplier), -exponent);
 *   r = (r + 2^15) >> 1                       (the factor relu6(x + 3) / 6 in Q0.15, >= 0)
 *   y = RoundingDivideByPOT((r * p) / 2^15, -output_exponent) + output_zero_point, saturated.
 * SRDHM16 is gemmlowp's int16 SaturatingRoundingDoublingHighMul; "/" truncates toward zero.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

static int32_t srdhm16(int32_t a, int32_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    const int32_t ab = a * b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (ab + nudge) / (1 << 15);
}

static int32_t sat_left_shift16(int32_t v, int32_t amount)
{
    return mcuqp_clamp_i32(v * (1 << amount), INT16_MIN, INT16_MAX);
}

static int32_t rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (1 << exponent) - 1;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + ((x & mask) > threshold ? 1 : 0);
}

mcuqp_status mcuqp_hard_swish_s8(const mcuqp_hard_swish_params *params, int32_t size,
                                 const int8_t *input, int8_t *output)
{
    if (params == NULL || size < 0 || (size > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    const int32_t er = params->reluish_exponent;
    const int32_t eo = params->output_exponent;
    if (er < -15 || er > 15 || eo < -15 || eo > 0 || params->reluish_multiplier < INT16_MIN ||
        params->reluish_multiplier > INT16_MAX || params->output_multiplier < INT16_MIN ||
        params->output_multiplier > INT16_MAX || params->input_zero_point < -128 || params->input_zero_point > 127) {
        return MCUQP_ERR_ARG;
    }
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t hires = ((int32_t)input[i] - params->input_zero_point) * 128;
        const int32_t preshift = srdhm16(hires, params->output_multiplier);
        int32_t rel = hires;
        if (er > 0) {
            rel = sat_left_shift16(rel, er - 1);
        }
        rel = srdhm16(rel, params->reluish_multiplier);
        if (er > 0) {
            rel = sat_left_shift16(rel, 1);
        } else if (er < 0) {
            rel = rdbpot(rel, -er);
        }
        rel = (rel + (1 << 15)) >> 1;
        const int32_t pre = (rel * preshift) / (1 << 15);
        const int32_t y = rdbpot(pre, -eo) + params->output_zero_point;
        output[i] = (int8_t)mcuqp_clamp_i32(y, -128, 127);
    }
    return MCUQP_OK;
}
