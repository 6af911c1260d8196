"""DEPTHWISE_CONV2D: int8 NHWC depthwise 2-D convolution (TFLite int8
DepthwiseConvPerChannel semantics).

Output channel oc = ic * depth_multiplier + m reads input channel ic with the weights
w[0, :, :, oc]. Padding, accumulation, attrs and the emitter are conv2d's.

C kernels: `mcuqp_depthwise_conv2d_s8` (portable, DSP) and, with depth multiplier 1 when
the planner runs it over its own input, `mcuqp_depthwise_conv2d_s8_inplace`.
"""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import DType, Graph, Op, OpKind
from mcuqp.ops.common import float_activation, float_pad, float_windows
from mcuqp.ops.conv2d import (
    ConvAttrs,
    _const,
    check_bias,
    check_offset,
    check_output_stage,
    check_window,
    conv_from_float,
    emit_conv,
    lower_conv,
    offset_windows,
    output_stage,
    weighted_macs,
)
from mcuqp.ops.registry import DENSE_INT8, Env, InPlace, OpDef, packed_variants, variants
from mcuqp.quant.fixedpoint import Rounding


def depthwise_conv2d_s8(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, attrs: ConvAttrs, rounding: Rounding = "double"
) -> np.ndarray:
    """x int8 (N, H, W, Cin), w int8 (1, KH, KW, Cin * depth_multiplier), bias int32
    (Cout,) or None -> int8 (N, OH, OW, Cin * depth_multiplier)."""
    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"depthwise_conv2d takes int8 NHWC input, got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 4 or w.shape[0] != 1 or min(w.shape) < 1:
        raise UnsupportedModelError(f"depthwise_conv2d takes int8 (1, KH, KW, C) weights, got {w.dtype} {w.shape}")
    _, kh, kw, cout = w.shape
    cin, dm = x.shape[3], attrs.depth_multiplier
    if dm < 1 or cout != cin * dm:
        raise UnsupportedModelError(
            f"depthwise_conv2d weights {w.shape} do not match {cin} input channels x depth multiplier {dm}"
        )
    check_window("depthwise_conv2d", attrs)
    check_offset("depthwise_conv2d", "input offset", attrs.input_offset)
    requant = check_output_stage(
        "depthwise_conv2d", attrs.requant, cout, attrs.output_offset, attrs.act_min, attrs.act_max, rounding
    )
    b = check_bias("depthwise_conv2d", bias, cout)

    win = offset_windows(x, kh, kw, attrs).astype(np.int64)  # (N, OH, OW, Cin, KH, KW)
    filt = w[0].reshape(kh, kw, cin, dm).astype(np.int64)
    acc = np.einsum("nhwckl,klcm->nhwcm", win, filt)
    acc = acc.reshape(*acc.shape[:3], cout)
    return output_stage(acc, b, requant, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return depthwise_conv2d_s8(env[op.inputs[0]], _const(graph, op, 1), _const(graph, op, 2), op.attrs, rounding)


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    _, kh, kw, cout = op.weight.shape
    win = float_windows(float_pad(xs[0], op.padding, 0.0), op, kh, kw)
    # output channel o = c * multiplier + m reads input channel c
    win = np.repeat(win, op.depth_multiplier, axis=3)
    y = np.einsum("nhwcij,ijc->nhwc", win, op.weight[0], optimize=True)
    return float_activation(y + op.bias, op.activation).astype(np.float32)


def inplace_depthwise_scratch(graph: Graph, op: Op) -> int | None:
    """Bytes of scratch (h * w) with which mcuqp_depthwise_conv2d_s8_inplace computes `op`
    over its input, or None when that kernel cannot: not a depthwise conv, a depth
    multiplier other than 1, an output shaped unlike the input, or not int8."""
    if op.kind != OpKind.DEPTHWISE_CONV2D or len(op.outputs) != 1 or not op.inputs:
        return None
    if getattr(op.attrs, "depth_multiplier", None) != 1:
        return None
    if getattr(op.attrs, "weight_format", DENSE_INT8) != DENSE_INT8:
        return None
    x, y = graph.tensors.get(op.inputs[0]), graph.tensors.get(op.outputs[0])
    if x is None or y is None or x.is_const or len(x.shape) != 4 or tuple(x.shape) != tuple(y.shape):
        return None
    if x.dtype != DType.INT8 or y.dtype != DType.INT8 or min(x.shape) < 1:
        return None
    return int(x.shape[1]) * int(x.shape[2])


OPS = (
    OpDef(
        kind=OpKind.DEPTHWISE_CONV2D,
        accumulator_axes=(0, 1, 2),
        attrs=ConvAttrs,
        reference=_reference,
        emit=emit_conv,
        kernels=(
            *variants("mcuqp_depthwise_conv2d_s8", "depthwise_conv2d_s8.c", isa=("mve", "dsp")),
            *variants("mcuqp_depthwise_conv2d_s8_inplace", "depthwise_conv2d_s8_inplace.c", isa=("mve", "dsp"), inplace=True),
            *packed_variants("depthwise_conv2d"),
        ),
        macs=weighted_macs,
        inplace=InPlace(inplace_depthwise_scratch, "inplace_depthwise"),
        float_run=_float_run,
        from_float=conv_from_float,
        weight_axis=3,
        fuses_activation=True,
        tflite={"DEPTHWISE_CONV_2D": lower_conv},
    ),
)
