"""MAX_POOL2D and AVG_POOL2D: int8 NHWC pooling (TFLite int8 reference semantics).

Windows cover only the in-bounds part of the input: padding never wins a max and is
not counted in an average. The output size follows from the explicit padding:
OH = (H + top + bottom - FH) // stride_h + 1. Input and output share their quantization.

C kernels: `mcuqp_max_pool2d_s8`, `mcuqp_avg_pool2d_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, Padding, QParams, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import activation_range, float_activation, float_pad, float_windows
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding


@dataclass
class PoolAttrs:
    """max/avg pool; input and output share scale and zero point (TFLite rule)."""

    filter: tuple[int, int]  # (h, w)
    stride: tuple[int, int]
    padding: Padding
    act_min: int = -128
    act_max: int = 127


def pool_output_hw(h: int, w: int, attrs: PoolAttrs) -> tuple[int, int]:
    """(OH, OW) for an (h, w) input."""
    fh, fw = attrs.filter
    sh, sw = attrs.stride
    p = attrs.padding
    return (h + p.top + p.bottom - fh) // sh + 1, (w + p.left + p.right - fw) // sw + 1


def _windows(x: np.ndarray, attrs: PoolAttrs, fill: int) -> np.ndarray:
    """(N, OH, OW, C, FH, FW) int32 view of the padded input's windows."""
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"pooling takes int8 NHWC input, got {x.dtype} {x.shape}")
    fh, fw = attrs.filter
    sh, sw = attrs.stride
    p = attrs.padding
    if min(fh, fw, sh, sw) < 1 or min(p.top, p.bottom, p.left, p.right) < 0:
        raise UnsupportedModelError(f"invalid pooling filter {attrs.filter}, stride {attrs.stride} or padding {p}")
    if not -128 <= attrs.act_min <= attrs.act_max <= 127:
        raise UnsupportedModelError(f"invalid pooling clamp [{attrs.act_min}, {attrs.act_max}]")
    oh, ow = pool_output_hw(x.shape[1], x.shape[2], attrs)
    if oh < 1 or ow < 1:
        raise UnsupportedModelError(f"pooling window {attrs.filter} is larger than the padded input {x.shape[1:3]}")
    xp = np.pad(x.astype(np.int32), ((0, 0), (p.top, p.bottom), (p.left, p.right), (0, 0)), constant_values=fill)
    win = sliding_window_view(xp, (fh, fw), axis=(1, 2))
    return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def max_pool2d_s8(x: np.ndarray, attrs: PoolAttrs) -> np.ndarray:
    # -128 padding equals TFLite's "lowest" start value: it never beats a real input.
    m = _windows(x, attrs, -128).max(axis=(-2, -1))
    return np.clip(m, attrs.act_min, attrs.act_max).astype(np.int8)


def avg_pool2d_s8(x: np.ndarray, attrs: PoolAttrs) -> np.ndarray:
    s = _windows(x, attrs, 0).sum(axis=(-2, -1), dtype=np.int64)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.int8)
    count = _windows(ones, attrs, 0).sum(axis=(-2, -1), dtype=np.int64)
    if (count == 0).any():
        raise UnsupportedModelError("average pool has a window that lies entirely in the padding")
    half = count // 2
    # C division truncates toward zero: TFLite's round-half-away-from-zero average.
    avg = np.where(s > 0, (s + half) // count, -((half - s) // count))
    return np.clip(avg, attrs.act_min, attrs.act_max).astype(np.int8)


def _max_reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return max_pool2d_s8(env[op.inputs[0]], op.attrs)


def _avg_reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return avg_pool2d_s8(env[op.inputs[0]], op.attrs)


def _max_float(op, xs: list[np.ndarray]) -> np.ndarray:
    win = float_windows(float_pad(xs[0], op.padding, -np.inf), op, *op.filter)
    return float_activation(win.max(axis=(4, 5)), op.activation).astype(np.float32)


def _avg_float(op, xs: list[np.ndarray]) -> np.ndarray:
    # padding is excluded from the count (TFLite semantics)
    x = xs[0]
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.float32)
    s = float_windows(float_pad(x, op.padding, 0.0), op, *op.filter).sum(axis=(4, 5))
    n = float_windows(float_pad(ones, op.padding, 0.0), op, *op.filter).sum(axis=(4, 5))
    return float_activation(s / n, op.activation).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None) -> PoolAttrs:
    lo, hi = activation_range(op.activation, y_q.s, y_q.zp)
    return PoolAttrs(filter=op.filter, stride=op.stride, padding=op.padding, act_min=lo, act_max=hi)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    tfl.rank4(x, "input")
    if not tfl.same_qparams(x, y):
        raise tfl.Reject("input and output quantization differ (TFLite Micro requires them equal)")
    kh, kw = op.options["FilterHeight"], op.options["FilterWidth"]
    padding = tfl.window(op, x, y, kh, kw)
    if y.shape[3] != x.shape[3]:
        raise tfl.Reject("pooling changes the channel count")
    lo, hi = activation_range(tfl.activation(op), y.scale[0], int(y.zero_point[0]))
    attrs = PoolAttrs(filter=(kh, kw), stride=(op.options["StrideH"], op.options["StrideW"]),
                         padding=padding, act_min=lo, act_max=hi)
    kind = OpKind.AVG_POOL2D if op.opcode == "AVERAGE_POOL_2D" else OpKind.MAX_POOL2D
    return [tfl.LoweredOp(kind, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_pool_params", {
        "stride_h": a.stride[0], "stride_w": a.stride[1],
        "pad_h": a.padding.top, "pad_w": a.padding.left,
        "filter_h": a.filter[0], "filter_w": a.filter[1],
        "act_min": a.act_min, "act_max": a.act_max,
    })
    layer.call = (
        f"{kernel.function}({params}, {e.dims(layer, 'in', x.shape)}, {e.buf(x.name)}, "
        f"{e.dims(layer, 'out', y.shape)}, {e.buf(y.name)})"
    )


OPS = (
    OpDef(
        kind=OpKind.MAX_POOL2D,
        attrs=PoolAttrs,
        reference=_max_reference,
        emit=_emit,
        kernels=variants("mcuqp_max_pool2d_s8", "max_pool2d_s8.c"),
        float_run=_max_float,
        from_float=_from_float,
        output_qparams="shared",
        fuses_activation=True,
        tflite={"MAX_POOL_2D": _lower},
    ),
    OpDef(
        kind=OpKind.AVG_POOL2D,
        attrs=PoolAttrs,
        reference=_avg_reference,
        emit=_emit,
        kernels=variants("mcuqp_avg_pool2d_s8", "avg_pool2d_s8.c", isa=("mve",)),
        float_run=_avg_float,
        from_float=_from_float,
        output_qparams="shared",
        fuses_activation=True,
        tflite={"AVERAGE_POOL_2D": _lower},
    ),
)
