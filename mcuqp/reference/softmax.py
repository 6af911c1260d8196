"""int8 softmax over the last axis, exactly as TFLite Micro's reference kernel.

Output scale 1/256, zero point -128. See runtime_c/src/softmax_s8.c for the arithmetic;
this is its vectorised twin (all rows at once).
"""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import SoftmaxAttrs
from mcuqp.quant.fixedpoint import (
    SOFTMAX_ACCUMULATION_INTEGER_BITS,
    SOFTMAX_SCALED_DIFF_INTEGER_BITS,
    Rounding,
    exp_on_negative_values,
    get_reciprocal,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_greater_than_one,
    rescale,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

# Every exp term is at most 1.0, and the sum lives in Q12.19: 4095 terms always fit.
MAX_ROW_SIZE = 4095


def _check(attrs: SoftmaxAttrs, row_size: int, rounding: Rounding) -> None:
    if not 1 <= row_size <= MAX_ROW_SIZE:
        raise UnsupportedModelError(f"softmax rows of {row_size} values are not supported (1..{MAX_ROW_SIZE})")
    max_shift = 30 if rounding == "single" else 31
    if attrs.input_multiplier <= 0 or not 0 <= attrs.input_left_shift <= max_shift:
        raise UnsupportedModelError(
            f"softmax input multiplier {attrs.input_multiplier} << {attrs.input_left_shift} is out of range"
        )
    radius = (31 << 26) >> attrs.input_left_shift
    if not -radius <= attrs.diff_min <= 0:
        raise UnsupportedModelError(f"softmax diff_min {attrs.diff_min} is outside [-{radius}, 0]")


def _exp_of_diff(diff: np.ndarray, attrs: SoftmaxAttrs, rounding: Rounding) -> np.ndarray:
    """exp(beta * scale * diff) in Q0.31 for diff = x - row max."""
    if rounding == "single":
        scaled = multiply_by_quantized_multiplier(diff, attrs.input_multiplier, attrs.input_left_shift, "single")
    else:
        scaled = multiply_by_quantized_multiplier_greater_than_one(diff, attrs.input_multiplier, attrs.input_left_shift)
    return exp_on_negative_values(scaled, SOFTMAX_SCALED_DIFF_INTEGER_BITS)


def softmax_s8(x: np.ndarray, attrs: SoftmaxAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim < 1:
        raise UnsupportedModelError(f"softmax takes an int8 tensor, got {x.dtype} {x.shape}")
    depth = x.shape[-1]
    _check(attrs, depth, rounding)
    rows = x.reshape(-1, depth).astype(np.int64)
    diff = rows - rows.max(axis=1, keepdims=True)
    used = diff >= attrs.diff_min
    # Out-of-range diffs would wrap in the shift; they are discarded, so zero them first.
    e = _exp_of_diff(np.where(used, diff, 0), attrs, rounding)
    terms = np.where(used, rescale(e, 0, SOFTMAX_ACCUMULATION_INTEGER_BITS), 0)
    total = terms.sum(axis=1)
    recip, num_bits_over_unit = get_reciprocal(total, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    prod = saturating_rounding_doubling_high_mul(recip[:, None], e)
    # Exponents above 31 (sum >= 512) divide exactly here, as the C kernel does.
    unsat = rounding_divide_by_pot(prod, (num_bits_over_unit + 31 - 8)[:, None])
    y = np.where(used, np.clip(unsat - 128, -128, 127), -128)
    return y.astype(np.int8).reshape(x.shape)
