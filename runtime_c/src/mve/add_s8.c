/*
 * Elementwise add of two int8 tensors of the same shape (TFLite int8 ADD), Helium (MVE)
 * variant for the Cortex-M55 (same contract and results as runtime_c/src/add_s8.c).
 *
 * input1, input2, output  `size` int8 values each (no broadcasting), size >= 0; output may
 *         be input1 or input2 (each element is read before it is written)
 * params  left_shift in [0, 31]; input/output multipliers Q31 in [0, 2^31) with shifts in
 *         [-31, 0]; offsets: input_offset = -input zero point, output_offset = output zero
 *         point; act_min <= act_max within [-128, 127]
 *
 * Per element:
 *   a_i = (input_i + input_offset_i) * 2^left_shift
 *   s_i = MultiplyByQuantizedMultiplierSmallerThanOneExp(a_i, input_multiplier_i, input_shift_i)
 *   y   = MultiplyByQuantizedMultiplierSmallerThanOneExp(s_1 + s_2, output_multiplier,
 *         output_shift) + output_offset, clamped to [act_min, act_max]
 * (single-rounding MultiplyByQuantizedMultiplier with MCUQP_SINGLE_ROUNDING=1). Additions
 * and the left shift wrap in two's complement.
 *
 * Technique: four elements per int32 vector (VLDRB.S32 widens, VSTRB.32 narrows; one predicated
 * step for the tail); the offset and left shift are one VMLAS (x * 2^left_shift + offset *
 * 2^left_shift, modulo 2^32 like the shift); each
 * multiply is the exact vector form of mcuqp_mve.h (multipliers are never INT32_MIN here,
 * so VQRDMULH / VQDMULH never saturate; a single-rounding shift of 0 is one VQRDMULH).
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_mve.h"
#include "mcuqp_nn.h"

static inline int valid_multiplier(int32_t multiplier, int32_t shift)
{
    return multiplier >= 0 && shift <= 0 && shift >= -31;
}

/* MultiplyByQuantizedMultiplierSmallerThanOneExp (or the single-rounding multiply) of four
 * lanes; r = shift <= 0 in every lane. */
MCUQP_INLINE int32x4_t scale(int32x4_t x, int32_t multiplier, int32x4_t r, int zero_shift)
{
#if MCUQP_SINGLE_ROUNDING
    if (zero_shift) {
        return vqrdmulhq_n_s32(x, multiplier);
    }
    return vrshlq_s32(vqdmulhq_n_s32(x, multiplier), r);
#else
    (void)zero_shift;
    const int32x4_t y = vqrdmulhq_n_s32(x, multiplier);
    return vrshlq_s32(vqaddq_s32(y, vshrq_n_s32(vandq_s32(y, r), 31)), r);
#endif
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
    /* (x + offset) << left_shift == x * 2^left_shift + offset * 2^left_shift modulo 2^32: one
     * VMLAS per input (2^31 is INT32_MIN as a multiplier, still exact modulo 2^32) */
    const uint32_t scale_ls = 1u << params->left_shift;
    const int32x4_t mul_ls = vdupq_n_s32((int32_t)scale_ls);
    const int32_t add1 = (int32_t)((uint32_t)params->input1_offset * scale_ls);
    const int32_t add2 = (int32_t)((uint32_t)params->input2_offset * scale_ls);
    const int32x4_t r1 = vdupq_n_s32(params->input1_shift);
    const int32x4_t r2 = vdupq_n_s32(params->input2_shift);
    const int32x4_t ro = vdupq_n_s32(params->output_shift);
    const int32x4_t lo = vdupq_n_s32(params->act_min);
    const int32x4_t hi = vdupq_n_s32(params->act_max);
    const int32_t m1 = params->input1_multiplier;
    const int32_t m2 = params->input2_multiplier;
    const int32_t mo = params->output_multiplier;
    const int32_t out_off = params->output_offset;
    const int z1 = params->input1_shift == 0;
    const int z2 = params->input2_shift == 0;
    const int zo = params->output_shift == 0;
    int32_t i;
    for (i = 0; i + 4 <= size; i += 4) {
        const int32x4_t a1 = vmlasq_n_s32(vldrbq_s32(input1 + i), mul_ls, add1);
        const int32x4_t a2 = vmlasq_n_s32(vldrbq_s32(input2 + i), mul_ls, add2);
        const int32x4_t sum = vaddq_s32(scale(a1, m1, r1, z1), scale(a2, m2, r2, z2));
        const int32x4_t y = vaddq_n_s32(scale(sum, mo, ro, zo), out_off);
        vstrbq_s32(output + i, vminq_s32(vmaxq_s32(y, lo), hi));
    }
    if (i < size) {
        const mve_pred16_t p = vctp32q((uint32_t)(size - i));
        const int32x4_t a1 = vmlasq_n_s32(vldrbq_z_s32(input1 + i, p), mul_ls, add1);
        const int32x4_t a2 = vmlasq_n_s32(vldrbq_z_s32(input2 + i, p), mul_ls, add2);
        const int32x4_t sum = vaddq_s32(scale(a1, m1, r1, z1), scale(a2, m2, r2, z2));
        const int32x4_t y = vaddq_n_s32(scale(sum, mo, ro, zo), out_off);
        vstrbq_p_s32(output + i, vminq_s32(vmaxq_s32(y, lo), hi), p);
    }
    return MCUQP_OK;
}
