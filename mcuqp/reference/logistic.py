"""int8 LOGISTIC exactly as TFLite Micro's reference kernel: the input is scaled to a
gemmlowp FixedPoint<int32, 4>, gemmlowp's logistic gives a FixedPoint<int32, 0>, which is
rounded to 1/256 steps (output zero point -128)."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import LogisticAttrs
from mcuqp.quant.fixedpoint import (
    INT32_MAX,
    Rounding,
    exp_on_negative_values,
    multiply_by_quantized_multiplier,
    one_over_one_plus_x_for_x_in_0_1,
    rounding_divide_by_pot,
)

INPUT_INTEGER_BITS = 4
OUTPUT_INTEGER_BITS = 8


def gemmlowp_logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::logistic of FixedPoint<int32, integer_bits> raws -> FixedPoint<int32, 0> raws:
    1 / (1 + exp(-|a|)) for a > 0, one minus that for a < 0, exactly 1/2 at 0."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    magnitude = np.where(positive, a, -a)
    on_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-magnitude, integer_bits))
    result = np.where(positive, on_positive, INT32_MAX - on_positive)
    return np.where(a == 0, 1 << 30, result)


def logistic_s8(x: np.ndarray, attrs: LogisticAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"logistic takes int8, got {x.dtype}")
    if attrs.input_range_radius < 0:
        raise UnsupportedModelError(f"logistic input radius {attrs.input_range_radius} is negative")
    centred = x.astype(np.int64) - attrs.input_zero_point
    inside = np.abs(centred) < attrs.input_range_radius
    # Outside the radius the result saturates; keep those lanes at 0 so nothing overflows.
    q4 = multiply_by_quantized_multiplier(np.where(inside, centred, 0), attrs.input_multiplier,
                                          attrs.input_left_shift, rounding)
    q0 = gemmlowp_logistic(q4, INPUT_INTEGER_BITS)
    y = np.clip(rounding_divide_by_pot(q0, 31 - OUTPUT_INTEGER_BITS) - 128, -128, 127)
    y = np.where(centred <= -attrs.input_range_radius, -128, np.where(centred >= attrs.input_range_radius, 127, y))
    return y.astype(np.int8)
