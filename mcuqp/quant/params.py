"""Integer kernel parameters derived from quantization scales, exactly as TFLite Micro
derives them at Prepare time (float32 scales widened to double, then QuantizeMultiplier).

Both front ends call these, so a torch model and a .tflite model with the same scales
lower to the same integers.
"""
from __future__ import annotations

import numpy as np

from mcuqp.ir import AddAttrs, Requant, SoftmaxAttrs
from mcuqp.quant.fixedpoint import Rounding, _round_half_away, quantize_multiplier

QMIN, QMAX = -128, 127


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
        return int(zero_point) + _round_half_away(float(np.float32(x) / s))

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


def add_attrs(
    in1_scale: float,
    in1_zp: int,
    in2_scale: float,
    in2_zp: int,
    out_scale: float,
    out_zp: int,
    activation: str | None = None,
) -> AddAttrs:
    """TFLite int8 ADD parameters (left_shift 20, inputs rescaled to twice the larger scale)."""
    s1 = float(np.float32(in1_scale))
    s2 = float(np.float32(in2_scale))
    so = float(np.float32(out_scale))
    left_shift = 20
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    lo, hi = activation_range(activation, out_scale, out_zp)
    return AddAttrs(
        left_shift=left_shift,
        input1_offset=-int(in1_zp),
        input1_multiplier=m1,
        input1_shift=sh1,
        input2_offset=-int(in2_zp),
        input2_multiplier=m2,
        input2_shift=sh2,
        output_offset=int(out_zp),
        output_multiplier=mo,
        output_shift=sho,
        act_min=lo,
        act_max=hi,
    )


def softmax_attrs(input_scale: float, beta: float = 1.0, rounding: Rounding = "double") -> SoftmaxAttrs:
    """TFLite Micro's int8 SoftmaxPrepare: PreprocessSoftmaxScaling with 5 integer bits
    for the scaled difference, and diff_min = -CalculateInputRadius(5, left_shift).

    beta * input_scale * 2^26 (from float32 values, in double) becomes a multiplier
    greater than one; TFLite rejects scales where it is not, and so does this."""
    from mcuqp.errors import UnsupportedModelError
    from mcuqp.quant.fixedpoint import SOFTMAX_SCALED_DIFF_INTEGER_BITS as bits

    max_real = float((1 << 30) - 1 if rounding == "single" else (1 << 31) - 1)
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << (31 - bits)), max_real)
    if not real > 1.0:
        raise UnsupportedModelError(
            f"softmax input scale {input_scale} x beta {beta} is too small for int8 softmax (needs > 2^-26)"
        )
    multiplier, left_shift = quantize_multiplier(real, rounding)
    radius = int(np.floor(float((1 << bits) - 1) * float(1 << (31 - bits)) / float(1 << left_shift)))
    return SoftmaxAttrs(beta=float(beta), input_multiplier=multiplier, input_left_shift=left_shift, diff_min=-radius)
