"""int8 sign for binary activations (mcuqp.compress.binary_act): +1 where the real input is
>= 0 (sign(0) = +1), -1 elsewhere; output scale 1.0, zero point 0."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import SignAttrs


def sign_s8(x: np.ndarray, attrs: SignAttrs) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"sign takes int8, got {x.dtype}")
    if not -128 <= attrs.input_zero_point <= 127:
        raise UnsupportedModelError(f"sign input zero point {attrs.input_zero_point} is outside int8")
    return np.where(x.astype(np.int32) >= attrs.input_zero_point, 1, -1).astype(np.int8)
