"""LOGISTIC: int8 sigmoid exactly as TFLite Micro's reference kernel: the input is scaled to
a gemmlowp FixedPoint<int32, 4>, gemmlowp's logistic gives a FixedPoint<int32, 0>, which
is rounded to 1/256 steps (output scale 1/256, zero point -128).

C kernel: `mcuqp_logistic_s8` (portable).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import double
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import (
    INT32_MAX,
    Rounding,
    exp_on_negative_values,
    multiply_by_quantized_multiplier,
    one_over_one_plus_x_for_x_in_0_1,
    round_half_away,
    rounding_divide_by_pot,
    wrap_int32,
)


@dataclass
class LogisticAttrs:
    """TFLite Micro int8 LOGISTIC; output scale 1/256, zero point -128. The input minus its
    zero point is scaled to gemmlowp FixedPoint<int32, 4> by (input_multiplier,
    input_left_shift); |x - zp| >= input_range_radius saturates."""

    input_zero_point: int = 0
    input_multiplier: int = 0
    input_left_shift: int = 0
    input_range_radius: int = 0


def logistic_attrs(in_scale: float, in_zp: int) -> LogisticAttrs:
    """TFLM int8 LOGISTIC Prepare: in_scale * 2^27 split by frexp into a Q31 multiplier and a
    left shift (no QuantizeMultiplier normalisation), radius = CalculateInputRadius(4, shift)."""
    q, left_shift = math.frexp(double(in_scale) * float(1 << 27))
    if not 0 <= left_shift <= 62:
        raise tfl.Reject(f"input scale {in_scale} is out of range for int8 logistic")
    radius = math.floor(15.0 * float(1 << 27) / float(1 << left_shift))
    return LogisticAttrs(input_zero_point=in_zp, input_multiplier=int(wrap_int32(round_half_away(q * (1 << 31)))),
                         input_left_shift=left_shift, input_range_radius=radius)


INPUT_INTEGER_BITS = 4
OUTPUT_INTEGER_BITS = 8


def gemmlowp_logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::logistic of FixedPoint<int32, integer_bits> raws -> FixedPoint<int32, 0> raws:
    1 / (1 + exp(-|a|)) for a > 0, one minus that for a < 0, exactly 1/2 at 0."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    magnitude = np.where(positive, a, -a)
    on_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-magnitude, integer_bits))
    result = np.where(positive, on_positive, INT32_MAX - on_positive)
    return np.where(a == 0, 1 << 30, result)


def logistic_s8(x: np.ndarray, attrs: LogisticAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"logistic takes int8, got {x.dtype}")
    if attrs.input_range_radius < 0:
        raise UnsupportedModelError(f"logistic input radius {attrs.input_range_radius} is negative")
    centred = x.astype(np.int64) - attrs.input_zero_point
    inside = np.abs(centred) < attrs.input_range_radius
    # Outside the radius the result saturates; keep those lanes at 0 so nothing overflows.
    q4 = multiply_by_quantized_multiplier(np.where(inside, centred, 0), attrs.input_multiplier,
                                          attrs.input_left_shift, rounding)
    q0 = gemmlowp_logistic(q4, INPUT_INTEGER_BITS)
    y = np.clip(rounding_divide_by_pot(q0, 31 - OUTPUT_INTEGER_BITS) - 128, -128, 127)
    y = np.where(centred <= -attrs.input_range_radius, -128, np.where(centred >= attrs.input_range_radius, 127, y))
    return y.astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return logistic_s8(env[op.inputs[0]], op.attrs, rounding)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise tfl.Reject("logistic changes the shape")
    if int(y.zero_point[0]) != -128 or np.float32(y.scale[0]) != np.float32(1.0 / 256):
        raise tfl.Reject(f"output quantization ({y.scale[0]}, {y.zero_point[0]}) must be (1/256, -128)")
    attrs = logistic_attrs(x.scale[0], int(x.zero_point[0]))
    return [tfl.LoweredOp(OpKind.LOGISTIC, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_logistic_params", {k: getattr(a, k) for k in (
        "input_zero_point", "input_multiplier", "input_left_shift", "input_range_radius")})
    layer.call = f"{kernel.function}({params}, {y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OUTPUT = QParams(np.float32(1.0 / 256.0), -128)  # fixed by TFLite


OPS = (
    OpDef(
        kind=OpKind.LOGISTIC,
        attrs=LogisticAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_logistic_s8", "logistic_s8.c"),
        output_qparams=OUTPUT,
        tflite={"LOGISTIC": _lower},
    ),
)
