"""ADD: elementwise int8 addition (TFLite int8 reference semantics) with TFLite's
broadcasting (`mcuqp.ops.broadcast`); either input may be a constant. Both inputs are
rescaled to a common 2^left_shift-scaled domain. The planner may write the output over an
input of the output's size that dies at the add (element i of both inputs is read before
element i is written).

C kernels: `mcuqp_add_s8` (two activations of one shape; Helium variant) and
`mcuqp_add_broadcast_s8` (any other shape pair or a constant input; portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import broadcast
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import activation_range, float_activation
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import (
    Rounding,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_smaller_than_one_exp,
    quantize_multiplier,
    wrap_int32,
)


@dataclass
class AddAttrs:
    """TFLite int8 ADD: both inputs rescaled to a common 2^left_shift-scaled domain."""

    left_shift: int = 20
    input1_offset: int = 0
    input1_multiplier: int = 0
    input1_shift: int = 0
    input2_offset: int = 0
    input2_multiplier: int = 0
    input2_shift: int = 0
    output_offset: int = 0
    output_multiplier: int = 0
    output_shift: int = 0
    act_min: int = -128
    act_max: int = 127


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


def _scale(x: np.ndarray, multiplier: int, shift: int, rounding: Rounding) -> np.ndarray:
    if rounding == "single":
        return multiply_by_quantized_multiplier(x, multiplier, shift, "single")
    return multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, shift)


def _check(attrs: AddAttrs) -> None:
    if not 0 <= attrs.left_shift <= 31:
        raise UnsupportedModelError(f"add left_shift {attrs.left_shift} is outside [0, 31]")
    for name in ("input1", "input2", "output"):
        m, s = getattr(attrs, f"{name}_multiplier"), getattr(attrs, f"{name}_shift")
        if m < 0 or not -31 <= s <= 0:
            raise UnsupportedModelError(f"add {name} multiplier {m} shift {s}: the real multiplier must be in [0, 1)")


def add_s8(x1: np.ndarray, x2: np.ndarray, attrs: AddAttrs, rounding: Rounding = "double",
           sign: int = 1) -> np.ndarray:
    """y = clamp(M_out(M_1((x1 + off1) << ls) + sign * M_2((x2 + off2) << ls)) + out_off); x1
    and x2 broadcast like numpy (TFLite's rule). sign -1 is SUB."""
    x1, x2 = np.asarray(x1), np.asarray(x2)
    if x1.dtype != np.int8 or x2.dtype != np.int8:
        raise UnsupportedModelError(f"add takes int8 inputs, got {x1.dtype} and {x2.dtype}")
    try:
        x1, x2 = np.broadcast_arrays(x1, x2)
    except ValueError:
        raise UnsupportedModelError(f"add shapes {x1.shape} and {x2.shape} do not broadcast") from None
    _check(attrs)
    a1 = wrap_int32((x1.astype(np.int64) + attrs.input1_offset) << attrs.left_shift)
    a2 = wrap_int32((x2.astype(np.int64) + attrs.input2_offset) << attrs.left_shift)
    s1 = _scale(a1, attrs.input1_multiplier, attrs.input1_shift, rounding)
    s2 = _scale(a2, attrs.input2_multiplier, attrs.input2_shift, rounding)
    raw = _scale(wrap_int32(s1 + sign * s2), attrs.output_multiplier, attrs.output_shift, rounding)
    y = wrap_int32(raw + attrs.output_offset)
    return np.clip(y, attrs.act_min, attrs.act_max).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return add_s8(*broadcast.operands(graph, op, env), op.attrs, rounding)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    return float_activation(xs[0] + xs[1], op.activation).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None) -> AddAttrs:
    x, x2 = ins
    return add_attrs(x.quant.s, x.quant.zp, x2.quant.s, x2.quant.zp, y_q.s, y_q.zp, op.activation)


def lower_add_sub(kind: OpKind):
    """The lowerer of TFLite ADD / SUB (one formula; either input may be a constant)."""

    def lower(ctx, op) -> list[tfl.LoweredOp]:
        if all(i in ctx.known for i in op.inputs[:2]):
            raise tfl.Reject("both inputs are constants")
        (a, a_name), (b, b_name) = tfl.operand(ctx, op.inputs[0], "input 1"), tfl.operand(ctx, op.inputs[1], "input 2")
        y = ctx.act(op.outputs[0], "output")
        broadcast.output_shape(a.shape, b.shape, y.shape)
        attrs = add_attrs(a.scale[0], int(a.zero_point[0]), b.scale[0], int(b.zero_point[0]),
                          y.scale[0], int(y.zero_point[0]), tfl.activation(op))
        return [tfl.LoweredOp(kind, [a_name, b_name], ctx.ir_act(op.outputs[0]), attrs)]

    return lower


PARAM_FIELDS = ("left_shift", "input1_offset", "input1_multiplier", "input1_shift", "input2_offset",
                "input2_multiplier", "input2_shift", "output_offset", "output_multiplier", "output_shift",
                "act_min", "act_max")
BROADCAST = KernelVariant("mcuqp_add_broadcast_s8", "add_broadcast_s8.c")


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x1, x2 = (e.graph.tensors[n] for n in op.inputs[:2])
    y = e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_add_params", {k: getattr(a, k) for k in PARAM_FIELDS})
    a1, a2 = e.operand(layer, op, 0), e.operand(layer, op, 1)
    if x1.shape == x2.shape == y.shape and not (x1.is_const or x2.is_const):
        layer.call = f"{kernel.function}({params}, {y.size}, {a1}, {a2}, {e.buf(y.name)})"
        return
    layer.kernel = BROADCAST
    layer.call = f"{BROADCAST.function}({params}, {broadcast.emit(e, layer, op)}, {a1}, {a2}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.ADD,
        attrs=AddAttrs,
        reference=_reference,
        emit=_emit,
        kernels=(*variants("mcuqp_add_s8", "add_s8.c", isa=("mve",)), BROADCAST),
        alias="elementwise",
        float_run=_float_run,
        from_float=_from_float,
        fuses_activation=True,
        tflite={"ADD": lower_add_sub(OpKind.ADD)},
    ),
)
