"""int8 MEAN over H and W (global average pooling) as TFLite Micro computes it: the sum of
each channel, minus count * zero point, requantized by a multiplier that folds in 1/count."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import MeanAttrs
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier


def mean_s8(x: np.ndarray, attrs: MeanAttrs, rounding: Rounding = "double") -> np.ndarray:
    """(N, H, W, C) int8 -> (N, C) int8."""
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"mean takes a 4-D int8 input, got {x.dtype} {x.shape}")
    if x.shape[1] * x.shape[2] != attrs.count:
        raise UnsupportedModelError(f"mean over {x.shape[1]}x{x.shape[2]} with parameters for {attrs.count} values")
    if attrs.multiplier < 0 or not -31 <= attrs.shift <= 30:
        raise UnsupportedModelError(f"mean multiplier {attrs.multiplier} shift {attrs.shift} out of range")
    total = x.astype(np.int64).sum(axis=(1, 2)) + attrs.count * attrs.input_offset
    y = multiply_by_quantized_multiplier(total, attrs.multiplier, attrs.shift, rounding) + attrs.output_offset
    return np.clip(y, -128, 127).astype(np.int8)
