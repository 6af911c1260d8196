"""SOFTMAX: TFLite Micro's int8 softmax over the last axis; output scale 1/256, zero point
-128 (gemmlowp fixed-point exp and reciprocal).

C kernel: `mcuqp_softmax_s8` (portable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.quant.fixedpoint import (
    SOFTMAX_ACCUMULATION_INTEGER_BITS,
    SOFTMAX_SCALED_DIFF_INTEGER_BITS,
    Rounding,
    exp_on_negative_values,
    get_reciprocal,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_greater_than_one,
    quantize_multiplier,
    rescale,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

from mcuqp.ir import Graph, Op, OpKind, QParams, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env, KernelVariant, OpDef, variants


@dataclass
class SoftmaxAttrs:
    """TFLite int8 softmax over the last axis; output scale 1/256, zero point -128."""

    beta: float = 1.0
    input_multiplier: int = 0
    input_left_shift: int = 0
    diff_min: int = 0


def softmax_attrs(input_scale: float, beta: float = 1.0, rounding: Rounding = "double") -> SoftmaxAttrs:
    """TFLite Micro's int8 SoftmaxPrepare: PreprocessSoftmaxScaling with 5 integer bits
    for the scaled difference, and diff_min = -CalculateInputRadius(5, left_shift).

    beta * input_scale * 2^26 (from float32 values, in double) becomes a multiplier
    greater than one; TFLite rejects scales where it is not, and so does this."""
    bits = SOFTMAX_SCALED_DIFF_INTEGER_BITS
    max_real = float((1 << 30) - 1 if rounding == "single" else (1 << 31) - 1)
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << (31 - bits)), max_real)
    if not real > 1.0:
        raise UnsupportedModelError(
            f"softmax input scale {input_scale} x beta {beta} is too small for int8 softmax (needs > 2^-26)"
        )
    multiplier, left_shift = quantize_multiplier(real, rounding)
    radius = int(np.floor(float((1 << bits) - 1) * float(1 << (31 - bits)) / float(1 << left_shift)))
    return SoftmaxAttrs(beta=float(beta), input_multiplier=multiplier, input_left_shift=left_shift, diff_min=-radius)


# Every exp term is at most 1.0, and the sum lives in Q12.19: 4095 terms always fit.
MAX_ROW_SIZE = 4095


def _check(attrs: SoftmaxAttrs, row_size: int, rounding: Rounding) -> None:
    if not 1 <= row_size <= MAX_ROW_SIZE:
        raise UnsupportedModelError(f"softmax rows of {row_size} values are not supported (1..{MAX_ROW_SIZE})")
    max_shift = 30 if rounding == "single" else 31
    if attrs.input_multiplier <= 0 or not 0 <= attrs.input_left_shift <= max_shift:
        raise UnsupportedModelError(
            f"softmax input multiplier {attrs.input_multiplier} << {attrs.input_left_shift} is out of range"
        )
    radius = (31 << 26) >> attrs.input_left_shift
    if not -radius <= attrs.diff_min <= 0:
        raise UnsupportedModelError(f"softmax diff_min {attrs.diff_min} is outside [-{radius}, 0]")


def _exp_of_diff(diff: np.ndarray, attrs: SoftmaxAttrs, rounding: Rounding) -> np.ndarray:
    """exp(beta * scale * diff) in Q0.31 for diff = x - row max."""
    if rounding == "single":
        scaled = multiply_by_quantized_multiplier(diff, attrs.input_multiplier, attrs.input_left_shift, "single")
    else:
        scaled = multiply_by_quantized_multiplier_greater_than_one(diff, attrs.input_multiplier, attrs.input_left_shift)
    return exp_on_negative_values(scaled, SOFTMAX_SCALED_DIFF_INTEGER_BITS)


def softmax_s8(x: np.ndarray, attrs: SoftmaxAttrs, rounding: Rounding = "double") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim < 1:
        raise UnsupportedModelError(f"softmax takes an int8 tensor, got {x.dtype} {x.shape}")
    depth = x.shape[-1]
    _check(attrs, depth, rounding)
    rows = x.reshape(-1, depth).astype(np.int64)
    diff = rows - rows.max(axis=1, keepdims=True)
    used = diff >= attrs.diff_min
    # Out-of-range diffs would wrap in the shift; they are discarded, so zero them first.
    e = _exp_of_diff(np.where(used, diff, 0), attrs, rounding)
    terms = np.where(used, rescale(e, 0, SOFTMAX_ACCUMULATION_INTEGER_BITS), 0)
    total = terms.sum(axis=1)
    recip, num_bits_over_unit = get_reciprocal(total, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    prod = saturating_rounding_doubling_high_mul(recip[:, None], e)
    # Exponents above 31 (sum >= 512) divide exactly here, as the C kernel does.
    unsat = rounding_divide_by_pot(prod, (num_bits_over_unit + 31 - 8)[:, None])
    y = np.where(used, np.clip(unsat - 128, -128, 127), -128)
    return y.astype(np.int8).reshape(x.shape)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return softmax_s8(env[op.inputs[0]], op.attrs, rounding)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None) -> SoftmaxAttrs:
    return softmax_attrs(ins[0].quant.s, 1.0, rounding)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise tfl.Reject("softmax changes the shape")
    if int(y.zero_point[0]) != -128 or np.float32(y.scale[0]) != np.float32(1.0 / 256):
        raise tfl.Reject(f"output quantization ({y.scale[0]}, {y.zero_point[0]}) must be (1/256, -128)")
    attrs = softmax_attrs(x.scale[0], op.options["Beta"], ctx.rounding)
    return [tfl.LoweredOp(OpKind.SOFTMAX, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    params = e.struct(layer, "mcuqp_softmax_params", {
        "input_multiplier": a.input_multiplier, "input_left_shift": a.input_left_shift,
        "diff_min": a.diff_min,
    })
    row = x.shape[-1]
    layer.call = f"{kernel.function}({params}, {x.size // row}, {row}, {e.buf(x.name)}, {e.buf(y.name)})"


OUTPUT = QParams(np.float32(1.0 / 256.0), -128)  # fixed by TFLite

OPS = (
    OpDef(
        kind=OpKind.SOFTMAX,
        attrs=SoftmaxAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_softmax_s8", "softmax_s8.c"),
        float_run=_float_run,
        from_float=_from_float,
        output_qparams=OUTPUT,
        tflite={"SOFTMAX": _lower},
    ),
)
