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


def _round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float, rounding: Rounding = "double") -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real ≈ multiplier * 2^(shift - 31), multiplier in
    [2^30, 2^31). `real` is used as a double (widen float32 scales before dividing)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
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
        return (x * multiplier + rnd) >> total_shift
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
