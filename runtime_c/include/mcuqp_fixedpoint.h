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

/* mcuqp_srdhm, computed as floor((ab + 2^30) / 2^31): gemmlowp's sign-dependent nudge and
 * division rounding toward zero give that value for every int64 ab, here with one add and
 * an arithmetic shift instead of a signed 64-bit division (b is tested first: it is the
 * per-channel multiplier). Kept apart from mcuqp_srdhm because arm-none-eabi-gcc 12.2
 * mis-assembles an MVE kernel (vldrb with a high register) when the shared helper takes
 * this form. */
MCUQP_INLINE int32_t mcuqp_srdhm_floor(int32_t a, int32_t b)
{
    if (b == INT32_MIN && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    return (int32_t)((ab + (1LL << 30)) >> 31);
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

/* One int8 output of a conv / depthwise / fully connected layer: requantize the accumulator
 * (summed as uint32 so that it wraps without undefined behaviour), clamp it to [lo, hi] --
 * the activation range minus out_offset, so that the int32 add cannot overflow -- and add
 * out_offset. */
MCUQP_INLINE int8_t mcuqp_requantize_clamp_s8(uint32_t acc, int32_t multiplier, int32_t shift, int32_t lo, int32_t hi,
                                              int32_t out_offset)
{
    const int32_t r = mcuqp_requantize((int32_t)acc, multiplier, shift);
    return (int8_t)(mcuqp_clamp_i32(r, lo, hi) + out_offset);
}

/* One output channel's requantization with its shift already split, for kernels that
 * requantize many outputs of the same channel: mcuqp_requant_ch_apply gives exactly
 * mcuqp_requantize_clamp_s8 without recomputing the shift amounts and the rounding mask
 * for every output. */
typedef struct {
    int32_t multiplier;
    int32_t shift;
    int32_t left;  /* max(shift, 0) */
    int32_t right; /* max(-shift, 0) */
    int32_t mask;  /* 2^right - 1 */
    int32_t half;  /* mask / 2 */
} mcuqp_requant_ch;

MCUQP_INLINE mcuqp_requant_ch mcuqp_requant_ch_make(int32_t multiplier, int32_t shift)
{
    mcuqp_requant_ch q;
    q.multiplier = multiplier;
    q.shift = shift;
    q.left = shift > 0 ? shift : 0;
    q.right = shift > 0 ? 0 : -shift;
    q.mask = (int32_t)((1LL << q.right) - 1);
    q.half = q.mask >> 1;
    return q;
}

MCUQP_INLINE int8_t mcuqp_requant_ch_apply(const mcuqp_requant_ch *q, uint32_t acc, int32_t lo, int32_t hi,
                                           int32_t out_offset)
{
#if MCUQP_SINGLE_ROUNDING
    const int32_t r = mcuqp_requantize((int32_t)acc, q->multiplier, q->shift);
#else
    const int32_t s = mcuqp_srdhm_floor(mcuqp_shl_wrap((int32_t)acc, q->left), q->multiplier);
    const int32_t r = (s >> q->right) + ((s & q->mask) > q->half + (s < 0 ? 1 : 0) ? 1 : 0);
#endif
    return (int8_t)(mcuqp_clamp_i32(r, lo, hi) + out_offset);
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

/* ---- gemmlowp fixed-point pieces used by the int8 softmax -------------------------
 * A gemmlowp FixedPoint<int32, I> is its raw int32 with I integer and 31 - I fractional
 * bits; the product of two is mcuqp_srdhm of the raws (integer bits add up). */

#define MCUQP_SOFTMAX_SCALED_DIFF_INTEGER_BITS 5
#define MCUQP_SOFTMAX_ACCUMULATION_INTEGER_BITS 12

/* RoundingDivideByPOT for exponents in [0, 62]: exact round-half-away-from-zero of
 * x / 2^exponent (0 or -1 once the exponent passes 31, where the 32-bit form is undefined). */
MCUQP_INLINE int32_t mcuqp_rdbpot64(int32_t x, int32_t exponent)
{
    const int64_t mask = ((int64_t)1 << exponent) - 1;
    const int64_t remainder = (int64_t)x & mask;
    const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)(((int64_t)x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* gemmlowp SaturatingRoundingMultiplyByPOT: x * 2^exponent, saturating for exponent > 0,
 * rounding half away from zero for exponent < 0. exponent in [-31, 30]. */
MCUQP_INLINE int32_t mcuqp_srmbpot(int32_t x, int32_t exponent)
{
    if (exponent < 0) {
        return mcuqp_rdbpot(x, -exponent);
    }
    if (exponent == 0) {
        return x;
    }
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return mcuqp_shl_wrap(x, exponent);
}

/* gemmlowp Rescale<dst>(FixedPoint<int32, src>). */
MCUQP_INLINE int32_t mcuqp_fp_rescale(int32_t x, int32_t src_integer_bits, int32_t dst_integer_bits)
{
    return mcuqp_srmbpot(x, src_integer_bits - dst_integer_bits);
}

/* gemmlowp RoundingHalfSum for int32. */
MCUQP_INLINE int32_t mcuqp_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* Leading zero bits of a uint32 (32 for 0), portable. */
MCUQP_INLINE int32_t mcuqp_clz_u32(uint32_t x)
{
    int32_t n = 0;
    if (x == 0u) {
        return 32;
    }
    if ((x & 0xFFFF0000u) == 0u) { n += 16; x <<= 16; }
    if ((x & 0xFF000000u) == 0u) { n += 8; x <<= 8; }
    if ((x & 0xF0000000u) == 0u) { n += 4; x <<= 4; }
    if ((x & 0xC0000000u) == 0u) { n += 2; x <<= 2; }
    if ((x & 0x80000000u) == 0u) { n += 1; }
    return n;
}

/* exp(a) for a FixedPoint<int32, 0> a in [-1/4, 0): Taylor expansion around -1/8 to
 * fourth order. Returns FixedPoint<int32, 0>. */
MCUQP_INLINE int32_t mcuqp_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883; /* 1/3 */
    const int32_t x = a + (1 << 28);             /* a + 1/8 */
    const int32_t x2 = mcuqp_srdhm(x, x);
    const int32_t x3 = mcuqp_srdhm(x2, x);
    const int32_t x4 = mcuqp_srdhm(x2, x2);
    const int32_t x4_over_4 = mcuqp_srmbpot(x4, -2);
    const int32_t poly = mcuqp_srmbpot(mcuqp_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, -1);
    return constant_term + mcuqp_srdhm(constant_term, x + poly);
}

/* exp(a) for a FixedPoint<int32, integer_bits> a <= 0 (integer_bits in [0, 29]), as
 * FixedPoint<int32, 0>: the fractional quarter by Taylor series, then one constant
 * multiply per set bit of the rest (exp(-2^k) for k = -2..4). */
MCUQP_INLINE int32_t mcuqp_exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535,   720401,     242};
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    int32_t result = mcuqp_exp_on_interval_between_negative_one_quarter_and_0_excl(
        mcuqp_fp_rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0));
    const uint32_t remainder = (uint32_t)a_mod_quarter_minus_one_quarter - (uint32_t)a;
    int32_t k;
    for (k = -2; k <= 4; ++k) {
        if (integer_bits > k && ((remainder >> (fractional_bits + k)) & 1u) != 0u) {
            result = mcuqp_srdhm(result, barrel[k + 2]);
        }
    }
    if (integer_bits > 5 && a < -((int32_t)1 << (36 - integer_bits))) {
        result = 0; /* below -32 */
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a FixedPoint<int32, 0> a in [0, 1): three Newton-Raphson steps in
 * FixedPoint<int32, 2> from the 48/17 - 32/17 * d initial guess. */
MCUQP_INLINE int32_t mcuqp_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t half_denominator = mcuqp_rounding_half_sum(a, INT32_MAX);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x = constant_48_over_17 + mcuqp_srdhm(half_denominator, constant_neg_32_over_17);
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = mcuqp_srdhm(half_denominator, x);
        const int32_t one_minus_half_denominator_times_x = one_q2 - half_denominator_times_x;
        x = x + mcuqp_fp_rescale(mcuqp_srdhm(x, one_minus_half_denominator_times_x), 4, 2);
    }
    /* Reading the Q2 raw as Q1 halves it; then back to Q0. */
    return mcuqp_fp_rescale(x, 1, 0);
}

/* TFLite GetReciprocal: 1 / x for a positive FixedPoint<int32, x_integer_digits> x,
 * normalised to FixedPoint<int32, 0>; *num_bits_over_unit is the power of two taken out. */
MCUQP_INLINE int32_t mcuqp_get_reciprocal(int32_t x, int32_t x_integer_digits, int32_t *num_bits_over_unit)
{
    const int32_t headroom_plus_one = mcuqp_clz_u32((uint32_t)x);
    const uint32_t shifted = headroom_plus_one >= 32 ? 0u : (uint32_t)x << headroom_plus_one;
    const int32_t shifted_sum_minus_one = (int32_t)(shifted - 0x80000000u);
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    return mcuqp_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

#endif /* MCUQP_FIXEDPOINT_H */
