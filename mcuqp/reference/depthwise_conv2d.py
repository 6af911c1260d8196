"""Depthwise 2-D convolution, int8 NHWC (TFLite int8 DepthwiseConvPerChannel semantics).

Output channel oc = ic * depth_multiplier + m reads input channel ic with the weights
w[0, :, :, oc]. Padding and accumulation follow conv2d.
"""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import ConvAttrs
from mcuqp.quant.fixedpoint import Rounding
from mcuqp.reference.conv2d import (
    check_bias,
    check_offset,
    check_output_stage,
    check_window,
    offset_windows,
    output_stage,
)


def depthwise_conv2d_s8(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, attrs: ConvAttrs, rounding: Rounding = "double"
) -> np.ndarray:
    """x int8 (N, H, W, Cin), w int8 (1, KH, KW, Cin * depth_multiplier), bias int32
    (Cout,) or None -> int8 (N, OH, OW, Cin * depth_multiplier)."""
    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"depthwise_conv2d takes int8 NHWC input, got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 4 or w.shape[0] != 1 or min(w.shape) < 1:
        raise UnsupportedModelError(f"depthwise_conv2d takes int8 (1, KH, KW, C) weights, got {w.dtype} {w.shape}")
    _, kh, kw, cout = w.shape
    cin, dm = x.shape[3], attrs.depth_multiplier
    if dm < 1 or cout != cin * dm:
        raise UnsupportedModelError(
            f"depthwise_conv2d weights {w.shape} do not match {cin} input channels x depth multiplier {dm}"
        )
    check_window("depthwise_conv2d", attrs)
    check_offset("depthwise_conv2d", "input offset", attrs.input_offset)
    requant = check_output_stage(
        "depthwise_conv2d", attrs.requant, cout, attrs.output_offset, attrs.act_min, attrs.act_max, rounding
    )
    b = check_bias("depthwise_conv2d", bias, cout)

    win = offset_windows(x, kh, kw, attrs).astype(np.int64)  # (N, OH, OW, Cin, KH, KW)
    filt = w[0].reshape(kh, kw, cin, dm).astype(np.int64)
    acc = np.einsum("nhwckl,klcm->nhwcm", win, filt)
    acc = acc.reshape(*acc.shape[:3], cout)
    return output_stage(acc, b, requant, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)
