"""int8 -> int8 QUANTIZE (TFLite's Requantize): a change of scale and zero point."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import QuantizeAttrs
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier


def quantize_s8(x: np.ndarray, attrs: QuantizeAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"quantize takes int8, got {x.dtype}")
    if attrs.multiplier < 0:
        raise UnsupportedModelError(f"quantize multiplier {attrs.multiplier} is negative")
    y = multiply_by_quantized_multiplier(x.astype(np.int64) + attrs.input_offset, attrs.multiplier, attrs.shift,
                                         rounding)
    return np.clip(y + attrs.output_offset, -128, 127).astype(np.int8)
