"""SUB: elementwise int8 subtraction exactly as TFLite Micro's reference kernel: ADD's
parameters and rescaling (`mcuqp.ops.add`), with the rescaled second input subtracted, and
TFLite's broadcasting (`mcuqp.ops.broadcast`); either input may be a constant.

From torch: `-`, `torch.sub` (two tensors). C kernel: `mcuqp_sub_s8` (portable).
"""
from __future__ import annotations

import numpy as np

from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import broadcast
from mcuqp.ops.add import PARAM_FIELDS, AddAttrs, add_attrs, add_s8, lower_add_sub
from mcuqp.ops.common import float_activation
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding


def sub_s8(x1: np.ndarray, x2: np.ndarray, attrs: AddAttrs, rounding: Rounding = "double") -> np.ndarray:
    """y = clamp(M_out(M_1((x1 + off1) << ls) - M_2((x2 + off2) << ls)) + out_off), broadcasting."""
    return add_s8(x1, x2, attrs, rounding, sign=-1)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return sub_s8(*broadcast.operands(graph, op, env), op.attrs, rounding)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    return float_activation(xs[0] - xs[1], op.activation).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None) -> AddAttrs:
    x, x2 = ins
    return add_attrs(x.quant.s, x.quant.zp, x2.quant.s, x2.quant.zp, y_q.s, y_q.zp, op.activation)


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    params = e.struct(layer, "mcuqp_add_params", {k: getattr(op.attrs, k) for k in PARAM_FIELDS})
    shape = broadcast.emit(e, layer, op)
    y = e.graph.tensors[op.outputs[0]]
    layer.call = (f"{kernel.function}({params}, {shape}, {e.operand(layer, op, 0)}, {e.operand(layer, op, 1)}, "
                  f"{e.buf(y.name)})")


OPS = (
    OpDef(
        kind=OpKind.SUB,
        attrs=AddAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_sub_s8", "sub_s8.c"),
        alias="elementwise",
        float_run=_float_run,
        from_float=_from_float,
        fuses_activation=True,
        tflite={"SUB": lower_add_sub(OpKind.SUB)},
    ),
)
