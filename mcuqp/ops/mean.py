"""MEAN: int8 mean over H and W (global average pooling) as TFLite Micro computes it: the
sum of each channel, minus count * zero point, requantized by a multiplier that folds in
1/count. Outputs (1, 1, 1, C) or (1, C). Any run of consecutive axes after the batch of a
rank 2-5 tensor reduces the same way (e.g. the length of a Conv1D's (1, L, C) output): the
tensor is seen as (outer, H, W, inner) with the reduced axes in H and W.

C kernel: `mcuqp_mean_s8` (portable).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import double
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, quantize_multiplier


@dataclass
class MeanAttrs:
    """TFLite Micro int8 MEAN over H and W of an NHWC input; outputs (1, 1, 1, C) or (1, C).
    y = clamp(MBQM(sum + count * input_offset, multiplier, shift) + output_offset), where
    (multiplier, shift) already includes TFLM's 1/count adjustment of in_scale/out_scale."""

    count: int = 1  # H * W of the input
    input_offset: int = 0
    output_offset: int = 0
    multiplier: int = 0
    shift: int = 0
    axes: tuple[int, ...] = (1, 2)  # the reduced axes of the graph's tensor, consecutive, after the batch


def mean_view(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(outer, h, w, inner): `shape` with its consecutive reduced `axes` in h * w (the last
    reduced axis in w), what the C kernel's NHWC mean over h and w reads."""
    a0, a1 = min(axes), max(axes)
    if sorted(axes) != list(range(a0, a1 + 1)) or a0 < 1 or a1 >= len(shape):
        raise UnsupportedModelError(f"mean over axes {list(axes)} of a rank-{len(shape)} tensor: mcuqp reduces "
                                    "consecutive axes after the batch")
    return (math.prod(shape[:a0]), math.prod(shape[a0:a1]), shape[a1], math.prod(shape[a1 + 1:]))


def mean_attrs(in_scale: float, in_zp: int, out_scale: float, out_zp: int, count: int) -> MeanAttrs:
    """TFLM int8 MEAN: QuantizeMultiplier(in/out), then QuantizedMeanOrSum folds 1/count into
    it: shift by floor(log2(count)) (at most 32, and keeping shift >= -31) and divide."""
    m, sh = quantize_multiplier(double(in_scale) / double(out_scale))
    k = min(count.bit_length() - 1, 32, 31 + sh)
    return MeanAttrs(count=count, input_offset=-in_zp, output_offset=out_zp,
                     multiplier=int((m << k) // count), shift=sh - k)


def mean_s8(x: np.ndarray, attrs: MeanAttrs, rounding: Rounding = "double") -> np.ndarray:
    """(N, H, W, C) int8 -> (N, C) int8."""
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"mean takes a 4-D int8 input, got {x.dtype} {x.shape}")
    if x.shape[1] * x.shape[2] != attrs.count:
        raise UnsupportedModelError(f"mean over {x.shape[1]}x{x.shape[2]} with parameters for {attrs.count} values")
    if attrs.multiplier < 0 or not -31 <= attrs.shift <= 30:
        raise UnsupportedModelError(f"mean multiplier {attrs.multiplier} shift {attrs.shift} out of range")
    total = x.astype(np.int64).sum(axis=(1, 2)) + attrs.count * attrs.input_offset
    y = multiply_by_quantized_multiplier(total, attrs.multiplier, attrs.shift, rounding) + attrs.output_offset
    return np.clip(y, -128, 127).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    x = env[op.inputs[0]]
    view = mean_view(graph.tensors[op.inputs[0]].shape, op.attrs.axes)
    y = mean_s8(x.reshape((x.shape[0] * view[0], *view[1:])), op.attrs, rounding)
    return y.reshape((x.shape[0], *graph.tensors[op.outputs[0]].shape[1:]))


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    rank = len(x.shape)
    if not 2 <= rank <= 5:
        raise tfl.Reject(f"input '{x.name}' has rank {rank}; mcuqp reduces tensors of rank 2 to 5")
    axes = ctx.const(op.inputs[1], "axis", tfl.INT32)
    off = tfl.lead(ctx, op.inputs[0])  # a rank-1 input imported as (1, C)
    resolved = tuple(sorted({int(a) % (rank - off) + off for a in ctx.known[axes.index].reshape(-1)}))
    try:
        _, h, w, _ = mean_view(x.shape, resolved)
    except UnsupportedModelError as e:
        raise tfl.Reject(str(e)) from None
    keep = tuple(1 if d in resolved else n for d, n in enumerate(x.shape))
    expected = keep if op.options["KeepDims"] else tuple(n for d, n in enumerate(x.shape) if d not in resolved)
    if y.shape != expected:
        raise tfl.Reject(f"output shape {list(y.shape)}, expected {list(expected)}")
    attrs = replace(mean_attrs(x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]), h * w),
                    axes=resolved)
    return [tfl.LoweredOp(OpKind.MEAN, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_mean_params", {k: getattr(a, k) for k in (
        "count", "input_offset", "output_offset", "multiplier", "shift")})
    layer.call = (f"{kernel.function}({params}, {e.dims(layer, 'in', mean_view(x.shape, a.axes))}, {e.buf(x.name)}, "
                  f"{e.buf(y.name)})")


OPS = (
    OpDef(
        kind=OpKind.MEAN,
        attrs=MeanAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_mean_s8", "mean_s8.c"),
        tflite={"MEAN": _lower},
    ),
)
