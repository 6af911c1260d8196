"""RESIZE_NEAREST_NEIGHBOR: int8 nearest-neighbour resize of NHWC (TFLite Micro copies the
values; input and output share their quantization). TFLite computes each source index in
float32 (align_corners / half_pixel_centers); mcuqp evaluates that formula at compile time
with the same float32 operations and hands the C kernel integer index maps, so no float
runs on the device.

C kernel: `mcuqp_resize_nearest_neighbor_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding


@dataclass
class ResizeNearestAttrs:
    """Output row oh reads input row y_map[oh], output column ow input column x_map[ow]."""

    y_map: tuple[int, ...] = ()
    x_map: tuple[int, ...] = ()


def nearest_map(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> tuple[int, ...]:
    """TFLite's GetNearestNeighbor for every output index, in float32 as it computes it."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    out = []
    for i in range(out_size):
        v = float((f32(i) + offset) * scale)  # float32 product, exactly representable in double
        idx = int(np.sign(v) * np.floor(abs(v) + 0.5)) if align_corners else int(np.floor(v))
        idx = min(idx, in_size - 1)
        if half_pixel_centers:
            idx = max(0, idx)
        out.append(idx)
    return tuple(out)


def resize_attrs(in_hw: tuple[int, int], out_hw: tuple[int, int], align_corners: bool,
                 half_pixel_centers: bool) -> ResizeNearestAttrs:
    return ResizeNearestAttrs(nearest_map(in_hw[0], out_hw[0], align_corners, half_pixel_centers),
                              nearest_map(in_hw[1], out_hw[1], align_corners, half_pixel_centers))


def resize_nearest_neighbor_s8(x: np.ndarray, attrs: ResizeNearestAttrs) -> np.ndarray:
    """(N, H, W, C) int8 -> (N, len(y_map), len(x_map), C)."""
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"resize takes a 4-D int8 input, got {x.dtype} {x.shape}")
    ym, xm = np.asarray(attrs.y_map, np.int64), np.asarray(attrs.x_map, np.int64)
    if (ym.size and (ym.min() < 0 or ym.max() >= x.shape[1])) or (xm.size and (xm.min() < 0 or xm.max() >= x.shape[2])):
        raise UnsupportedModelError(f"resize index maps read outside a {x.shape[1]}x{x.shape[2]} input")
    return np.ascontiguousarray(x[:, ym][:, :, xm])


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return resize_nearest_neighbor_s8(env[op.inputs[0]], op.attrs)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    if len(op.inputs) != 2:
        raise tfl.Reject(f"{len(op.inputs)} inputs, expected the tensor and size")
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    tfl.rank4(x, "input")
    tfl.rank4(y, "output")
    if not tfl.same_qparams(x, y):
        raise tfl.Reject("input and output quantization differ")
    s = ctx.const(op.inputs[1], "size", tfl.INT32)
    size = tuple(int(v) for v in ctx.known[s.index].reshape(-1))
    if size != tuple(y.shape[1:3]) or y.shape[3] != x.shape[3]:
        raise tfl.Reject(f"size {list(size)} / output {list(y.shape)} do not match the input {list(x.shape)}")
    attrs = resize_attrs(x.shape[1:3], size, bool(op.options["AlignCorners"]), bool(op.options["HalfPixelCenters"]))
    return [tfl.LoweredOp(OpKind.RESIZE_NEAREST_NEIGHBOR, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]),
                          attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    ym = e.const(layer, "y_map", np.array(op.attrs.y_map, np.int32), weight=False)
    xm = e.const(layer, "x_map", np.array(op.attrs.x_map, np.int32), weight=False)
    layer.call = (f"{kernel.function}({e.dims(layer, 'in', x.shape)}, {e.buf(x.name)}, {ym}, {xm}, "
                  f"{e.dims(layer, 'out', y.shape)}, {e.buf(y.name)})")


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    a = op.params["resize"]
    return xs[0][:, list(a.y_map)][:, :, list(a.x_map)]


def _from_float(op, ins, y_q, rounding, weight_scales) -> ResizeNearestAttrs:
    return op.params["resize"]


OPS = (
    OpDef(
        kind=OpKind.RESIZE_NEAREST_NEIGHBOR,
        attrs=ResizeNearestAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_resize_nearest_neighbor_s8", "resize_nearest_neighbor_s8.c"),
        float_run=_float_run,
        from_float=_from_float,
        output_qparams="shared",
        tflite={"RESIZE_NEAREST_NEIGHBOR": _lower},
    ),
)
