"""int8 MUL with broadcasting, exactly as TFLite Micro's reference kernel (integer_ops::Mul)."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import MulAttrs
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier


def mul_s8(x1: np.ndarray, x2: np.ndarray, attrs: MulAttrs, rounding: Rounding = "double") -> np.ndarray:
    """y = clamp(MBQM((x1 + off1) * (x2 + off2)) + out_off); x1 and x2 broadcast like numpy
    (which is TFLite's rule: right-aligned shapes, dimensions of 1 repeat)."""
    x1, x2 = np.asarray(x1), np.asarray(x2)
    if x1.dtype != np.int8 or x2.dtype != np.int8:
        raise UnsupportedModelError(f"mul takes int8 inputs, got {x1.dtype} and {x2.dtype}")
    if attrs.output_multiplier < 0:
        raise UnsupportedModelError(f"mul multiplier {attrs.output_multiplier} is negative")
    # |product| <= 255 * 255, so the int32 product of TFLite never overflows.
    prod = (x1.astype(np.int64) + attrs.input1_offset) * (x2.astype(np.int64) + attrs.input2_offset)
    y = multiply_by_quantized_multiplier(prod, attrs.output_multiplier, attrs.output_shift, rounding)
    return np.clip(y + attrs.output_offset, attrs.act_min, attrs.act_max).astype(np.int8)
