"""Activation quantization parameters from a float range, as TFLite's converter derives them
(used by calibration and PTQ)."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import McuqpError
from mcuqp.quant.fixedpoint import round_half_away


def activation_qparams(lo: float, hi: float, bits: int = 8) -> tuple[np.float32, int]:
    """TFLite's GetAsymmetricQuantizationParams (float32 arithmetic): (scale, zero point)."""
    qmin, qmax = np.float32(-(1 << (bits - 1))), np.float32((1 << (bits - 1)) - 1)
    lo32, hi32 = np.float32(min(float(lo), 0.0)), np.float32(max(float(hi), 0.0))
    scale = np.float32((hi32 - lo32) / (qmax - qmin))
    if not scale > 0:
        raise McuqpError(f"activation range [{lo}, {hi}] is empty: cannot quantize")
    zp_from_min = np.float32(qmin - lo32 / scale)
    if zp_from_min < qmin:
        zp = int(qmin)
    elif zp_from_min > qmax:
        zp = int(qmax)
    else:
        zp = int(round_half_away(zp_from_min))
    return scale, zp
