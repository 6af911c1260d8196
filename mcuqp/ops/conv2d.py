"""CONV2D: int8 NHWC 2-D convolution (TFLite int8 ConvPerChannel semantics), with the
pieces the depthwise and fully-connected ops share with it: argument checks and the
output stage (bias, requantization, output offset, clamp).

Taps that fall into the padding contribute nothing: the input offset is added to
in-bounds inputs only, which is the same as padding (x + input_offset) with zeros.
The accumulator is TFLite's int32; it wraps in two's complement like the C kernels.

C kernels: `mcuqp_conv2d_s8` (portable, DSP) and, for a 1x1 conv the planner runs over its
own input, `mcuqp_conv2d_1x1_s8_inplace`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import DType, Graph, Op, OpKind, Padding, QParams, Requant, Tensor
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.common import activation_range, conv_requant, float_activation, float_pad, float_windows
from mcuqp.ops.registry import DENSE_INT8, EmitContext, Env, InPlace, KernelVariant, OpDef, packed_variants, variants
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, wrap_int32


@dataclass
class ConvAttrs:
    """conv2d and depthwise_conv2d. inputs: [x, weights, bias]; outputs: [y]."""

    stride: tuple[int, int]  # (h, w)
    padding: Padding
    dilation: tuple[int, int] = (1, 1)
    depth_multiplier: int = 1  # depthwise only
    input_offset: int = 0  # -input zero point
    output_offset: int = 0  # output zero point
    requant: Requant | None = None
    act_min: int = -128
    act_max: int = 127
    weight_format: str = "int8"  # how the C stores the weights (mcuqp.plan.formats); results are the same


# --------------------------------------------------------------------- numpy reference


def conv_output_hw(h: int, w: int, kh: int, kw: int, attrs: ConvAttrs) -> tuple[int, int]:
    """(OH, OW) of a (kh, kw) filter over an (h, w) input with attrs' padding, stride, dilation."""
    p = attrs.padding
    (sh, sw), (dh, dw) = attrs.stride, attrs.dilation
    oh = (h + p.top + p.bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + p.left + p.right - dw * (kw - 1) - 1) // sw + 1
    return oh, ow


def check_output_stage(
    op: str, requant: Requant | None, channels: int, output_offset: int, act_min: int, act_max: int, rounding: str
) -> Requant:
    """Validate what every conv-like op shares; returns the requant (which must be set)."""
    if rounding not in ("double", "single"):
        raise UnsupportedModelError(f"{op}: rounding must be 'double' or 'single', got {rounding!r}")
    if requant is None:
        raise UnsupportedModelError(f"{op}: no requantization parameters (was the op lowered?)")
    if requant.multiplier.size not in (1, channels) or requant.shift.size != requant.multiplier.size:
        raise UnsupportedModelError(
            f"{op}: {requant.multiplier.size} multipliers / {requant.shift.size} shifts for {channels} output channels"
        )
    if requant.shift.min() < -31 or requant.shift.max() > 30:
        raise UnsupportedModelError(f"{op}: requantization shifts must be in [-31, 30], got {requant.shift.tolist()}")
    if not -128 <= output_offset <= 127:
        raise UnsupportedModelError(f"{op}: output offset {output_offset} is outside [-128, 127]")
    if not -128 <= act_min <= act_max <= 127:
        raise UnsupportedModelError(f"{op}: invalid activation clamp [{act_min}, {act_max}]")
    return requant


def check_offset(op: str, name: str, offset: int) -> None:
    """Offsets are minus an int8 zero point."""
    if not -127 <= offset <= 128:
        raise UnsupportedModelError(f"{op}: {name} {offset} is outside [-127, 128] (minus an int8 zero point)")


def check_bias(op: str, bias: np.ndarray | None, channels: int) -> np.ndarray | None:
    """The bias as int64 (or None), checked to be `channels` int32 values."""
    if bias is None:
        return None
    b = np.asarray(bias)
    if not np.issubdtype(b.dtype, np.integer) or b.shape != (channels,):
        raise UnsupportedModelError(f"{op}: bias must be {channels} int32 values, got {b.dtype} {b.shape}")
    b = b.astype(np.int64)
    if b.size and (b.min() < -(1 << 31) or b.max() >= 1 << 31):
        raise UnsupportedModelError(f"{op}: bias values do not fit in int32")
    return b


