"""int8 constant padding (TFLite PAD / PADV2): the input copied into a border of pad_value."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import PadAttrs


def pad_s8(x: np.ndarray, attrs: PadAttrs) -> np.ndarray:
    """x batch-first with the graph's rank; paddings[0] (the batch) must be (0, 0)."""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"pad takes int8, got {x.dtype}")
    if len(attrs.paddings) != x.ndim or tuple(attrs.paddings[0]) != (0, 0):
        raise UnsupportedModelError(f"pad paddings {attrs.paddings} do not fit a batch-first {x.ndim}-D input")
    if any(b < 0 or a < 0 for b, a in attrs.paddings) or not -128 <= attrs.pad_value <= 127:
        raise UnsupportedModelError(f"pad paddings {attrs.paddings} / value {attrs.pad_value} out of range")
    return np.pad(x, [tuple(p) for p in attrs.paddings], mode="constant", constant_values=attrs.pad_value)
