"""int8 concatenation of tensors that share one quantization (a copy, as in TFLite Micro)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import ConcatAttrs


def concatenation_s8(xs: Sequence[np.ndarray], attrs: ConcatAttrs) -> np.ndarray:
    """Batch-first inputs of equal rank, joined along attrs.axis (>= 1)."""
    xs = [np.asarray(x) for x in xs]
    if not xs or any(x.dtype != np.int8 for x in xs):
        raise UnsupportedModelError("concatenation takes one or more int8 inputs")
    if not 1 <= attrs.axis < xs[0].ndim:
        raise UnsupportedModelError(f"concatenation axis {attrs.axis} must be in [1, {xs[0].ndim})")
    return np.concatenate(xs, axis=attrs.axis)
