"""SIGN: int8 sign for binary activations (mcuqp.compress.binary_act): +1 where the real
input is >= 0 (sign(0) = +1), -1 elsewhere; output scale 1.0, zero point 0.

C kernel: `mcuqp_sign_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants
from mcuqp.quant.fixedpoint import Rounding


@dataclass
class SignAttrs:
    """int8 sign for binary activations (sign(0) = +1): y = 1 if x >= input_zero_point
    (real value >= 0) else -1; output scale 1.0, zero point 0."""

    input_zero_point: int = 0


def sign_s8(x: np.ndarray, attrs: SignAttrs) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"sign takes int8, got {x.dtype}")
    if not -128 <= attrs.input_zero_point <= 127:
        raise UnsupportedModelError(f"sign input zero point {attrs.input_zero_point} is outside int8")
    return np.where(x.astype(np.int32) >= attrs.input_zero_point, 1, -1).astype(np.int8)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return sign_s8(env[op.inputs[0]], op.attrs)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    return np.where(xs[0] >= 0, 1.0, -1.0).astype(np.float32)  # sign(0) = +1, as BinaryActivation


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None) -> SignAttrs:
    return SignAttrs(input_zero_point=ins[0].quant.zp)


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_sign_params", {"input_zero_point": op.attrs.input_zero_point})
    layer.call = f"{kernel.function}({params}, {y.size}, {e.buf(x.name)}, {e.buf(y.name)})"


OUTPUT = QParams(np.float32(1.0), 0)  # exactly -1 and +1

OPS = (
    OpDef(
        kind=OpKind.SIGN,
        attrs=SignAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_sign_s8", "sign_s8.c"),
        float_run=_float_run,
        from_float=_from_float,
        output_qparams=OUTPUT,
        sign_output=True,
    ),
)
