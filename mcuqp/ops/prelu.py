"""PRELU: int8 parametric ReLU exactly as TFLite Micro's reference kernel. The alpha tensor (a
constant or an activation) broadcasts against the input like a binary op's second operand
(`mcuqp.ops.broadcast`). With v = x - input zero point: v >= 0 is requantized by
in_scale / out_scale; v < 0 is multiplied by alpha - alpha zero point and requantized by
in_scale * alpha_scale / out_scale; then the output zero point is added and int8 saturated.

C kernel: `mcuqp_prelu_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import broadcast
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import double
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, quantize_multiplier


@dataclass
class PreluAttrs:
    """inputs: [x, alpha]; y = clamp(MBQM(v, m1) or MBQM(v * (alpha + alpha_offset), m2) + output_offset)."""

    input_offset: int = 0
    alpha_offset: int = 0
    output_offset: int = 0
    output_multiplier_1: int = 0
    output_shift_1: int = 0
    output_multiplier_2: int = 0
    output_shift_2: int = 0


FIELDS = ("input_offset", "alpha_offset", "output_offset", "output_multiplier_1", "output_shift_1",
          "output_multiplier_2", "output_shift_2")


def prelu_attrs(in_scale: float, in_zp: int, alpha_scale: float, alpha_zp: int, out_scale: float,
                out_zp: int) -> PreluAttrs:
    """TFLM CalculatePreluParams: both ratios in double from the float32 scales."""
    m1, s1 = quantize_multiplier(double(in_scale) / double(out_scale))
    m2, s2 = quantize_multiplier(double(in_scale) * double(alpha_scale) / double(out_scale))
    return PreluAttrs(input_offset=-int(in_zp), alpha_offset=-int(alpha_zp), output_offset=int(out_zp),
                      output_multiplier_1=m1, output_shift_1=s1, output_multiplier_2=m2, output_shift_2=s2)


def prelu_s8(x: np.ndarray, alpha: np.ndarray, attrs: PreluAttrs, rounding: Rounding = "double") -> np.ndarray:
    x, alpha = np.asarray(x), np.asarray(alpha)
    if x.dtype != np.int8 or alpha.dtype != np.int8:
        raise UnsupportedModelError(f"prelu takes int8 input and alpha, got {x.dtype} and {alpha.dtype}")
    if attrs.output_multiplier_1 < 0 or attrs.output_multiplier_2 < 0:
        raise UnsupportedModelError("prelu multipliers must be >= 0")
    try:
        x, alpha = np.broadcast_arrays(x, alpha)
    except ValueError:
        raise UnsupportedModelError(f"prelu shapes {x.shape} and {alpha.shape} do not broadcast") from None
    v = x.astype(np.int64) + attrs.input_offset
    pos = multiply_by_quantized_multiplier(v, attrs.output_multiplier_1, attrs.output_shift_1, rounding)
    neg = multiply_by_quantized_multiplier(v * (alpha.astype(np.int64) + attrs.alpha_offset),
                                           attrs.output_multiplier_2, attrs.output_shift_2, rounding)
    return np.clip(np.where(v >= 0, pos, neg) + attrs.output_offset, -128, 127).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return prelu_s8(*broadcast.operands(graph, op, env), op.attrs, rounding)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x = ctx.act(op.inputs[0], "input")
    alpha, alpha_name = tfl.operand(ctx, op.inputs[1], "alpha")
    y = ctx.act(op.outputs[0], "output")
    broadcast.output_shape(x.shape, alpha.shape, y.shape)
    attrs = prelu_attrs(x.scale[0], int(x.zero_point[0]), alpha.scale[0], int(alpha.zero_point[0]), y.scale[0],
                        int(y.zero_point[0]))
    return [tfl.LoweredOp(OpKind.PRELU, [ctx.ir_act(op.inputs[0]), alpha_name], ctx.ir_act(op.outputs[0]), attrs)]


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    return np.where(xs[0] >= 0, xs[0], op.weight * xs[0]).astype(np.float32)


def _alpha(op) -> list[np.ndarray]:
    """A torch PReLU's alpha (one per channel, or one): quantized per tensor by PTQ."""
    return [np.asarray(op.weight, np.float32)]


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding,
                weight_scales: np.ndarray | None) -> PreluAttrs:
    x, alpha = ins
    return prelu_attrs(x.quant.s, x.quant.zp, alpha.quant.s, alpha.quant.zp, y_q.s, y_q.zp)


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    params = e.struct(layer, "mcuqp_prelu_params", {k: getattr(op.attrs, k) for k in FIELDS})
    shape = broadcast.emit(e, layer, op)
    y = e.graph.tensors[op.outputs[0]]
    layer.call = (f"{kernel.function}({params}, {shape}, {e.operand(layer, op, 0)}, {e.operand(layer, op, 1)}, "
                  f"{e.buf(y.name)})")


OPS = (
    OpDef(
        kind=OpKind.PRELU,
        attrs=PreluAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_prelu_s8", "prelu_s8.c"),
        tflite={"PRELU": _lower},
        alias="elementwise",
        float_run=_float_run,
        from_float=_from_float,
        constant_inputs=_alpha,
    ),
)