def output_stage(
    acc: np.ndarray,
    bias: np.ndarray | None,
    requant: Requant,
    output_offset: int,
    act_min: int,
    act_max: int,
    rounding: Rounding,
) -> np.ndarray:
    """int8 outputs from int64 sums over the last (channel) axis: add the bias in int32,
    requantize per channel or per tensor, add the output offset and clamp."""
    if bias is not None:
        acc = acc + bias
    r = multiply_by_quantized_multiplier(
        wrap_int32(acc), requant.multiplier.astype(np.int64), requant.shift.astype(np.int64), rounding
    )
    # Single rounding can leave int32 for out-of-contract scales; the C truncates to int32.
    r = wrap_int32(r)
    return np.clip(r + output_offset, act_min, act_max).astype(np.int8)


def check_window(op: str, attrs: ConvAttrs) -> None:
    p = attrs.padding
    if min(attrs.stride) < 1 or min(attrs.dilation) < 1:
        raise UnsupportedModelError(f"{op}: stride {attrs.stride} and dilation {attrs.dilation} must be >= 1")
    if min(p.top, p.bottom, p.left, p.right) < 0:
        raise UnsupportedModelError(f"{op}: negative padding {p}")


def offset_windows(x: np.ndarray, kh: int, kw: int, attrs: ConvAttrs) -> np.ndarray:
    """(N, OH, OW, C, KH, KW) int16 view of the zero-padded (x + input_offset): the taps
    of every output position."""
    p = attrs.padding
    (sh, sw), (dh, dw) = attrs.stride, attrs.dilation
    oh, ow = conv_output_hw(x.shape[1], x.shape[2], kh, kw, attrs)
    if oh < 1 or ow < 1:
        raise UnsupportedModelError(
            f"filter {kh}x{kw} (dilation {attrs.dilation}) is larger than the padded input {x.shape[1:3]}"
        )
    xo = x.astype(np.int16) + np.int16(attrs.input_offset)
    xp = np.pad(xo, ((0, 0), (p.top, p.bottom), (p.left, p.right), (0, 0)))
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))[..., ::dh, ::dw]
    return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def conv2d_s8(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, attrs: ConvAttrs, rounding: Rounding = "double"
) -> np.ndarray:
    """x int8 (N, H, W, Cin), w int8 OHWI (Cout, KH, KW, Cin), bias int32 (Cout,) or None
    -> int8 (N, OH, OW, Cout)."""
    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"conv2d takes int8 NHWC input, got {x.dtype} {x.shape}")
    if w.dtype != np.int8 or w.ndim != 4 or min(w.shape) < 1:
        raise UnsupportedModelError(f"conv2d takes int8 OHWI weights, got {w.dtype} {w.shape}")
    cout, kh, kw, cin = w.shape
    if cin != x.shape[3]:
        raise UnsupportedModelError(f"conv2d weights {w.shape} do not match {x.shape[3]} input channels")
    check_window("conv2d", attrs)
    check_offset("conv2d", "input offset", attrs.input_offset)
    requant = check_output_stage(
        "conv2d", attrs.requant, cout, attrs.output_offset, attrs.act_min, attrs.act_max, rounding
    )
    b = check_bias("conv2d", bias, cout)

    win = offset_windows(x, kh, kw, attrs)  # (N, OH, OW, Cin, KH, KW)
    n, oh, ow = win.shape[:3]
    cols = win.reshape(n * oh * ow, cin * kh * kw).astype(np.int64)  # im2col (copies)
    filt = w.transpose(0, 3, 1, 2).reshape(cout, cin * kh * kw).astype(np.int64)
    acc = (cols @ filt.T).reshape(n, oh, ow, cout)
    return output_stage(acc, b, requant, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)


def _const(graph: Graph, op: Op, i: int) -> np.ndarray | None:
    return graph.tensors[op.inputs[i]].data if len(op.inputs) > i and op.inputs[i] else None


