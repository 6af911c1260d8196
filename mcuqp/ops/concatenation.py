"""CONCATENATION: int8 tensors that share the output's scale and zero point (TFLite Micro
refuses int8 inputs whose quantization differs) joined along an axis >= 1: a copy.
Inputs may be constants, broadcast over the batch.

C kernel: `mcuqp_concatenation_s8` (portable).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding


@dataclass
class ConcatAttrs:
    """Concatenation along `axis` (>= 1) of inputs sharing the output's scale and zero
    point (TFLite Micro refuses int8 inputs whose quantization differs): a plain copy."""

    axis: int = -1


def concatenation_s8(xs: Sequence[np.ndarray], attrs: ConcatAttrs) -> np.ndarray:
    """Batch-first inputs of equal rank, joined along attrs.axis (>= 1)."""
    xs = [np.asarray(x) for x in xs]
    if not xs or any(x.dtype != np.int8 for x in xs):
        raise UnsupportedModelError("concatenation takes one or more int8 inputs")
    if not 1 <= attrs.axis < xs[0].ndim:
        raise UnsupportedModelError(f"concatenation axis {attrs.axis} must be in [1, {xs[0].ndim})")
    return np.concatenate(xs, axis=attrs.axis)


def _batch_size(op: Op, env: Env) -> int:
    return next(env[name].shape[0] for name in op.inputs if name in env)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    n = _batch_size(op, env)
    xs = [env[name] if name in env else np.broadcast_to(graph.tensors[name].data, (n, *graph.tensors[name].shape[1:]))
          for name in op.inputs]
    return concatenation_s8(xs, op.attrs)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    y = ctx.act(op.outputs[0], "output")
    if tfl.activation(op) is not None:
        raise tfl.Reject("a fused activation is not supported (TFLite Micro refuses it too)")
    if all(i in ctx.known for i in op.inputs):
        raise tfl.Reject("all inputs are constants")
    operands = [tfl.operand(ctx, i, f"input {k + 1}") for k, i in enumerate(op.inputs)]
    rank = len(y.shape)
    axis = op.options["Axis"] + rank if op.options["Axis"] < 0 else op.options["Axis"]
    if not 1 <= axis < rank or rank > 4:
        raise tfl.Reject(f"axis {op.options['Axis']} of a {rank}-D output")
    for t, _ in operands:
        if len(t.shape) != rank or any(t.shape[d] != y.shape[d] for d in range(rank) if d != axis):
            raise tfl.Reject(f"input {list(t.shape)} does not concatenate into {list(y.shape)}")
        if not tfl.same_qparams(t, y):
            raise tfl.Reject(f"input '{t.name}' has a different scale or zero point than the output "
                             "(TFLite Micro refuses int8 concatenation with requantization)")
    if sum(t.shape[axis] for t, _ in operands) != y.shape[axis]:
        raise tfl.Reject(f"inputs do not add up to the output's {y.shape[axis]} along axis {axis}")
    return [tfl.LoweredOp(OpKind.CONCATENATION, [n for _, n in operands], ctx.ir_act(op.outputs[0]),
                          ConcatAttrs(axis=axis))]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    y = e.graph.tensors[op.outputs[0]]
    axis = op.attrs.axis % len(y.shape)
    ins = [e.graph.tensors[n] for n in op.inputs]
    operands = ", ".join(e.operand(layer, op, i) for i in range(len(ins)))
    # A compound literal in the call: the arena is a pointer the caller may set at run time
    # (NAME_set_arena), so the input addresses are not constant initialisers.
    ptrs = f"(const int8_t *const[{len(ins)}]){{{operands}}}"
    sizes = e.const(layer, "axis_sizes", np.array([t.shape[axis] for t in ins], dtype=np.int32), weight=False)
    outer = int(np.prod(y.shape[:axis], dtype=np.int64))
    inner = int(np.prod(y.shape[axis + 1:], dtype=np.int64))
    layer.call = f"{kernel.function}({len(ins)}, {ptrs}, {sizes}, {outer}, {inner}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.CONCATENATION,
        attrs=ConcatAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_concatenation_s8", "concatenation_s8.c"),
        tflite={"CONCATENATION": _lower},
    ),
)
