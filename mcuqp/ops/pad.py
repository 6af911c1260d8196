"""PAD / PADV2: int8 constant padding, the input copied into a border of pad_value (the
output zero point for PAD, the constant for PADV2). Input and output share their
quantization.

C kernel: `mcuqp_pad_s8` (portable).
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
class PadAttrs:
    """Constant padding; paddings[i] = (before, after) for input dimension i (batch: (0, 0)).
    The border holds pad_value (the output zero point for PAD, the constant for PADV2)."""

    paddings: tuple[tuple[int, int], ...] = ()
    pad_value: int = 0


def pad_s8(x: np.ndarray, attrs: PadAttrs) -> np.ndarray:
    """x batch-first with the graph's rank; paddings[0] (the batch) must be (0, 0)."""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise UnsupportedModelError(f"pad takes int8, got {x.dtype}")
    if len(attrs.paddings) != x.ndim or tuple(attrs.paddings[0]) != (0, 0):
        raise UnsupportedModelError(f"pad paddings {attrs.paddings} do not fit a batch-first {x.ndim}-D input")
    if any(b < 0 or a < 0 for b, a in attrs.paddings) or not -128 <= attrs.pad_value <= 127:
        raise UnsupportedModelError(f"pad paddings {attrs.paddings} / value {attrs.pad_value} out of range")
    return np.pad(x, [tuple(p) for p in attrs.paddings], mode="constant", constant_values=attrs.pad_value)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return pad_s8(env[op.inputs[0]], op.attrs)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if len(x.shape) > 4:
        raise tfl.Reject("more than 4 dimensions")
    if not tfl.same_qparams(x, y):
        raise tfl.Reject("input and output quantization differ")
    p = ctx.const(op.inputs[1], "paddings", tfl.INT32)
    pads = ctx.known[p.index].astype(np.int64)
    if pads.shape != (len(x.shape), 2) or np.any(pads < 0):
        raise tfl.Reject(f"paddings {pads.tolist()} do not fit a {len(x.shape)}-D input")
    paddings = tuple((int(b), int(a)) for b, a in pads)
    if y.shape != tuple(d + b + a for d, (b, a) in zip(x.shape, paddings)):
        raise tfl.Reject(f"output shape {list(y.shape)} does not match the paddings")
    value = int(y.zero_point[0])
    if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        v = ctx.const(op.inputs[2], "constant value", tfl.INT8)
        if ctx.known[v.index].size != 1 or not v.quantized or not tfl.same_qparams(v, y):
            raise tfl.Reject("the constant value must be one int8 with the output's quantization")
        value = int(ctx.known[v.index].reshape(-1)[0])
    attrs = PadAttrs(paddings=paddings, pad_value=value)
    return [tfl.LoweredOp(OpKind.PAD, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    pads = [(0, 0)] * (4 - len(a.paddings)) + [tuple(p) for p in a.paddings]
    name = f"l{layer.index}_params"
    before = ", ".join(str(int(p[0])) for p in pads)
    after = ", ".join(str(int(p[1])) for p in pads)
    e.decl(layer, f"static const mcuqp_pad_params {name} = {{{{{before}}}, {{{after}}}, {int(a.pad_value)}}};\n", 36)
    layer.call = (
        f"{kernel.function}(&{name}, {e.dims(layer, 'in', x.shape)}, {e.buf(x.name)}, "
        f"{e.dims(layer, 'out', y.shape)}, {e.buf(y.name)})"
    )


OPS = (
    OpDef(
        kind=OpKind.PAD,
        attrs=PadAttrs,
        reference=_reference,
        emit=_emit,
        kernels=variants("mcuqp_pad_s8", "pad_s8.c"),
        output_qparams="shared",
        tflite={"PAD": _lower, "PADV2": _lower},
    ),
)
