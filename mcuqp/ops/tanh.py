"""TANH: int8 tanh exactly as TFLite Micro's reference kernel: the input is scaled to a
gemmlowp FixedPoint<int32, 4> (LOGISTIC's prepare formula, `mcuqp.ops.logistic`), gemmlowp's
tanh gives a FixedPoint<int32, 0>, which is rounded to 1/128 steps (output scale 1/128, zero
point 0).

From torch: `nn.Tanh`, `torch.tanh`. C kernel: `mcuqp_tanh_s8` (portable).
"""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.logistic import INPUT_INTEGER_BITS, LogisticAttrs, logistic_attrs
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import (
    Rounding,
    exp_on_negative_values,
    multiply_by_quantized_multiplier,
    one_minus_x_over_one_plus_x_for_x_in_0_1,
    rounding_divide_by_pot,
)

OUTPUT_FRACTIONAL_BITS = 7
OUTPUT = QParams(np.float32(1.0 / 128.0), 0)  # fixed by TFLite


def gemmlowp_tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::tanh of FixedPoint<int32, integer_bits> raws -> FixedPoint<int32, 0> raws:
    (1 - e) / (1 + e) with e = exp(-2|a|) (the raw of -|a| read with one more integer bit),
    negated for a < 0, exactly 0 at 0."""
    a = np.asarray(a, dtype=np.int64)
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-np.abs(a), integer_bits + 1))
    return np.where(a == 0, 0, np.where(a < 0, -t, t))


def tanh_s8(x: np.ndarray, attrs: LogisticAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"tanh takes int8, got {x.dtype}")
    if attrs.input_range_radius < 0:
        raise UnsupportedModelError(f"tanh input radius {attrs.input_range_radius} is negative")
    d = x.astype(np.int64) - attrs.input_zero_point
    inside = np.abs(d) < attrs.input_range_radius
    q4 = multiply_by_quantized_multiplier(np.where(inside, d, 0), attrs.input_multiplier, attrs.input_left_shift,
                                          rounding)
    y = np.clip(rounding_divide_by_pot(gemmlowp_tanh(q4, INPUT_INTEGER_BITS), 31 - OUTPUT_FRACTIONAL_BITS),
                -128, 127)
    y = np.where(d <= -attrs.input_range_radius, -128, np.where(d >= attrs.input_range_radius, 127, y))
    return y.astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return tanh_s8(env[op.inputs[0]], op.attrs, rounding)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise tfl.Reject("tanh changes the shape")
    if int(y.zero_point[0]) != 0 or np.float32(y.scale[0]) != OUTPUT.scale[0]:
        raise tfl.Reject(f"output quantization ({y.scale[0]}, {y.zero_point[0]}) must be (1/128, 0)")
    attrs = logistic_attrs(x.scale[0], int(x.zero_point[0]))
    return [tfl.LoweredOp(OpKind.TANH, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding,
                weight_scales: np.ndarray | None) -> LogisticAttrs:
    try:
        return logistic_attrs(ins[0].quant.s, ins[0].quant.zp)
    except tfl.Reject as e:
        raise UnsupportedModelError(f"{op.name}: {e}") from None


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_logistic_params", {k: getattr(a, k) for k in (
        "input_zero_point", "input_multiplier", "input_left_shift", "input_range_radius")})
    layer.call = f"{kernel.function}({params}, {y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.TANH,
        attrs=LogisticAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_tanh_s8", "tanh_s8.c"),
        output_qparams=OUTPUT,
        float_run=lambda op, xs: np.tanh(xs[0]).astype(np.float32),
        from_float=_from_float,
        tflite={"TANH": _lower},
    ),
)
