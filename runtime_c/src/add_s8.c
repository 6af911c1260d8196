/*
 * Elementwise add of two int8 tensors of the same shape (TFLite int8 ADD).
 *
 * input1, input2, output  `size` int8 values each (no broadcasting), size >= 0
 * params  left_shift in [0, 31] (TFLite uses 20); input/output multipliers Q31 in
 *         [0, 2^31) with shifts in [-31, 0] (all real multipliers are below one);
 *         offsets: input_offset = -input zero point, output_offset = output zero point;
 *         act_min <= act_max within [-128, 127]
 *
 * Per element:
 *   a_i = (input_i + input_offset_i) * 2^left_shift
 *   s_i = MultiplyByQuantizedMultiplierSmallerThanOneExp(a_i, input_multiplier_i, input_shift_i)
 *   y   = MultiplyByQuantizedMultiplierSmallerThanOneExp(s_1 + s_2, output_multiplier,
 *         output_shift) + output_offset, clamped to [act_min, act_max]
 * With MCUQP_SINGLE_ROUNDING=1 each multiply is TFLite's single-rounding
 * MultiplyByQuantizedMultiplier, as in a TFLITE_SINGLE_ROUNDING build. Integer
 * additions and the left shift wrap in two's complement (they cannot overflow for
 * parameters derived from real scales).
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

static inline int32_t add_wrap(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static inline int32_t scale_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift)
{
#if MCUQP_SINGLE_ROUNDING
    return mcuqp_requantize(x, multiplier, shift);
#else
    return mcuqp_mul_by_qm_smaller_than_one(x, multiplier, shift);
#endif
}

static inline int valid_multiplier(int32_t multiplier, int32_t shift)
{
    return multiplier >= 0 && shift <= 0 && shift >= -31;
}

mcuqp_status mcuqp_add_s8(const mcuqp_add_params *params, int32_t size, const int8_t *input1,
                          const int8_t *input2, int8_t *output)
{
    if (params == NULL || size < 0 || (size > 0 && (input1 == NULL || input2 == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (params->left_shift < 0 || params->left_shift > 31 ||
        !valid_multiplier(params->input1_multiplier, params->input1_shift) ||
        !valid_multiplier(params->input2_multiplier, params->input2_shift) ||
        !valid_multiplier(params->output_multiplier, params->output_shift) ||
        params->act_min > params->act_max || params->act_min < -128 || params->act_max > 127) {
        return MCUQP_ERR_ARG;
    }

    /* The parameters in locals: the int8 stores may alias *params, so reading them through
     * the pointer would reload all of them for every element. */
    const int32_t left_shift = params->left_shift;
    const int32_t off1 = params->input1_offset;
    const int32_t off2 = params->input2_offset;
    const int32_t m1 = params->input1_multiplier;
    const int32_t sh1 = params->input1_shift;
    const int32_t m2 = params->input2_multiplier;
    const int32_t sh2 = params->input2_shift;
    const int32_t mo = params->output_multiplier;
    const int32_t sho = params->output_shift;
    const int32_t out_off = params->output_offset;
    const int32_t lo = params->act_min;
    const int32_t hi = params->act_max;
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t a1 = mcuqp_shl_wrap(add_wrap(off1, input1[i]), left_shift);
        const int32_t a2 = mcuqp_shl_wrap(add_wrap(off2, input2[i]), left_shift);
        const int32_t s1 = scale_smaller_than_one(a1, m1, sh1);
        const int32_t s2 = scale_smaller_than_one(a2, m2, sh2);
        const int32_t raw = scale_smaller_than_one(add_wrap(s1, s2), mo, sho);
        output[i] = (int8_t)mcuqp_clamp_i32(add_wrap(raw, out_off), lo, hi);
    }
    return MCUQP_OK;
}
