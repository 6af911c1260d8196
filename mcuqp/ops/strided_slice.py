"""STRIDED_SLICE, SPLIT, SPLIT_V: int8 slices of a rank <= 5 tensor. Begin, end, strides
and the begin / end / shrink-axis masks are resolved at import exactly as TFLite Micro's
StartForAxis / StopForAxis resolve them (negative indices, clamping, negative strides), to
a first index, a stride and a count per axis. SPLIT and SPLIT_V become one slice per
output. Input and outputs share their quantization (TFLite Micro copies the values), so
every slice is a copy; a slice that keeps every value in order is imported as a RESHAPE (a
view: no code runs).

C kernel: `mcuqp_strided_slice_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.ops.reshape import ReshapeAttrs
from mcuqp.quant.fixedpoint import Rounding

MAX_RANK = 5
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


@dataclass
class StridedSliceAttrs:
    """Resolved slice, one entry per input axis (batch included): output index i along
    axis d reads input index begin[d] + i * strides[d], for i < sizes[d]. The output
    tensor may drop axes of size 1 (shrink_axis_mask); the data order is the same."""

    begin: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    sizes: tuple[int, ...] = ()


def strided_slice_s8(x: np.ndarray, attrs: StridedSliceAttrs) -> np.ndarray:
    """One tensor (not a batch) of rank len(begin) <= 5, sliced to shape `sizes`."""
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != len(attrs.begin) or x.ndim > MAX_RANK:
        raise UnsupportedModelError(f"strided slice of a {x.dtype} {x.shape} tensor with {attrs}")
    index = []
    for d, (b, s, n) in enumerate(zip(attrs.begin, attrs.strides, attrs.sizes)):
        idx = b + s * np.arange(n, dtype=np.int64)
        if s == 0 or n < 0 or (n and (idx.min() < 0 or idx.max() >= x.shape[d])):
            raise UnsupportedModelError(f"slice {b}:{s}x{n} reads outside axis {d} of size {x.shape[d]}")
        index.append(idx)
    return np.ascontiguousarray(x[np.ix_(*index)])


def resolve(shape: tuple[int, ...], begin, end, strides, begin_mask: int, end_mask: int,
            shrink_mask: int) -> StridedSliceAttrs:
    """TFLite's StartForAxis / StopForAxis for every axis, as a first index, stride, count."""
    b_out, s_out, n_out = [], [], []
    for d, size in enumerate(shape):
        s = int(strides[d])
        if s == 0:
            raise UnsupportedModelError(f"stride 0 on axis {d}")
        start = int(begin[d])
        if begin_mask >> d & 1:
            start = _INT_MIN if s > 0 else _INT_MAX
        if start < 0:
            start += size
        start = min(max(start, 0), size) if s > 0 else min(max(start, -1), size - 1)
        if shrink_mask >> d & 1:
            stop = start + 1
        else:
            stop = int(end[d])
            if end_mask >> d & 1:
                stop = _INT_MAX if s > 0 else _INT_MIN
            if stop < 0:
                stop += size
            stop = min(max(stop, 0), size) if s > 0 else min(max(stop, -1), size - 1)
        n = max(0, -(-(stop - start) // s)) if s > 0 else max(0, -(-(start - stop) // -s))
        if n and not (0 <= start < size and 0 <= start + (n - 1) * s < size):
            raise UnsupportedModelError(f"the slice of axis {d} reads outside its {size} values "
                                        "(TFLite Micro would read out of bounds)")
        b_out.append(start if n else 0)
        s_out.append(s)
        n_out.append(n)
    return StridedSliceAttrs(tuple(b_out), tuple(s_out), tuple(n_out))


def keeps_order(shape: tuple[int, ...], a: StridedSliceAttrs) -> bool:
    """Whether the slice is the whole input in its order (a view)."""
    return all(n == size and (b == 0 and s == 1 or size == 1)
               for size, b, s, n in zip(shape, a.begin, a.strides, a.sizes))


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    x = env[op.inputs[0]]
    shape = graph.tensors[op.outputs[0]].shape
    return np.stack([strided_slice_s8(x[n:n + 1], op.attrs) for n in range(x.shape[0])]).reshape(
        (x.shape[0], *shape[1:]))


def _slice_op(ctx, x_index: int, out_index: int, attrs: StridedSliceAttrs, suffix: str = "") -> tfl.LoweredOp:
    x, y = ctx.t(x_index), ctx.act(out_index, "output")
    if not tfl.same_qparams(x, y):
        raise tfl.Reject(f"output '{y.name}' has a different quantization than the input")
    if int(np.prod(attrs.sizes)) != int(np.prod(y.shape)) or [n for n in attrs.sizes if n != 1] != [
            n for n in y.shape if n != 1]:
        raise tfl.Reject(f"output shape {list(y.shape)} does not match the slice {list(attrs.sizes)}")
    ins, out = [ctx.ir_act(x_index)], ctx.ir_act(out_index)
    if keeps_order(x.shape, attrs):
        return tfl.LoweredOp(OpKind.RESHAPE, ins, out, ReshapeAttrs(new_shape=tuple(y.shape)), suffix)
    return tfl.LoweredOp(OpKind.STRIDED_SLICE, ins, out, attrs, suffix)


def _input(ctx, index: int):
    x = ctx.act(index, "input")
    if len(x.shape) > MAX_RANK:
        raise tfl.Reject(f"{len(x.shape)} dimensions (at most {MAX_RANK})")
    return x


def _lower_strided_slice(ctx, op) -> list[tfl.LoweredOp]:
    if len(op.inputs) != 4:
        raise tfl.Reject(f"{len(op.inputs)} inputs, expected the tensor, begin, end and strides")
    x = _input(ctx, op.inputs[0])
    o = op.options
    if o["EllipsisMask"] or o["NewAxisMask"] or o["Offset"]:
        raise tfl.Reject("ellipsis / new-axis masks and offset are not supported")
    off = tfl.lead(ctx, op.inputs[0])  # a rank-1 input: the batch axis is not in the vectors
    vectors = []
    for i, role, first in zip(op.inputs[1:4], ("begin", "end", "strides"), (0, 1, 1)):
        v = ctx.known[ctx.const(i, role, tfl.INT32).index].reshape(-1)
        if v.size != len(x.shape) - off:
            raise tfl.Reject(f"{role} has {v.size} values for a {len(x.shape) - off}-D input")
        vectors.append(np.concatenate([[first] * off, v]))
    try:
        attrs = resolve(x.shape, *vectors, o["BeginMask"] << off, o["EndMask"] << off, o["ShrinkAxisMask"] << off)
    except UnsupportedModelError as e:
        raise tfl.Reject(str(e)) from None
    if any(n < 1 for n in attrs.sizes):
        raise tfl.Reject(f"the slice is empty ({list(attrs.sizes)})")
    return [_slice_op(ctx, op.inputs[0], op.outputs[0], attrs)]


def _axis(ctx, index: int, x_index: int) -> int:
    off = tfl.lead(ctx, x_index)
    rank = len(ctx.t(x_index).shape) - off
    a = ctx.known[ctx.const(index, "axis", tfl.INT32).index].reshape(-1)
    if a.size != 1 or not -rank <= int(a[0]) < rank:
        raise tfl.Reject(f"axis {a.tolist()} of a {rank}-D input")
    return int(a[0]) % rank + off


def _split(ctx, op, x_index: int, axis_index: int, sizes: list[int]) -> list[tfl.LoweredOp]:
    x = _input(ctx, x_index)
    axis = _axis(ctx, axis_index, x_index)
    if not sizes or len(sizes) != len(op.outputs) or sum(sizes) != x.shape[axis] or min(sizes) < 1:
        raise tfl.Reject(f"splits {sizes} into {len(op.outputs)} outputs do not cover axis {axis} of "
                         f"{list(x.shape)}")
    out, start = [], 0
    for k, (o, n) in enumerate(zip(op.outputs, sizes)):
        begin = [0] * len(x.shape)
        begin[axis] = start
        shape = list(x.shape)
        shape[axis] = n
        out.append(_slice_op(ctx, x_index, o, StridedSliceAttrs(tuple(begin), (1,) * len(x.shape), tuple(shape)),
                             f"out{k}"))
        start += n
    return out


def _lower_split(ctx, op) -> list[tfl.LoweredOp]:
    if len(op.inputs) != 2:
        raise tfl.Reject(f"{len(op.inputs)} inputs, expected axis and the tensor")
    x = _input(ctx, op.inputs[1])
    axis = _axis(ctx, op.inputs[0], op.inputs[1])
    k = len(op.outputs)
    if k < 1 or x.shape[axis] % k:
        raise tfl.Reject(f"axis {axis} of size {x.shape[axis]} does not split into {k} equal parts")
    return _split(ctx, op, op.inputs[1], op.inputs[0], [x.shape[axis] // k] * k)


def _lower_split_v(ctx, op) -> list[tfl.LoweredOp]:
    if len(op.inputs) != 3:
        raise tfl.Reject(f"{len(op.inputs)} inputs, expected the tensor, size_splits and axis")
    x = _input(ctx, op.inputs[0])
    s = ctx.const(op.inputs[1], "size_splits", tfl.INT32)
    sizes = [int(v) for v in ctx.known[s.index].reshape(-1)]
    axis = _axis(ctx, op.inputs[2], op.inputs[0])
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
    return _split(ctx, op, op.inputs[0], op.inputs[2], sizes)


def params_fields(shape: tuple[int, ...], a: StridedSliceAttrs) -> tuple[tuple[int, ...], ...]:
    """(input_shape, begin, strides, output_shape) padded in front to rank 5."""
    lead = MAX_RANK - len(shape)
    return ((1,) * lead + tuple(shape), (0,) * lead + tuple(a.begin), (1,) * lead + tuple(a.strides),
            (1,) * lead + tuple(a.sizes))


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    name = f"l{layer.index}_params"
    body = ", ".join("{" + ", ".join(str(int(v)) for v in f) + "}" for f in params_fields(x.shape, op.attrs))
    e.decl(layer, f"static const mcuqp_strided_slice_params {name} = {{{body}}};\n", 80)
    layer.call = f"{kernel.function}(&{name}, {e.buf(x.name)}, {e.buf(y.name)})"


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    x, a = xs[0], op.params["slice"]
    index = [a.begin[d] + a.strides[d] * np.arange(a.sizes[d]) for d in range(len(a.begin))]
    out = [x[n:n + 1][np.ix_(*index)] for n in range(x.shape[0])]
    return np.stack(out).reshape((x.shape[0], *op.shape[1:]))


def _from_float(op, ins, y_q, rounding, weight_scales) -> StridedSliceAttrs:
    return op.params["slice"]


OPS = (
    OpDef(
        kind=OpKind.STRIDED_SLICE,
        attrs=StridedSliceAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_strided_slice_s8", "strided_slice_s8.c"),
        float_run=_float_run,
        from_float=_from_float,
        output_qparams="shared",
        tflite={"STRIDED_SLICE": _lower_strided_slice, "SPLIT": _lower_split, "SPLIT_V": _lower_split_v},
    ),
)
