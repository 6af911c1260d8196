"""Pieces several ops share: TFLite Micro's requantization and activation-range
formulas (float32 scales widened to double, as TFLM's Prepare reads them) and the
float executor's window helpers."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mcuqp.ir import Padding, Requant
from mcuqp.quant.fixedpoint import Rounding, quantize_multiplier, round_half_away

QMIN, QMAX = -128, 127


def double(x: float) -> float:
    """A float32 scale widened to double, as TFLite Micro reads it."""
    return float(np.float32(x))


def conv_requant(
    input_scale: float, weight_scales: np.ndarray, output_scale: float, rounding: Rounding = "double"
) -> Requant:
    """Per-channel (or per-tensor) multiplier/shift for conv, depthwise and fully connected:
    effective scale = in_scale * w_scale / out_scale, computed in double."""
    in_s = float(np.float32(input_scale))
    out_s = float(np.float32(output_scale))
    mults, shifts = [], []
    for ws in np.atleast_1d(np.asarray(weight_scales, dtype=np.float32)):
        m, s = quantize_multiplier(in_s * float(ws) / out_s, rounding)
        mults.append(m)
        shifts.append(s)
    return Requant(np.array(mults, dtype=np.int32), np.array(shifts, dtype=np.int32))


def activation_range(activation: str | None, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 outputs.

    activation: None/"none", "relu", "relu6" or "relu_n1_to_1"."""
    s = np.float32(scale)

    def q(x: float) -> int:
        return int(zero_point) + round_half_away(float(np.float32(x) / s))

    act = (activation or "none").lower()
    if act == "none":
        return QMIN, QMAX
    if act == "relu":
        return max(QMIN, q(0.0)), QMAX
    if act == "relu6":
        return max(QMIN, q(0.0)), min(QMAX, q(6.0))
    if act == "relu_n1_to_1":
        return max(QMIN, q(-1.0)), min(QMAX, q(1.0))
    raise ValueError(f"unsupported fused activation {activation!r}")


# ---- float executor helpers (NHWC, batch first)


def float_pad(x: np.ndarray, p: Padding, value: float) -> np.ndarray:
    """Pad NHWC `x` by the op's padding (bottom/right cover the last window)."""
    return np.pad(
        x,
        ((0, 0), (p.top, max(p.bottom, 0)), (p.left, max(p.right, 0)), (0, 0)),
        constant_values=value,
    )


def float_windows(x: np.ndarray, op, kh: int, kw: int) -> np.ndarray:
    """(N, OH, OW, C, KH, KW) strided windows of the padded input, dilation applied."""
    dh, dw = op.dilation
    sh, sw = op.stride
    oh, ow = op.shape[1], op.shape[2]
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(x, (span_h, span_w), axis=(1, 2))
    win = win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, :, ::dh, ::dw]
    return win


def float_activation(y: np.ndarray, activation: str | None) -> np.ndarray:
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "relu6":
        return np.clip(y, 0.0, 6.0)
    return y
