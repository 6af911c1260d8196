"""HARD_SWISH: int8 x * relu6(x + 3) / 6 exactly as TFLite Micro's reference kernel, which works
in int16 fixed point: the input minus its zero point is moved to a "hires" scale (x 128), one
int16 multiplier takes it to the output scale, another to the "reluish" scale (3 / 32768) where
relu6(x + 3) / 6 becomes a Q0.15 factor in [0, 1]; their product is rounded to the output.

From torch: `nn.Hardswish`. C kernel: `mcuqp_hard_swish_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding, quantize_multiplier

I16_MIN, I16_MAX = -32768, 32767
MAX_EXPONENT = 15  # int16 shifts beyond this are refused (scale ratios far outside any model's)


@dataclass
class HardSwishAttrs:
    """TFLM HardSwishParams: two int16 multipliers (Q0.15) and their power-of-two exponents."""

    input_zero_point: int = 0
    output_zero_point: int = 0
    reluish_multiplier: int = 0  # int16
    reluish_exponent: int = 0
    output_multiplier: int = 0  # int16
    output_exponent: int = 0  # <= 0


def downscale_to_int16(m32: int) -> int:
    """TFLM DownScaleInt32ToInt16Multiplier: round the Q31 multiplier to Q15, saturating."""
    if m32 >= (1 << 31) - 1 - (1 << 15):
        return I16_MAX
    return (m32 + (1 << 15)) >> 16


def hard_swish_attrs(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> HardSwishAttrs:
    """TFLM HardSwish Prepare; the scale ratios are formed in float32 as TFLM does."""
    hires = np.float32(np.float32(1.0 / 128.0) * np.float32(in_scale))
    m_out, e_out = quantize_multiplier(float(np.float32(hires / np.float32(out_scale))))
    m_rel, e_rel = quantize_multiplier(float(np.float32(hires / np.float32(3.0 / 32768.0))))
    if not -MAX_EXPONENT <= e_out <= 0:
        raise tfl.Reject(f"hard swish scale ratio {in_scale}/{out_scale} is out of range (output exponent {e_out})")
    if not -MAX_EXPONENT <= e_rel <= MAX_EXPONENT:
        raise tfl.Reject(f"hard swish input scale {in_scale} is out of range")
    return HardSwishAttrs(input_zero_point=int(in_zp), output_zero_point=int(out_zp),
                          reluish_multiplier=downscale_to_int16(m_rel), reluish_exponent=e_rel,
                          output_multiplier=downscale_to_int16(m_out), output_exponent=e_out)


def _trunc_div(a: np.ndarray, d: int) -> np.ndarray:
    return np.sign(a) * (np.abs(a) // d)


def _srdhm16(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int16."""
    ab = a * b
    r = _trunc_div(ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14)), 1 << 15)
    return np.where((a == I16_MIN) & (b == I16_MIN), I16_MAX, r)


def _sat_left_shift16(v: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(v * (1 << amount), I16_MIN, I16_MAX)


def _rdbpot(x: np.ndarray, exponent: int) -> np.ndarray:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def hard_swish_s8(x: np.ndarray, attrs: HardSwishAttrs, rounding: Rounding = "double") -> np.ndarray:
    """(`rounding` is accepted for the interpreter's signature; TFLM's int16 path has one mode.)"""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"hard swish takes int8, got {x.dtype}")
    a = attrs
    if not (-MAX_EXPONENT <= a.output_exponent <= 0 and -MAX_EXPONENT <= a.reluish_exponent <= MAX_EXPONENT):
        raise UnsupportedModelError("hard swish exponents out of range")
    hires = (x.astype(np.int64) - a.input_zero_point) * 128
    preshift = _srdhm16(hires, a.output_multiplier)
    rel = hires
    if a.reluish_exponent > 0:
        rel = _sat_left_shift16(rel, a.reluish_exponent - 1)
    rel = _srdhm16(rel, a.reluish_multiplier)
    if a.reluish_exponent > 0:
        rel = _sat_left_shift16(rel, 1)
    if a.reluish_exponent < 0:
        rel = _rdbpot(rel, -a.reluish_exponent)
    rel = (rel + (1 << 15)) >> 1  # [-1, 1] in Q0.15 -> [0, 1]
    pre = _trunc_div(rel * preshift, 1 << 15)  # SaturatingDoublingHighMul; rel >= 0 cannot overflow
    y = _rdbpot(pre, -a.output_exponent) + a.output_zero_point
    return np.clip(y, -128, 127).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return hard_swish_s8(env[op.inputs[0]], op.attrs, rounding)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    return (x * np.clip(x + 3.0, 0.0, 6.0) / 6.0).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding,
                weight_scales: np.ndarray | None) -> HardSwishAttrs:
    try:
        return hard_swish_attrs(ins[0].quant.s, ins[0].quant.zp, y_q.s, y_q.zp)
    except tfl.Reject as e:
        raise UnsupportedModelError(f"{op.name}: {e}") from None


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise tfl.Reject("hard swish changes the shape")
    attrs = hard_swish_attrs(x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]))
    return [tfl.LoweredOp(OpKind.HARD_SWISH, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_hard_swish_params", {k: getattr(a, k) for k in (
        "input_zero_point", "output_zero_point", "reluish_multiplier", "reluish_exponent",
        "output_multiplier", "output_exponent")})
    layer.call = f"{kernel.function}({params}, {y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.HARD_SWISH,
        attrs=HardSwishAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_hard_swish_s8", "hard_swish_s8.c"),
        tflite={"HARD_SWISH": _lower},
        float_run=_float_run,
        from_float=_from_float,
    ),
)
