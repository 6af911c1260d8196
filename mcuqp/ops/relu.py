"""RELU / RELU6 / RELU_N1_TO_1 as standalone int8 ops: requantize the input to the output
quantization, then clamp to the activation's range, as TFLite's int8 activation kernels do.

One kernel serves all three; the lowerers differ only in how they derive the integers:
- RELU (TFLM CalculateReluOpData): multiplier = in_scale / out_scale, range [out_zp + q(0), 127]
  in the output quantization.
- RELU6 (TFLM Relu6Prepare): no requantization at all; the int8 input is clamped to
  [in_zp, in_zp + round(6 / in_scale)] in the input quantization (TFLite converters give RELU6
  equal input and output quantization). Here that is the same kernel with multiplier 1.0.
- RELU_N1_TO_1: TFLite Micro has no kernel for it; TFLite's QuantizedReluX is used:
  multiplier = in_scale / out_scale, range [q(-1), q(1)] in the output quantization.

C kernel: `mcuqp_relu_s8` (portable).
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
class ReluAttrs:
    """y = clamp(output_zero_point + MBQM(x - input_zero_point, multiplier, shift), act_min, act_max)."""

    activation: str = "relu"  # relu, relu6 or relu_n1_to_1 (for reports; the integers below decide)
    input_zero_point: int = 0
    output_zero_point: int = 0
    multiplier: int = 0
    shift: int = 0
    act_min: int = -128
    act_max: int = 127


def relu_attrs(activation: str, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> ReluAttrs:
    """The Prepare of TFLite Micro's RELU and RELU6 and of TFLite's RELU_N1_TO_1 (see module doc)."""
    if activation == "relu6":  # TFLM clamps in the input quantization, ignoring the output's
        out_scale, out_zp = in_scale, in_zp
    m, sh = quantize_multiplier(double(in_scale) / double(out_scale))
    lo, hi = activation_range(activation, out_scale, out_zp)
    return ReluAttrs(activation=activation, input_zero_point=int(in_zp), output_zero_point=int(out_zp),
                     multiplier=m, shift=sh, act_min=lo, act_max=hi)


def relu_s8(x: np.ndarray, attrs: ReluAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"{attrs.activation} takes int8, got {x.dtype}")
    if attrs.multiplier < 0 or attrs.act_min > attrs.act_max:
        raise UnsupportedModelError(f"{attrs.activation}: negative multiplier or empty range")
    y = multiply_by_quantized_multiplier(x.astype(np.int64) - attrs.input_zero_point, attrs.multiplier, attrs.shift,
                                         rounding) + attrs.output_zero_point
    return np.clip(y, attrs.act_min, attrs.act_max).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return relu_s8(env[op.inputs[0]], op.attrs, rounding)


def _lowerer(activation: str):
    def lower(ctx, op) -> list[tfl.LoweredOp]:
        x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
        if x.shape != y.shape:
            raise tfl.Reject(f"{activation} changes the shape")
        attrs = relu_attrs(activation, x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]))
        return [tfl.LoweredOp(OpKind.RELU, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]

    return lower


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_relu_params", {k: getattr(a, k) for k in (
        "input_zero_point", "output_zero_point", "multiplier", "shift", "act_min", "act_max")})
    layer.call = f"{kernel.function}({params}, {y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.RELU,
        attrs=ReluAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_relu_s8", "relu_s8.c"),
        tflite={"RELU": _lowerer("relu"), "RELU6": _lowerer("relu6"), "RELU_N1_TO_1": _lowerer("relu_n1_to_1")},
    ),
)
