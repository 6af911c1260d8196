"""Reshape: the data order of a row-major tensor does not change."""
from __future__ import annotations

import math

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import ReshapeAttrs


def reshape_s8(x: np.ndarray, attrs: ReshapeAttrs) -> np.ndarray:
    """`x` reshaped to `attrs.new_shape`; when `x` carries a batch of such tensors
    (leading axis N, graph batch 1) the leading dimension becomes N."""
    x = np.asarray(x)
    new_shape = tuple(int(d) for d in attrs.new_shape)
    if any(d < 1 for d in new_shape):
        raise UnsupportedModelError(f"reshape needs a fully known positive shape, got {new_shape}")
    n = math.prod(new_shape)
    if n == x.size:
        return x.reshape(new_shape)
    if new_shape and x.ndim >= 1 and x.shape[0] * math.prod(new_shape[1:]) == x.size:
        return x.reshape((x.shape[0], *new_shape[1:]))
    raise UnsupportedModelError(f"cannot reshape {x.shape} ({x.size} values) to {new_shape}")
