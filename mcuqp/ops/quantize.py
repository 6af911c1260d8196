"""QUANTIZE (int8 -> int8): TFLite's Requantize, a change of scale and zero point.

C kernel: `mcuqp_quantize_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import double
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, quantize_multiplier


@dataclass
class QuantizeAttrs:
    """int8 -> int8 QUANTIZE (TFLite Requantize): y = clamp(MBQM(x + input_offset) + output_offset)."""

    input_offset: int = 0
    output_offset: int = 0
    multiplier: int = 0
    shift: int = 0


def quantize_attrs(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> QuantizeAttrs:
    m, sh = quantize_multiplier(double(in_scale) / double(out_scale))
    return QuantizeAttrs(input_offset=-in_zp, output_offset=out_zp, multiplier=m, shift=sh)


def quantize_s8(x: np.ndarray, attrs: QuantizeAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"quantize takes int8, got {x.dtype}")
    if attrs.multiplier < 0:
        raise UnsupportedModelError(f"quantize multiplier {attrs.multiplier} is negative")
    y = multiply_by_quantized_multiplier(x.astype(np.int64) + attrs.input_offset, attrs.multiplier, attrs.shift,
                                         rounding)
    return np.clip(y + attrs.output_offset, -128, 127).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return quantize_s8(env[op.inputs[0]], op.attrs, rounding)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise tfl.Reject("quantize changes the shape")
    attrs = quantize_attrs(x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]))
    return [tfl.LoweredOp(OpKind.QUANTIZE, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_quantize_params", {k: getattr(a, k) for k in (
        "input_offset", "output_offset", "multiplier", "shift")})
    layer.call = f"{kernel.function}({params}, {y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.QUANTIZE,
        attrs=QuantizeAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_quantize_s8", "quantize_s8.c"),
        tflite={"QUANTIZE": _lower},
    ),
)
