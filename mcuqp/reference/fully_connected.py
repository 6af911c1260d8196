"""Fully connected, int8 (TFLite int8 FullyConnected / FullyConnectedPerChannel semantics):
y = clamp(requant((w + filter_offset) . (x + input_offset) + bias) + output_offset)."""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import FullyConnectedAttrs
from mcuqp.quant.fixedpoint import Rounding
from mcuqp.reference.conv2d import check_bias, check_offset, check_output_stage, output_stage


def fully_connected_s8(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    attrs: FullyConnectedAttrs,
    rounding: Rounding = "double",
) -> np.ndarray:
    """x int8 (B, Cin), w int8 (Cout, Cin), bias int32 (Cout,) or None -> int8 (B, Cout)."""
    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.int8 or x.ndim != 2:
        raise UnsupportedModelError(f"fully_connected takes int8 (batches, in) input, got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 2 or min(w.shape) < 1:
        raise UnsupportedModelError(f"fully_connected takes int8 (out, in) weights, got {w.dtype} {w.shape}")
    cout, cin = w.shape
    if cin != x.shape[1]:
        raise UnsupportedModelError(f"fully_connected weights {w.shape} do not match {x.shape[1]} inputs")
    check_offset("fully_connected", "input offset", attrs.input_offset)
    check_offset("fully_connected", "filter offset", attrs.filter_offset)
    requant = check_output_stage(
        "fully_connected", attrs.requant, cout, attrs.output_offset, attrs.act_min, attrs.act_max, rounding
    )
    b = check_bias("fully_connected", bias, cout)

    xo = x.astype(np.int64) + attrs.input_offset
    wo = w.astype(np.int64) + attrs.filter_offset
    acc = xo @ wo.T
    return output_stage(acc, b, requant, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)