def _reference(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    return conv2d_s8(env[op.inputs[0]], _const(graph, op, 1), _const(graph, op, 2), op.attrs, rounding)


# --------------------------------------------------------------------- float executor and PTQ


def _float_run(op, xs: list[np.ndarray]) -> np.ndarray:
    _, kh, kw, _ = op.weight.shape
    win = float_windows(float_pad(xs[0], op.padding, 0.0), op, kh, kw)
    y = np.einsum("nhwcij,oijc->nhwo", win, op.weight, optimize=True)
    return float_activation(y + op.bias, op.activation).astype(np.float32)


def conv_from_float(op, ins: list[Tensor], y_q: QParams, rounding: Rounding, weight_scales: np.ndarray | None) -> ConvAttrs:
    """ConvAttrs of a float conv or depthwise op quantized with these scales."""
    x = ins[0]
    lo, hi = activation_range(op.activation, y_q.s, y_q.zp)
    return ConvAttrs(
        stride=op.stride,
        padding=op.padding,
        dilation=op.dilation,
        depth_multiplier=op.depth_multiplier,
        input_offset=-x.quant.zp,
        output_offset=y_q.zp,
        requant=conv_requant(x.quant.s, weight_scales, y_q.s, rounding),
        act_min=lo,
        act_max=hi,
    )


# --------------------------------------------------------------------- TFLite import


def lower_conv(ctx, op) -> list[tfl.LoweredOp]:
    """CONV_2D and DEPTHWISE_CONV_2D."""
    depthwise = op.opcode == "DEPTHWISE_CONV_2D"
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    tfl.rank4(x, "input")
    tfl.rank4(y, "output")
    w_t = ctx.t(op.inputs[1])
    tfl.rank4(w_t, "weights")
    cout = w_t.shape[3] if depthwise else w_t.shape[0]
    w = tfl.weights(ctx, op.inputs[1], 3 if depthwise else 0, cout)
    if np.any(w.zero_point != 0):
        raise tfl.Reject(f"weights '{w.name}' have a non-zero zero point (TFLite Micro needs symmetric weights)")
    multiplier = 1
    if depthwise:
        multiplier = op.options["DepthMultiplier"]
        if w.shape[0] != 1 or cout != x.shape[3] * multiplier:
            raise tfl.Reject(f"depthwise weights {list(w.shape)} do not match {x.shape[3]} input channels "
                             f"x depth multiplier {multiplier}")
    elif w.shape[3] != x.shape[3]:
        raise tfl.Reject(f"grouped convolution ({x.shape[3]} input channels, weights {list(w.shape)}) is not supported")
    if y.shape[3] != cout:
        raise tfl.Reject(f"output has {y.shape[3]} channels, weights have {cout}")
    dh, dw = op.options["DilationHFactor"], op.options["DilationWFactor"]
    padding = tfl.window(op, x, y, w.shape[1], w.shape[2], dh, dw)
    lo, hi = activation_range(tfl.activation(op), y.scale[0], int(y.zero_point[0]))
    attrs = ConvAttrs(
        stride=(op.options["StrideH"], op.options["StrideW"]),
        padding=padding,
        dilation=(dh, dw),
        depth_multiplier=multiplier,
        input_offset=-int(x.zero_point[0]),
        output_offset=int(y.zero_point[0]),
        requant=conv_requant(x.scale[0], w.scale, y.scale[0], ctx.rounding),
        act_min=lo,
        act_max=hi,
    )
    inputs = [ctx.ir_act(op.inputs[0]), ctx.ir_const(op.inputs[1]), *tfl.bias(ctx, op, cout)]
    kind = OpKind.DEPTHWISE_CONV2D if depthwise else OpKind.CONV2D
    return [tfl.LoweredOp(kind, inputs, ctx.ir_act(op.outputs[0]), attrs)]


# --------------------------------------------------------------------- C code


def emit_conv(e: EmitContext, layer, op: Op, kernel: KernelVariant) -> None:
    """conv2d and depthwise_conv2d; an in-place variant gets its planned scratch instead of
    a separate output buffer."""
    a = op.attrs
    x, y = e.graph.tensors[op.inputs[0]], e.graph.tensors[op.outputs[0]]
    w = e.graph.tensors[op.inputs[1]]
    params = e.struct(layer, "mcuqp_conv_params", {
        "input_offset": a.input_offset, "output_offset": a.output_offset,
        "stride_h": a.stride[0], "stride_w": a.stride[1],
        "pad_h": a.padding.top, "pad_w": a.padding.left,
        "dilation_h": a.dilation[0], "dilation_w": a.dilation[1],
        "depth_multiplier": a.depth_multiplier, "act_min": a.act_min, "act_max": a.act_max,
    })
    quant = e.requant(layer, a.requant)
    wname = e.weights(layer, op, kernel)
    bname = e.tensor_const(layer, "bias", op, 2)
    head = (f"{kernel.function}({params}, {quant}, {e.dims(layer, 'in', x.shape)}, {e.buf(x.name)}, "
            f"{e.dims(layer, 'filter', w.shape)}, {wname}, {bname}, {e.dims(layer, 'out', y.shape)}, ")
    packed = "" if kernel.weight_format == DENSE_INT8 else ", " + e.packed_scratch(layer, op)
    layer.call = head + (e.scratch(layer, op) if kernel.inplace else e.buf(y.name)) + packed + ")"


def weighted_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of conv2d / depthwise (per output: the filter taps it reads)."""
    y, w = graph.tensors[op.outputs[0]], graph.tensors[op.inputs[1]]
    _, kh, kw, cin = w.shape
    return int(y.size * kh * kw * (cin if op.kind == OpKind.CONV2D else 1))


def inplace_conv_scratch(graph: Graph, op: Op) -> int | None:
    """Bytes of scratch (in_c) with which mcuqp_conv2d_1x1_s8_inplace computes `op` over
    its input, or None when that kernel cannot: not a conv, a filter other than 1x1, a
    stride, dilation or padding, more output than input channels, another output h/w, or
    not int8."""
    if op.kind != OpKind.CONV2D or len(op.outputs) != 1 or len(op.inputs) < 2:
        return None
    if getattr(op.attrs, "weight_format", DENSE_INT8) != DENSE_INT8:
        return None
    a = op.attrs
    if tuple(getattr(a, "stride", ())) != (1, 1) or tuple(getattr(a, "dilation", ())) != (1, 1):
        return None
    pad = getattr(a, "padding", None)
    if pad is None or (pad.top, pad.bottom, pad.left, pad.right) != (0, 0, 0, 0):
        return None
    x, w, y = (graph.tensors.get(n) for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
    if x is None or w is None or y is None or x.is_const or len(x.shape) != 4 or len(w.shape) != 4:
        return None
    if len(y.shape) != 4 or x.dtype != DType.INT8 or y.dtype != DType.INT8 or min(x.shape) < 1:
        return None
    cout, kh, kw, cin = (int(v) for v in w.shape)
    if (kh, kw) != (1, 1) or cin != int(x.shape[3]) or not 1 <= cout <= cin:
        return None
    if tuple(y.shape) != (*tuple(x.shape[:3]), cout):
        return None
    return cin


OPS = (
    OpDef(
        kind=OpKind.CONV2D,
        accumulator_axes=(1, 2, 3),
        attrs=ConvAttrs,
        reference=_reference,
        emit=emit_conv,
        kernels=(
            *variants("mcuqp_conv2d_s8", "conv2d_s8.c", isa=("mve", "dsp")),
            *variants("mcuqp_conv2d_1x1_s8_inplace", "conv2d_1x1_s8_inplace.c", isa=("mve", "dsp"), inplace=True),
            *packed_variants("conv2d", xnor=True),
        ),
        macs=weighted_macs,
        inplace=InPlace(inplace_conv_scratch, "inplace_conv", prefix=True),
        float_run=_float_run,
        from_float=conv_from_float,
        weight_axis=0,
        fuses_activation=True,
        tflite={"CONV_2D": lower_conv},
    ),
)
