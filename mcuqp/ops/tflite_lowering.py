"""What the TFLite importer (mcuqp.frontends.tflite) hands an op module's lowerer, and the
checks lowerers share.

A lowerer is `lower(ctx, op) -> list[LoweredOp]`: `ctx` is the importer's context (the
TFLite tensors, the constants known at import, and `act`/`const`/`ir_act`/`ir_const`/
`ir_derived`, which check a tensor and add it to the IR), `op` a parsed TFLite operator
(`opcode`, `inputs`, `outputs`, `options`). A lowerer raises `Reject` with the reason when it
cannot lower the operator; the importer collects every reason into one error. An operator
with several outputs (SPLIT) lowers to ops that between them produce every output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tflite

from mcuqp import ir

INT8 = tflite.TensorType.INT8
INT32 = tflite.TensorType.INT32
_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
_ACTIVATION_NAMES = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}


class Reject(Exception):
    """An operator mcuqp cannot lower; the message says why."""


@dataclass
class LoweredOp:
    """One IR op produced by lowering a TFLite operator (names are IR tensor names)."""

    kind: ir.OpKind
    inputs: list[str]
    output: str
    attrs: Any
    suffix: str = ""  # distinguishes helper ops inserted before the main one


def activation(op, key: str = "FusedActivationFunction") -> str | None:
    code = op.options.get(key, 0)
    if code not in _ACTIVATIONS:
        raise Reject(f"fused activation {_ACTIVATION_NAMES.get(code, code)} is not supported")
    return _ACTIVATIONS[code]


def same_or_valid_padding(
    same: bool, in_size: int, filter_size: int, stride: int, dilation: int = 1
) -> tuple[int, int, int]:
    """(output size, padding before, padding after) exactly as TFLite's
    ComputePaddingHeightWidth: the odd pixel of SAME padding goes after."""
    eff = (filter_size - 1) * dilation + 1
    out = (in_size + stride - 1) // stride if same else (in_size + stride - eff) // stride
    total = max(0, (out - 1) * stride + eff - in_size)
    return out, total // 2, total // 2 + total % 2


def window(op, x, y, kh: int, kw: int, dh: int = 1, dw: int = 1) -> ir.Padding:
    sh, sw = op.options["StrideH"], op.options["StrideW"]
    if min(sh, sw, dh, dw, kh, kw) < 1:
        raise Reject(f"invalid window: filter {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dw}")
    same = op.options["Padding"] == 0
    oh, top, bottom = same_or_valid_padding(same, x.shape[1], kh, sh, dh)
    ow, left, right = same_or_valid_padding(same, x.shape[2], kw, sw, dw)
    if len(y.shape) != 4 or (oh, ow) != tuple(y.shape[1:3]):
        raise Reject(f"output shape {list(y.shape)} does not match the computed {oh}x{ow}")
    return ir.Padding(top=top, bottom=bottom, left=left, right=right)


def rank4(t, role: str) -> None:
    if len(t.shape) != 4:
        raise Reject(f"{role} '{t.name}' has shape {list(t.shape)}, expected 4-D NHWC")


def weights(ctx, index: int, qdim: int, channels: int) -> Any:
    w = ctx.const(index, "weights", INT8)
    if not w.quantized:
        raise Reject(f"weights '{w.name}' are not quantized")
    if w.scale.size not in (1, channels):
        raise Reject(f"weights '{w.name}' have {w.scale.size} scales for {channels} output channels")
    if w.scale.size > 1 and w.quantized_dimension != qdim:
        raise Reject(f"weights '{w.name}' are quantized along axis {w.quantized_dimension}, expected {qdim}")
    return w


def bias(ctx, op, channels: int) -> list[str]:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return []
    b = ctx.const(op.inputs[2], "bias", INT32)
    if b.data.size != channels:
        raise Reject(f"bias '{b.name}' has {b.data.size} values for {channels} output channels")
    return [ctx.ir_const(op.inputs[2])]


def lead(ctx, index: int) -> int:
    """1 when TFLite tensor `index` is a rank-1 vector imported as (1, C): the axes in the
    operator's parameters count from 0 where the IR's count from 1."""
    return int(index in ctx.model.vectors)


def same_qparams(a, b) -> bool:
    return bool(np.float32(a.scale[0]) == np.float32(b.scale[0]) and a.zero_point[0] == b.zero_point[0])


def operand(ctx, index: int, role: str) -> tuple[Any, str]:
    """An int8 activation or an int8 per-tensor-quantized constant, with its IR name."""
    t = ctx.t(index) if index >= 0 else None
    if t is not None and index in ctx.known:
        if t.type != INT8 or not t.quantized or t.scale.size != 1:
            raise Reject(f"{role} '{t.name}' must be an int8 constant with per-tensor quantization")
        return t, ctx.ir_const(index)
    t = ctx.act(index, role)
    return t, ctx.ir_act(index)
