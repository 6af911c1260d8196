"""MUL: int8 elementwise product with TFLite's broadcasting (shapes right-aligned, a
dimension of 1 repeats; rank <= 4), exactly as TFLite Micro's reference kernel
(integer_ops::Mul). Either input may be a constant.

C kernel: `mcuqp_mul_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import activation_range, double
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, quantize_multiplier


@dataclass
class MulAttrs:
    """TFLite int8 MUL. inputs: [x1, x2] (either may be a constant); outputs: [y].
    y = clamp(MBQM((x1 + input1_offset) * (x2 + input2_offset)) + output_offset), with
    TFLite's broadcasting (shapes right-aligned, a dimension of 1 repeats; rank <= 4)."""

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


def _operand(graph: Graph, env: Env, name: str, rank: int) -> np.ndarray:
    """Input `name`, batch first, with `rank` dimensions: missing leading dimensions of an
    activation go after its batch axis (TFLite extends shapes on the left); a constant's
    leading 1 broadcasts over the batch."""
    if name in env:
        x = env[name]
        return x.reshape((x.shape[0],) + (1,) * (rank - x.ndim) + x.shape[1:])
    data = graph.tensors[name].data
    return data.reshape((1,) * (rank - data.ndim) + data.shape)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    rank = len(graph.tensors[op.outputs[0]].shape)
    return mul_s8(_operand(graph, env, op.inputs[0], rank), _operand(graph, env, op.inputs[1], rank), op.attrs,
                  rounding)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    if all(i in ctx.known for i in op.inputs[:2]):
        raise tfl.Reject("both inputs are constants")
    (a, a_name), (b, b_name) = tfl.operand(ctx, op.inputs[0], "input 1"), tfl.operand(ctx, op.inputs[1], "input 2")
    y = ctx.act(op.outputs[0], "output")
    if max(len(a.shape), len(b.shape), len(y.shape)) > 4:
        raise tfl.Reject("more than 4 dimensions")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise tfl.Reject(f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    if tuple(shape) != y.shape:
        raise tfl.Reject(f"output shape {list(y.shape)}, expected {list(shape)}")
    attrs = mul_attrs(a.scale[0], int(a.zero_point[0]), b.scale[0], int(b.zero_point[0]), y.scale[0],
                      int(y.zero_point[0]), tfl.activation(op))
    return [tfl.LoweredOp(OpKind.MUL, [a_name, b_name], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x1, x2 = (e.graph.tensors[n] for n in op.inputs[:2])
    y = e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_mul_params", {k: getattr(a, k) for k in (
        "input1_offset", "input2_offset", "output_offset", "output_multiplier", "output_shift",
        "act_min", "act_max")})
    layer.call = (
        f"{kernel.function}({params}, {e.dims(layer, 'in1', x1.shape)}, {e.operand(layer, op, 0)}, "
        f"{e.dims(layer, 'in2', x2.shape)}, {e.operand(layer, op, 1)}, "
        f"{e.dims(layer, 'out', y.shape)}, {e.buf(y.name)})"
    )


OPS = (
    OpDef(
        kind=OpKind.MUL,
        attrs=MulAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_mul_s8", "mul_s8.c"),
        tflite={"MUL": _lower},
    ),
)
