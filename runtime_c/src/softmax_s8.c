/*
 * Softmax over the last axis, int8 -> int8 (TFLite Micro's int8 reference softmax).
 *
 * input   rows x row_size int8, row-major; 1 <= row_size <= 4095, rows >= 0
 * output  rows x row_size int8 with scale 1/256 and zero point -128
 * params  input_multiplier (Q31, > 0) and input_left_shift (in [0, 31]; [0, 30] with
 *         MCUQP_SINGLE_ROUNDING) encode beta * input_scale * 2^26; diff_min <= 0 is the
 *         most negative (x - row max) that still contributes, with
 *         -diff_min <= floor(31 * 2^26 / 2^input_left_shift)  (TFLite's input radius).
 *
 * Per row: d = x - max(row); elements with d < diff_min output -128. The others get
 * d' = MultiplyByQuantizedMultiplierGreaterThanOne(d) as a Q5.26 fixed-point value,
 * e = exp(d') in Q0.31 (gemmlowp exp_on_negative_values), S = sum of e rescaled to
 * Q12.19, and
 *   y = RoundingDivideByPOT(e * (1/S normalised), num_bits_over_unit + 23) - 128
 * clamped to int8. row_size <= 4095 keeps S inside Q12.19 (every e <= 1). When
 * S >= 512 the final shift exceeds 31: TFLite Micro asserts there, this kernel
 * divides exactly (the quotient is 0, so y = -128).
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

#define SOFTMAX_MAX_ROW 4095

static inline int32_t rescale_diff(int32_t diff, int32_t multiplier, int32_t left_shift)
{
#if MCUQP_SINGLE_ROUNDING
    return mcuqp_requantize(diff, multiplier, left_shift);
#else
    return mcuqp_mul_by_qm_greater_than_one(diff, multiplier, left_shift);
#endif
}

mcuqp_status mcuqp_softmax_s8(const mcuqp_softmax_params *params, int32_t rows, int32_t row_size,
                              const int8_t *input, int8_t *output)
{
    const int32_t max_shift = MCUQP_SINGLE_ROUNDING ? 30 : 31;
    if (params == NULL || rows < 0 || row_size < 1 || row_size > SOFTMAX_MAX_ROW ||
        (rows > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (params->input_multiplier <= 0 || params->input_left_shift < 0 || params->input_left_shift > max_shift ||
        params->diff_min > 0 ||
        params->diff_min < -(int32_t)((31u << 26) >> params->input_left_shift)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t multiplier = params->input_multiplier;
    const int32_t left_shift = params->input_left_shift;
    const int32_t diff_min = params->diff_min;

    int32_t r;
    for (r = 0; r < rows; ++r) {
        const int8_t *in = input + (size_t)r * (size_t)row_size;
        int8_t *out = output + (size_t)r * (size_t)row_size;
        int32_t max = -128;
        int32_t c;
        for (c = 0; c < row_size; ++c) {
            max = mcuqp_max_i32(max, in[c]);
        }

        int32_t sum = 0; /* Q12.19 */
        for (c = 0; c < row_size; ++c) {
            const int32_t diff = in[c] - max;
            if (diff >= diff_min) {
                const int32_t e = mcuqp_exp_on_negative_values(rescale_diff(diff, multiplier, left_shift),
                                                               MCUQP_SOFTMAX_SCALED_DIFF_INTEGER_BITS);
                sum += mcuqp_fp_rescale(e, 0, MCUQP_SOFTMAX_ACCUMULATION_INTEGER_BITS);
            }
        }

        int32_t num_bits_over_unit;
        const int32_t shifted_scale =
            mcuqp_get_reciprocal(sum, MCUQP_SOFTMAX_ACCUMULATION_INTEGER_BITS, &num_bits_over_unit);
        const int32_t out_shift = num_bits_over_unit + 31 - 8;

        for (c = 0; c < row_size; ++c) {
            const int32_t diff = in[c] - max;
            if (diff >= diff_min) {
                const int32_t e = mcuqp_exp_on_negative_values(rescale_diff(diff, multiplier, left_shift),
                                                               MCUQP_SOFTMAX_SCALED_DIFF_INTEGER_BITS);
                const int32_t unsat = mcuqp_rdbpot64(mcuqp_srdhm(shifted_scale, e), out_shift);
                out[c] = (int8_t)mcuqp_clamp_i32(unsat - 128, -128, 127);
            } else {
                out[c] = -128;
            }
        }
    }
    return MCUQP_OK;
}
