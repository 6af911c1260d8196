"""FULLY_CONNECTED: int8 dense layer (TFLite int8 FullyConnected, per-tensor or
per-channel weights). The reference reads rows of the input's last dimension.

C kernel: `mcuqp_fully_connected_s8` (portable, DSP).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Requant, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import activation_range, conv_requant, float_activation
from mcuqp.ops.conv2d import _const, check_bias, check_offset, check_output_stage, output_stage
from mcuqp.ops.registry import DENSE_INT8, EmitContext, Env, KernelVariant, OpDef, packed_variants, variants
from mcuqp.ops.reshape import ReshapeAttrs
from mcuqp.quant.fixedpoint import Rounding


@dataclass
class FullyConnectedAttrs:
    """inputs: [x (1, Cin), weights (Cout, Cin), bias (Cout,) or None]; outputs: [y (1, Cout)]."""

    input_offset: int = 0
    filter_offset: int = 0  # 0 for symmetric weights
    output_offset: int = 0
    requant: Requant | None = None  # per-tensor or per-channel
    act_min: int = -128
    act_max: int = 127
    weight_format: str = "int8"  # how the C stores the weights (mcuqp.plan.formats); results are the same


def fully_connected_s8(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    attrs: FullyConnectedAttrs,
    rounding: Rounding = "double",
) -> np.ndarray:
    """x int8 (B, Cin), w int8 (Cout, Cin), bias int32 (Cout,) or None -> int8 (B, Cout)."""
    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.int8 or x.ndim != 2:
        raise UnsupportedModelError(f"fully_connected takes int8 (batches, in) input, got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 2 or min(w.shape) < 1:
        raise UnsupportedModelError(f"fully_connected takes int8 (out, in) weights, got {w.dtype} {w.shape}")
    cout, cin = w.shape
    if cin != x.shape[1]:
        raise UnsupportedModelError(f"fully_connected weights {w.shape} do not match {x.shape[1]} inputs")
    check_offset("fully_connected", "input offset", attrs.input_offset)
    check_offset("fully_connected", "filter offset", attrs.filter_offset)
    requant = check_output_stage(
        "fully_connected", attrs.requant, cout, attrs.output_offset, attrs.act_min, attrs.act_max, rounding
    )
    b = check_bias("fully_connected", bias, cout)

    xo = x.astype(np.int64) + attrs.input_offset
    wo = w.astype(np.int64) + attrs.filter_offset
    acc = xo @ wo.T
    return output_stage(acc, b, requant, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    x = env[op.inputs[0]]
    out_shape = graph.tensors[op.outputs[0]].shape
    y = fully_connected_s8(x.reshape(-1, x.shape[-1]), _const(graph, op, 1), _const(graph, op, 2), op.attrs, rounding)
    return y.reshape((x.shape[0], *out_shape[1:])) if len(out_shape) > 1 else y


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    y = x.reshape(x.shape[0], -1) @ op.weight.T
    if op.bias is not None:
        y = y + op.bias
    return float_activation(y, op.activation).astype(np.float32)


def _from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None):
    x = ins[0]
    lo, hi = activation_range(op.activation, y_q.s, y_q.zp)
    return FullyConnectedAttrs(input_offset=-x.quant.zp, filter_offset=0, output_offset=y_q.zp,
                               requant=conv_requant(x.quant.s, weight_scales, y_q.s, rounding), act_min=lo, act_max=hi)


def _lower(ctx, op) -> list[tfl.LoweredOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if op.options["WeightsFormat"] != 0:
        raise tfl.Reject("shuffled weights format is not supported")
    w_t = ctx.t(op.inputs[1])
    if len(w_t.shape) != 2:
        raise tfl.Reject(f"weights '{w_t.name}' have shape {list(w_t.shape)}, expected (out, in)")
    cout, cin = w_t.shape
    w = tfl.weights(ctx, op.inputs[1], 0, cout)
    if w.scale.size > 1 and np.any(w.zero_point != 0):
        raise tfl.Reject(f"per-channel weights '{w.name}' must be symmetric")
    size = int(np.prod(x.shape))
    keep = bool(op.options["KeepNumDims"])
    # TFLite Micro reads the input as rows of `cin` whatever its shape; the IR kernel reads
    # rows of the input's last dimension, so a (1, h, w, c) input of one row gets a reshape.
    flatten = x.shape[-1] != cin
    if flatten and (keep or size != cin):
        raise tfl.Reject(f"input {list(x.shape)} does not split into rows of {cin} inputs")
    expected = (*x.shape[:-1], cout) if keep else (size // cin, cout)
    if tuple(y.shape) != expected:
        raise tfl.Reject(f"output shape {list(y.shape)}, expected {list(expected)}")
    lo, hi = activation_range(tfl.activation(op), y.scale[0], int(y.zero_point[0]))
    attrs = FullyConnectedAttrs(
        input_offset=-int(x.zero_point[0]),
        filter_offset=-int(w.zero_point[0]),
        output_offset=int(y.zero_point[0]),
        requant=conv_requant(x.scale[0], w.scale, y.scale[0], ctx.rounding),
        act_min=lo,
        act_max=hi,
    )
    out: list[tfl.LoweredOp] = []
    x_name = ctx.ir_act(op.inputs[0])
    if flatten:
        flat = ctx.ir_derived(op.inputs[0], "flat", (1, cin))
        out.append(tfl.LoweredOp(OpKind.RESHAPE, [x_name], flat, ReshapeAttrs(new_shape=(1, cin)), "flatten"))
        x_name = flat
    inputs = [x_name, ctx.ir_const(op.inputs[1]), *tfl.bias(ctx, op, cout)]
    out.append(tfl.LoweredOp(OpKind.FULLY_CONNECTED, inputs, ctx.ir_act(op.outputs[0]), attrs))
    return out


def folded_bias(w: np.ndarray, bias: np.ndarray | None, input_offset: int, filter_offset: int) -> np.ndarray | None:
    """bias + input_offset * sum_i (w[oc][i] + filter_offset): the input offset's share of
    every accumulator, so the kernel can run with input_offset 0 and give the same int32
    sums. None when some folded bias leaves the int32 range (then the offset stays a
    run-time argument) or when there is no offset to fold."""
    if input_offset == 0:
        return None
    rows = w.astype(np.int64).sum(axis=1) + filter_offset * w.shape[1]
    folded = (np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64)) + input_offset * rows
    if folded.min() < np.iinfo(np.int32).min or folded.max() > np.iinfo(np.int32).max:
        return None
    return folded.astype(np.int32)


def _emit(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    w = e.graph.tensors[op.inputs[1]]
    out_ch, in_ch = w.shape
    bias = _const(e.graph, op, 2)
    # Fold the input offset into the bias at generation time (dense weights only: the
    # packed formats' kernels read their own layouts).
    folded = folded_bias(w.data, bias, a.input_offset, a.filter_offset) if kernel.weight_format == DENSE_INT8 else None
    params = e.struct(layer, "mcuqp_fc_params", {
        "input_offset": a.input_offset if folded is None else 0, "filter_offset": a.filter_offset,
        "output_offset": a.output_offset, "act_min": a.act_min, "act_max": a.act_max,
    })
    quant = e.requant(layer, a.requant)
    wname = e.weights(layer, op, kernel)
    if folded is None:
        bname = e.tensor_const(layer, "bias", op, 2)
    else:
        bname = e.const(layer, "bias", folded, comment=f"bias + input offset {a.input_offset} x filter row sums",
                        weight=bias is not None)
    packed = "" if kernel.weight_format == DENSE_INT8 else ", " + e.packed_scratch(layer, op)
    layer.call = (
        f"{kernel.function}({params}, {quant}, {x.size // in_ch}, {in_ch}, {e.buf(x.name)}, "
        f"{out_ch}, {wname}, {bname}, {e.buf(y.name)}{packed})"
    )


def _macs(graph: Graph, op: Op) -> int:
    return int(graph.tensors[op.outputs[0]].size * graph.tensors[op.inputs[1]].shape[1])


OPS = (
    OpDef(
        kind=OpKind.FULLY_CONNECTED,
        accumulator_axes=(1,),
        attrs=FullyConnectedAttrs,
        reference=_reference,
        emit=_emit,
        kernels=(*variants("mcuqp_fully_connected_s8", "fully_connected_s8.c", isa=("mve", "dsp")),
                 *packed_variants("fully_connected", xnor=True)),
        macs=_macs,
        float_run=_float_run,
        from_float=_from_float,
        weight_axis=0,
        fuses_activation=True,
        tflite={"FULLY_CONNECTED": _lower},
    ),
)
