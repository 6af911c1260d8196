"""LEAKY_RELU: int8 leaky ReLU exactly as TFLite Micro's reference kernel: the input minus its
zero point is requantized by the identity multiplier (in_scale / out_scale) where it is >= 0 and
by the alpha multiplier (in_scale * alpha / out_scale) where it is negative, then the output zero
point is added and the result saturated to int8.

From torch: `nn.LeakyReLU`. C kernel: `mcuqp_leaky_relu_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, quantize_multiplier


@dataclass
class LeakyReluAttrs:
    """y = clamp(output_zero_point + MBQM(x - input_zero_point, identity or alpha multiplier))."""

    input_zero_point: int = 0
    output_zero_point: int = 0
    identity_multiplier: int = 0
    identity_shift: int = 0
    alpha_multiplier: int = 0
    alpha_shift: int = 0


def leaky_relu_attrs(in_scale: float, in_zp: int, out_scale: float, out_zp: int, alpha: float) -> LeakyReluAttrs:
    """TFLM LeakyRelu Prepare: both ratios are formed in float32 (as TFLM multiplies and divides
    the float scales) and then widened to double for QuantizeMultiplier."""
    s_in, s_out, a = np.float32(in_scale), np.float32(out_scale), np.float32(alpha)
    if not (np.isfinite(a) and a >= 0):
        raise tfl.Reject(f"leaky relu alpha {alpha} must be a finite number >= 0")
    mi, si = quantize_multiplier(float(np.float32(s_in / s_out)))
    ma, sa = quantize_multiplier(float(np.float32(np.float32(s_in * a) / s_out)))
    return LeakyReluAttrs(input_zero_point=int(in_zp), output_zero_point=int(out_zp), identity_multiplier=mi,
                          identity_shift=si, alpha_multiplier=ma, alpha_shift=sa)


def leaky_relu_s8(x: np.ndarray, attrs: LeakyReluAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"leaky relu takes int8, got {x.dtype}")
    if attrs.identity_multiplier < 0 or attrs.alpha_multiplier < 0:
        raise UnsupportedModelError("leaky relu multipliers must be >= 0")
    d = x.astype(np.int64) - attrs.input_zero_point
    pos = multiply_by_quantized_multiplier(d, attrs.identity_multiplier, attrs.identity_shift, rounding)
    neg = multiply_by_quantized_multiplier(d, attrs.alpha_multiplier, attrs.alpha_shift, rounding)
    y = np.where(d >= 0, pos, neg) + attrs.output_zero_point
    return np.clip(y, -128, 127).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return leaky_relu_s8(env[op.inputs[0]], op.attrs, rounding)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    return np.where(xs[0] >= 0, xs[0], np.float32(op.alpha) * xs[0]).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding,
                weight_scales: np.ndarray | None) -> LeakyReluAttrs:
    try:
        return leaky_relu_attrs(ins[0].quant.s, ins[0].quant.zp, y_q.s, y_q.zp, op.alpha)
    except tfl.Reject as e:
        raise UnsupportedModelError(f"{op.name}: {e}") from None


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise tfl.Reject("leaky relu changes the shape")
    if "Alpha" not in op.options:
        raise tfl.Reject("leaky relu has no alpha option")
    attrs = leaky_relu_attrs(x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]),
                             op.options["Alpha"])
    return [tfl.LoweredOp(OpKind.LEAKY_RELU, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_leaky_relu_params", {k: getattr(a, k) for k in (
        "input_zero_point", "output_zero_point", "identity_multiplier", "identity_shift",
        "alpha_multiplier", "alpha_shift")})
    layer.call = f"{kernel.function}({params}, {y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.LEAKY_RELU,
        attrs=LeakyReluAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_leaky_relu_s8", "leaky_relu_s8.c"),
        tflite={"LEAKY_RELU": _lower},
        float_run=_float_run,
        from_float=_from_float,
    ),
)
