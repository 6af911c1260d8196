"""MUL: int8 elementwise product with TFLite's broadcasting (shapes right-aligned, a
dimension of 1 repeats; `mcuqp.ops.broadcast`), exactly as TFLite Micro's reference kernel
(integer_ops::Mul). Either input may be a constant.

C kernel: `mcuqp_mul_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import broadcast
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import activation_range, double, float_activation
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, quantize_multiplier


@dataclass
class MulAttrs:
    """TFLite int8 MUL. inputs: [x1, x2] (either may be a constant); outputs: [y].
    y = clamp(MBQM((x1 + input1_offset) * (x2 + input2_offset)) + output_offset), with
    TFLite's broadcasting (shapes right-aligned, a dimension of 1 repeats)."""

    input1_offset: int = 0
    input2_offset: int = 0
    output_offset: int = 0
    output_multiplier: int = 0
    output_shift: int = 0
    act_min: int = -128
    act_max: int = 127


def mul_attrs(s1: float, zp1: int, s2: float, zp2: int, so: float, zpo: int, activation: str | None) -> MulAttrs:
    """TFLM CalculateOpDataMul: one multiplier for in1_scale * in2_scale / out_scale."""
    m, sh = quantize_multiplier(double(s1) * double(s2) / double(so))
    lo, hi = activation_range(activation, so, zpo)
    return MulAttrs(input1_offset=-zp1, input2_offset=-zp2, output_offset=zpo, output_multiplier=m,
                    output_shift=sh, act_min=lo, act_max=hi)


def mul_s8(x1: np.ndarray, x2: np.ndarray, attrs: MulAttrs, rounding: Rounding = "double") -> np.ndarray:
    """y = clamp(MBQM((x1 + off1) * (x2 + off2)) + out_off); x1 and x2 broadcast like numpy
    (which is TFLite's rule: right-aligned shapes, dimensions of 1 repeat)."""
    x1, x2 = np.asarray(x1), np.asarray(x2)
    if x1.dtype != np.int8 or x2.dtype != np.int8:
        raise UnsupportedModelError(f"mul takes int8 inputs, got {x1.dtype} and {x2.dtype}")
    if attrs.output_multiplier < 0:
        raise UnsupportedModelError(f"mul multiplier {attrs.output_multiplier} is negative")
    # |product| <= 255 * 255, so the int32 product of TFLite never overflows.
    prod = (x1.astype(np.int64) + attrs.input1_offset) * (x2.astype(np.int64) + attrs.input2_offset)
    y = multiply_by_quantized_multiplier(prod, attrs.output_multiplier, attrs.output_shift, rounding)
    return np.clip(y + attrs.output_offset, attrs.act_min, attrs.act_max).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return mul_s8(*broadcast.operands(graph, op, env), op.attrs, rounding)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    return float_activation(xs[0] * xs[1], op.activation).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None) -> MulAttrs:
    x, x2 = ins
    return mul_attrs(x.quant.s, x.quant.zp, x2.quant.s, x2.quant.zp, y_q.s, y_q.zp, op.activation)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    if all(i in ctx.known for i in op.inputs[:2]):
        raise tfl.Reject("both inputs are constants")
    (a, a_name), (b, b_name) = tfl.operand(ctx, op.inputs[0], "input 1"), tfl.operand(ctx, op.inputs[1], "input 2")
    y = ctx.act(op.outputs[0], "output")
    broadcast.output_shape(a.shape, b.shape, y.shape)
    attrs = mul_attrs(a.scale[0], int(a.zero_point[0]), b.scale[0], int(b.zero_point[0]), y.scale[0],
                      int(y.zero_point[0]), tfl.activation(op))
    return [tfl.LoweredOp(OpKind.MUL, [a_name, b_name], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    y = e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_mul_params", {k: getattr(a, k) for k in (
        "input1_offset", "input2_offset", "output_offset", "output_multiplier", "output_shift",
        "act_min", "act_max")})
    shape = broadcast.emit(e, layer, op)
    layer.call = (f"{kernel.function}({params}, {shape}, {e.operand(layer, op, 0)}, {e.operand(layer, op, 1)}, "
                  f"{e.buf(y.name)})")


OPS = (
    OpDef(
        kind=OpKind.MUL,
        attrs=MulAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_mul_s8", "mul_s8.c"),
        tflite={"MUL": _lower},
        float_run=_float_run,
        from_float=_from_float,
        fuses_activation=True,
    ),
)
