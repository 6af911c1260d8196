"""RESHAPE: the data order of a row-major tensor does not change, so the planner makes the
output a view of the input's bytes and no code runs (`mcuqp_reshape_s8` copies only when
the plan could not alias them). Input and output share their quantization.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding


@dataclass
class ReshapeAttrs:
    new_shape: tuple[int, ...] = ()


def reshape_s8(x: np.ndarray, attrs: ReshapeAttrs) -> np.ndarray:
    """`x` reshaped to `attrs.new_shape`; when `x` carries a batch of such tensors
    (leading axis N, graph batch 1) the leading dimension becomes N."""
    x = np.asarray(x)
    new_shape = tuple(int(d) for d in attrs.new_shape)
    if any(d < 1 for d in new_shape):
        raise UnsupportedModelError(f"reshape needs a fully known positive shape, got {new_shape}")
    n = math.prod(new_shape)
    if n == x.size:
        return x.reshape(new_shape)
    if new_shape and x.ndim >= 1 and x.shape[0] * math.prod(new_shape[1:]) == x.size:
        return x.reshape((x.shape[0], *new_shape[1:]))
    raise UnsupportedModelError(f"cannot reshape {x.shape} ({x.size} values) to {new_shape}")


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    x = env[op.inputs[0]]
    out_shape = graph.tensors[op.outputs[0]].shape
    return x.reshape((x.shape[0], *out_shape[1:]))


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0].reshape((xs[0].shape[0], *op.shape[1:]))


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None):
    return ReshapeAttrs(new_shape=op.shape)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if int(np.prod(x.shape)) != int(np.prod(y.shape)):
        raise tfl.Reject(f"reshape {list(x.shape)} -> {list(y.shape)} changes the element count")
    if not tfl.same_qparams(x, y):
        raise tfl.Reject("input and output quantization differ")
    if op.opcode == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] >= 0:
        if op.inputs[1] not in ctx.known:
            raise tfl.Reject("the new shape is not a constant (or a constant sub-graph)")
        new_shape = [int(d) for d in ctx.known[op.inputs[1]].reshape(-1)]
        if new_shape.count(-1) == 1:
            rest = int(np.prod([d for d in new_shape if d != -1]))
            new_shape[new_shape.index(-1)] = int(np.prod(x.shape)) // max(rest, 1)
        if tuple(new_shape) != y.shape and not (len(new_shape) == 1 and (1, *new_shape) == y.shape):  # (C,): (1, C)
            raise tfl.Reject(f"new shape {new_shape} disagrees with the output tensor {list(y.shape)}")
    attrs = ReshapeAttrs(new_shape=tuple(y.shape))
    return [tfl.LoweredOp(OpKind.RESHAPE, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    if e.aliased(op):
        layer.comment = "aliased: the output shares the input's bytes"
        return
    layer.call = f"{kernel.function}({y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OPS = (
    OpDef(
        kind=OpKind.RESHAPE,
        attrs=ReshapeAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_reshape_s8", "reshape_s8.c"),
        alias="view",
        float_run=_float_run,
        from_float=_from_float,
        output_qparams="shared",
        tflite={"RESHAPE": _lower, "SQUEEZE": _lower, "EXPAND_DIMS": _lower},
    ),
)
