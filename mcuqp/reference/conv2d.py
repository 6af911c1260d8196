"""2-D convolution, int8 NHWC (TFLite int8 ConvPerChannel semantics), and the pieces
the depthwise and fully-connected references share with it: argument checks and the
output stage (bias, requantization, output offset, clamp).

Taps that fall into the padding contribute nothing: the input offset is added to
in-bounds inputs only, which is the same as padding (x + input_offset) with zeros.
The accumulator is TFLite's int32; it wraps in two's complement like the C kernels.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import ConvAttrs, Requant
from mcuqp.quant.fixedpoint import Rounding, multiply_by_quantized_multiplier, wrap_int32


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
