"""TRANSPOSE: int8 permutation of the axes of a rank <= 5 tensor; input and output share
their quantization (TFLite Micro copies the values), so it is a copy. A permutation that
only moves dimensions of size 1 leaves the data order unchanged and is imported as a
RESHAPE (a view: no code runs).

C kernel: `mcuqp_transpose_s8` (portable).
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


@dataclass
class TransposeAttrs:
    perm: tuple[int, ...] = ()  # output axis d is input axis perm[d] (graph rank, batch included)


def transpose_s8(x: np.ndarray, attrs: TransposeAttrs) -> np.ndarray:
    """One tensor (not a batch of them) of rank len(perm) <= 5, permuted."""
    x = np.asarray(x)
    perm = tuple(int(p) for p in attrs.perm)
    if x.dtype != np.int8 or x.ndim != len(perm) or x.ndim > MAX_RANK or sorted(perm) != list(range(x.ndim)):
        raise UnsupportedModelError(f"transpose of a {x.dtype} {x.shape} tensor by {perm}")
    return np.ascontiguousarray(np.transpose(x, perm))


def padded_perm(perm: tuple[int, ...]) -> tuple[int, ...]:
    """`perm` of a rank-r tensor as the permutation of its shape padded in front to rank 5."""
    lead = MAX_RANK - len(perm)
    return (*range(lead), *(p + lead for p in perm))


def moves_data(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """Whether the permutation changes the row-major order (it does not when only size-1
    axes move)."""
    kept = [p for p in perm if shape[p] != 1]
    return kept != sorted(kept)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    x = env[op.inputs[0]]
    out = [transpose_s8(x[n:n + 1], op.attrs) for n in range(x.shape[0])]
    shape = graph.tensors[op.outputs[0]].shape
    return np.stack(out).reshape((x.shape[0], *shape[1:]))


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    if len(op.inputs) != 2:
        raise tfl.Reject(f"{len(op.inputs)} inputs, expected the tensor and perm")
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if len(x.shape) > MAX_RANK:
        raise tfl.Reject(f"{len(x.shape)} dimensions (at most {MAX_RANK})")
    if not tfl.same_qparams(x, y):
        raise tfl.Reject("input and output quantization differ")
    raw = [int(v) for v in ctx.known[ctx.const(op.inputs[1], "perm", tfl.INT32).index].reshape(-1)]
    off = tfl.lead(ctx, op.inputs[0])  # a rank-1 input imported as (1, C)
    r = len(x.shape) - off
    perm = (*range(off), *(v % r + off for v in raw if -r <= v < r))
    if sorted(perm) != list(range(len(x.shape))) or len(perm) != len(raw) + off:
        raise tfl.Reject(f"perm {raw} is not a permutation of {len(x.shape)} axes")
    if y.shape != tuple(x.shape[d] for d in perm):
        raise tfl.Reject(f"output shape {list(y.shape)} does not match the permuted input {list(x.shape)}")
    ins, out = [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0])
    if not moves_data(x.shape, perm):
        return [tfl.LoweredOp(OpKind.RESHAPE, ins, out, ReshapeAttrs(new_shape=tuple(y.shape)))]
    return [tfl.LoweredOp(OpKind.TRANSPOSE, ins, out, TransposeAttrs(perm=perm))]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    shape = (1,) * (MAX_RANK - len(x.shape)) + tuple(x.shape)
    name = f"l{layer.index}_params"
    e.decl(layer, f"static const mcuqp_transpose_params {name} = {{{{{', '.join(map(str, shape))}}}, "
                  f"{{{', '.join(map(str, padded_perm(op.attrs.perm)))}}}}};\n", 40)
    layer.call = f"{kernel.function}(&{name}, {e.buf(x.name)}, {e.buf(y.name)})"


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    return np.stack([np.transpose(x[n:n + 1], op.params["perm"]) for n in range(x.shape[0])]).reshape(
        (x.shape[0], *op.shape[1:]))


def _from_float(op, ins, y_q, rounding, weight_scales) -> TransposeAttrs:
    return TransposeAttrs(perm=tuple(op.params["perm"]))


OPS = (
    OpDef(
        kind=OpKind.TRANSPOSE,
        attrs=TransposeAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_transpose_s8", "transpose_s8.c"),
        float_run=_float_run,
        from_float=_from_float,
        output_qparams="shared",
        tflite={"TRANSPOSE": _lower},
    ),
)
