"""Elementwise int8 ADD (TFLite int8 reference semantics; no broadcasting)."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import AddAttrs
from mcuqp.quant.fixedpoint import (
    Rounding,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_smaller_than_one_exp,
    wrap_int32,
)


def _scale(x: np.ndarray, multiplier: int, shift: int, rounding: Rounding) -> np.ndarray:
    if rounding == "single":
        return multiply_by_quantized_multiplier(x, multiplier, shift, "single")
    return multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, shift)


def _check(attrs: AddAttrs) -> None:
    if not 0 <= attrs.left_shift <= 31:
        raise UnsupportedModelError(f"add left_shift {attrs.left_shift} is outside [0, 31]")
    for name in ("input1", "input2", "output"):
        m, s = getattr(attrs, f"{name}_multiplier"), getattr(attrs, f"{name}_shift")
        if m < 0 or not -31 <= s <= 0:
            raise UnsupportedModelError(f"add {name} multiplier {m} shift {s}: the real multiplier must be in [0, 1)")


def add_s8(x1: np.ndarray, x2: np.ndarray, attrs: AddAttrs, rounding: Rounding = "double") -> np.ndarray:
    """y = clamp(M_out(M_1((x1 + off1) << ls) + M_2((x2 + off2) << ls)) + out_off)."""
    x1, x2 = np.asarray(x1), np.asarray(x2)
    if x1.dtype != np.int8 or x2.dtype != np.int8:
        raise UnsupportedModelError(f"add takes int8 inputs, got {x1.dtype} and {x2.dtype}")
    if x1.shape != x2.shape:
        raise UnsupportedModelError(f"add without broadcasting needs equal shapes, got {x1.shape} and {x2.shape}")
    _check(attrs)
    a1 = wrap_int32((x1.astype(np.int64) + attrs.input1_offset) << attrs.left_shift)
    a2 = wrap_int32((x2.astype(np.int64) + attrs.input2_offset) << attrs.left_shift)
    s1 = _scale(a1, attrs.input1_multiplier, attrs.input1_shift, rounding)
    s2 = _scale(a2, attrs.input2_multiplier, attrs.input2_shift, rounding)
    raw = _scale(wrap_int32(s1 + s2), attrs.output_multiplier, attrs.output_shift, rounding)
    y = wrap_int32(raw + attrs.output_offset)
    return np.clip(y, attrs.act_min, attrs.act_max).astype(np.int8)
