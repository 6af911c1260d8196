"""MAXIMUM / MINIMUM: elementwise int8 max / min of the raw values with TFLite's broadcasting
(`mcuqp.ops.broadcast`), exactly as TFLite Micro's reference kernel, which does not rescale:
the lowerer requires the inputs and the output to share one quantization (as converters
write them). Either input may be a constant.

From torch: `torch.maximum`, `torch.minimum` (two tensors). C kernels: `mcuqp_maximum_s8`,
`mcuqp_minimum_s8` (portable).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import broadcast
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding


@dataclass
class MaximumMinimumAttrs:
    """No parameters: the raw int8 values are compared (one quantization throughout)."""


def _int8(x1: np.ndarray, x2: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x1, x2 = np.asarray(x1), np.asarray(x2)
    if x1.dtype != np.int8 or x2.dtype != np.int8:
        raise UnsupportedModelError(f"{what} takes int8 inputs, got {x1.dtype} and {x2.dtype}")
    return x1, x2


def maximum_s8(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    return np.maximum(*_int8(x1, x2, "maximum"))


def minimum_s8(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    return np.minimum(*_int8(x1, x2, "minimum"))


def _reference(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def run(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
        return fn(*broadcast.operands(graph, op, env))

    return run


def _lower(kind: OpKind):
    def lower(ctx, op) -> list[tfl.LoweredOp]:
        if all(i in ctx.known for i in op.inputs[:2]):
            raise tfl.Reject("both inputs are constants")
        (a, a_name), (b, b_name) = tfl.operand(ctx, op.inputs[0], "input 1"), tfl.operand(ctx, op.inputs[1], "input 2")
        y = ctx.act(op.outputs[0], "output")
        if not (tfl.same_qparams(a, y) and tfl.same_qparams(b, y)):
            raise tfl.Reject("inputs and output must share one quantization (TFLite Micro compares raw values)")
        broadcast.output_shape(a.shape, b.shape, y.shape)
        return [tfl.LoweredOp(kind, [a_name, b_name], ctx.ir_act(op.outputs[0]), MaximumMinimumAttrs())]

    return lower


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    shape = broadcast.emit(e, layer, op)
    y = e.graph.tensors[op.outputs[0]]
    layer.call = f"{kernel.function}({shape}, {e.operand(layer, op, 0)}, {e.operand(layer, op, 1)}, {e.buf(y.name)})"


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding,
                weight_scales: np.ndarray | None) -> MaximumMinimumAttrs:
    """Both inputs get the output's quantization from torch: only an op on one tensor's
    quantization (its inputs share it) is exact; otherwise refuse."""
    x1, x2 = ins
    if not (x1.quant.s == x2.quant.s and x1.quant.zp == x2.quant.zp):
        raise UnsupportedModelError(f"{op.source}: {op.kind.value} of tensors with different quantization "
                                    f"({x1.quant.s}, {x1.quant.zp}) and ({x2.quant.s}, {x2.quant.zp}) is not supported")
    return MaximumMinimumAttrs()


def _op(kind: OpKind, fn, float_fn, opcode: str) -> OpDef:
    return OpDef(
        kind=kind,
        attrs=MaximumMinimumAttrs,
        reference=_reference(fn),
        emit=_emit,
        kernels=variants(f"mcuqp_{kind.value}_s8", f"{kind.value}_s8.c"),
        alias="elementwise",
        float_run=lambda op, xs: float_fn(xs[0], xs[1]).astype(np.float32),
        from_float=_from_float,
        output_qparams="shared",
        tflite={opcode: _lower(kind)},
    )


OPS = (
    _op(OpKind.MAXIMUM, maximum_s8, np.maximum, "MAXIMUM"),
    _op(OpKind.MINIMUM, minimum_s8, np.minimum, "MINIMUM"),
)
