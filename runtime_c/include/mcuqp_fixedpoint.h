/*
 * mcuqp fixed-point helpers: the C twin of mcuqp/quant/fixedpoint.py.
 *
 * Definitions follow TFLite / gemmlowp exactly so that kernels are bit-exact with the
 * numpy reference and with TFLite Micro's reference kernels.
 *
 * Rounding: by default requantization uses TFLite's double rounding (saturating rounding
 * doubling high multiply, then rounding divide by a power of two). Define
 * MCUQP_SINGLE_ROUNDING=1 at build time for TFLITE_SINGLE_ROUNDING semantics.
 *
 * Multipliers are Q31 values in [2^30, 2^31) (or 0); shift > 0 is a left shift,
 * shift < 0 a right shift, as produced by QuantizeMultiplier.
 */
#ifndef MCUQP_FIXEDPOINT_H
#define MCUQP_FIXEDPOINT_H

#include <stdint.h>

#ifndef MCUQP_SINGLE_ROUNDING
#define MCUQP_SINGLE_ROUNDING 0
#endif

#define MCUQP_INLINE static inline __attribute__((always_inline))

MCUQP_INLINE int32_t mcuqp_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
MCUQP_INLINE int32_t mcuqp_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
MCUQP_INLINE int32_t mcuqp_clamp_i32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* x * 2^n with two's-complement wrap-around (defined behaviour, unlike a signed shift). */
MCUQP_INLINE int32_t mcuqp_shl_wrap(int32_t x, int32_t n) { return (int32_t)((uint32_t)x << n); }

/* gemmlowp SaturatingRoundingDoublingHighMul. */
MCUQP_INLINE int32_t mcuqp_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (1LL << 30) : (1LL - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));
}

/* gemmlowp RoundingDivideByPOT: round half away from zero. exponent in [0, 31]. */
MCUQP_INLINE int32_t mcuqp_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier for int32 accumulators. */
MCUQP_INLINE int32_t mcuqp_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
#if MCUQP_SINGLE_ROUNDING
    const int32_t total_shift = 31 - shift;
    const int64_t round = (int64_t)1 << (total_shift - 1);
    return (int32_t)(((int64_t)x * multiplier + round) >> total_shift);
#else
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return mcuqp_rdbpot(mcuqp_srdhm(mcuqp_shl_wrap(x, left), multiplier), right);
#endif
}

/* TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0). */
MCUQP_INLINE int32_t mcuqp_mul_by_qm_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift)
{
    return mcuqp_rdbpot(mcuqp_srdhm(x, multiplier), -shift);
}

/* TFLite MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0). */
MCUQP_INLINE int32_t mcuqp_mul_by_qm_greater_than_one(int32_t x, int32_t multiplier, int32_t left_shift)
{
    return mcuqp_srdhm(mcuqp_shl_wrap(x, left_shift), multiplier);
}

#endif /* MCUQP_FIXEDPOINT_H */
