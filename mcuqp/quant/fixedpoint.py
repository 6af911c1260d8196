"""Fixed-point arithmetic: the one place where rounding lives.

These are numpy twins of `runtime_c/include/mcuqp_fixedpoint.h` and follow TFLite's
(and gemmlowp's) definitions exactly. All functions take and return int32 values held
in int64 numpy arrays (or Python ints) so that intermediate products never overflow;
results are always within int32 range.

Rounding modes
- "double" (TFLite Micro's default): saturating rounding doubling high multiply, then
  a rounding divide by a power of two (round half away from zero in each step).
- "single" (TFLITE_SINGLE_ROUNDING): one 64-bit product and one rounding shift.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np

Rounding = Literal["double", "single"]
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(x):
    """Round half away from zero (C's round(), std::round): the one rounding of real values
    to integers. A scalar gives an int; an array gives a float64 array of integral values
    (float32 inputs are widened to float64 first, which is exact)."""
    if isinstance(x, np.ndarray):
        a = x.astype(np.float64)
        return np.sign(a) * np.floor(np.abs(a) + 0.5)
    x = float(x)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float, rounding: Rounding = "double") -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real ≈ multiplier * 2^(shift - 31), multiplier in
    [2^30, 2^31). `real` is used as a double (widen float32 scales before dividing)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if rounding == "single" and shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def wrap_int32(x: np.ndarray | int) -> np.ndarray:
    """Two's-complement wrap to int32 range (held in int64)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    # C integer division truncates toward zero.
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    return np.where(overflow, INT32_MAX, q).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray | int, exponent: np.ndarray | int) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(
    x: np.ndarray | int,
    multiplier: np.ndarray | int,
    shift: np.ndarray | int,
    rounding: Rounding = "double",
) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier for int32 accumulators.

    `multiplier` and `shift` broadcast against `x` (per-channel: last axis)."""
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if rounding == "single":
        total_shift = 31 - shift
        rnd = np.int64(1) << (total_shift - 1)
        # The C casts the 64-bit result to int32; outside TFLite's contract that wraps.
        return wrap_int32((x * multiplier + rnd) >> total_shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    # x * 2^left wraps in 32 bits like TFLite's int32 multiply on two's-complement targets.
    shifted = wrap_int32(x << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(
    x: np.ndarray | int, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """gemmlowp/TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0)."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -np.asarray(shift, dtype=np.int64))


def multiply_by_quantized_multiplier_greater_than_one(
    x: np.ndarray | int, multiplier: np.ndarray | int, left_shift: np.ndarray | int
) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0)."""
    x = np.asarray(x, dtype=np.int64)
    return saturating_rounding_doubling_high_mul(wrap_int32(x << np.asarray(left_shift, dtype=np.int64)), multiplier)


def saturate_int8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -128, 127).astype(np.int8)


# ---- gemmlowp fixed-point pieces used by the int8 softmax ---------------------------
# A gemmlowp FixedPoint<int32, I> value is its raw int32 with I integer bits and 31 - I
# fractional bits; products of FixedPoint values are saturating_rounding_doubling_high_mul
# of the raws (the integer bits add up). Exponents and integer-bit counts are compile-time
# constants in gemmlowp, so they are plain Python ints here.

SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


def saturating_rounding_multiply_by_pot(x: np.ndarray | int, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent>: x * 2^exponent, saturating to
    int32 when exponent > 0, rounding half away from zero when exponent < 0."""
    x = np.asarray(x, dtype=np.int64)
    if exponent == 0:
        return x.copy()
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    out = wrap_int32(x << exponent)
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out).astype(np.int64)


def rescale(x: np.ndarray | int, src_integer_bits: int, dst_integer_bits: int) -> np.ndarray:
    """gemmlowp Rescale<dst>(FixedPoint<int32, src>)."""
    return saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)


def rounding_half_sum(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp RoundingHalfSum for int32: (a + b + sign) / 2 in 64 bits, truncating."""
    s = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    t = s + np.where(s >= 0, 1, -1)
    return np.where(t >= 0, t >> 1, -((-t) >> 1)).astype(np.int64)


def count_leading_zeros_u32(x: np.ndarray | int) -> np.ndarray:
    """Leading zero bits of x as a uint32 (32 for 0), like TFLite's CountLeadingZeros."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    n = np.zeros(x.shape, dtype=np.int64)
    for bits in (16, 8, 4, 2, 1):
        small = x < (np.int64(1) << (32 - bits))
        n = np.where(small, n + bits, n)
        x = np.where(small, x << bits, x)
    return np.where(x == 0, 32, n)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray | int) -> np.ndarray:
    """gemmlowp: exp(a) for FixedPoint<int32, 0> a in [-1/4, 0), by a 4th-order Taylor
    expansion around -1/8. Result is FixedPoint<int32, 0>."""
    srdhm = saturating_rounding_doubling_high_mul
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883  # 1/3 in Q0.31
    x = np.asarray(a, dtype=np.int64) + (1 << 28)  # a + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(srdhm(x4_over_4 + x3, constant_1_over_3) + x2, -1)
    return constant_term + srdhm(constant_term, x + poly)


# exp(-2^k) in Q0.31 for k = -2..4: gemmlowp's barrel-shifter constants.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray | int, integer_bits: int) -> np.ndarray:
    """gemmlowp exp_on_negative_values: exp(a) for a FixedPoint<int32, integer_bits> a <= 0;
    result is FixedPoint<int32, 0> (raw INT32_MAX for a == 0)."""
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0)
    )
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder >> (fractional_bits + exponent)) & 1
            result = np.where(bit != 0, saturating_rounding_doubling_high_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32.0
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result).astype(np.int64)


def _reciprocal_of_one_plus_x_q2(a: np.ndarray | int) -> np.ndarray:
    """gemmlowp's Newton-Raphson 1 / (1 + a) for FixedPoint<int32, 0> a in [0, 1): three steps
    in FixedPoint<int32, 2> from the 48/17 - 32/17 * d guess; the FixedPoint<int32, 2> raw."""
    srdhm = saturating_rounding_doubling_high_mul
    half_denominator = rounding_half_sum(a, INT32_MAX)
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    one_f2 = 1 << 29
    x = constant_48_over_17 + srdhm(half_denominator, constant_neg_32_over_17)
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus_half_denominator_times_x = one_f2 - half_denominator_times_x
        x = x + rescale(srdhm(x, one_minus_half_denominator_times_x), 4, 2)
    return x


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray | int) -> np.ndarray:
    """gemmlowp: 1 / (1 + a) for FixedPoint<int32, 0> a in [0, 1). Result is FixedPoint<int32, 0>."""
    # ExactMulByPot<-1> turns Q2 into Q1 without touching the raw; then Rescale<0>.
    return rescale(_reciprocal_of_one_plus_x_q2(a), 1, 0)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray | int) -> np.ndarray:
    """gemmlowp: (1 - a) / (1 + a) for FixedPoint<int32, 0> a in [0, 1): the reciprocal's
    FixedPoint<int32, 2> minus one, rescaled to FixedPoint<int32, 0>."""
    return rescale(_reciprocal_of_one_plus_x_q2(a) - (1 << 29), 2, 0)


def get_reciprocal(x: np.ndarray | int, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: for a positive FixedPoint<int32, x_integer_digits> x, returns
    (1/x normalised to FixedPoint<int32, 0>, num_bits_over_unit)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = wrap_int32(shifted - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit
