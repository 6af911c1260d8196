"""Numpy twins of the packed-weight C kernels (runtime_c/src/*_sparse_s8.c,
*_lowbit_s8.c, *_xnor_s8.c): each computes its layer from the packed data the way the
kernel does (sparse: only the stored nonzeros; low-bit: decoded codes; fully binary:
mismatch counts of sign bits), then the shared output stage. By construction of the
formats (mcuqp/packing.py) each equals the dense reference on the unpacked weights.

Packed kernels take symmetric weights: filter_offset must be 0.
"""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ops.conv2d import ConvAttrs
from mcuqp.ops.fully_connected import FullyConnectedAttrs
from mcuqp.packing import LowBit, SparseDepthwise, SparseRows, unpack_lowbit
from mcuqp.quant.fixedpoint import Rounding
from mcuqp.ops.conv2d import check_bias, check_offset, check_output_stage, check_window, offset_windows, output_stage
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8


def _fc_checks(op: str, x: np.ndarray, rows: int, row_len: int, bias, attrs: FullyConnectedAttrs, rounding: str):
    if x.dtype != np.int8 or x.ndim != 2 or x.shape[1] != row_len:
        raise UnsupportedModelError(f"{op} takes int8 (batches, {row_len}) input, got {x.dtype} {x.shape}")
    if attrs.filter_offset != 0:
        raise UnsupportedModelError(f"{op}: packed weights are symmetric, filter offset must be 0")
    check_offset(op, "input offset", attrs.input_offset)
    rq = check_output_stage(op, attrs.requant, rows, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)
    return rq, check_bias(op, bias, rows)


def _conv_cols(op: str, x: np.ndarray, kh: int, kw: int, attrs: ConvAttrs) -> np.ndarray:
    """(N, OH, OW, kh * kw * Cin) int64 im2col of (x + input_offset), zero padding, OHWI order."""
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"{op} takes int8 NHWC input, got {x.dtype} {x.shape}")
    check_window(op, attrs)
    check_offset(op, "input offset", attrs.input_offset)
    win = offset_windows(x, kh, kw, attrs)  # (N, OH, OW, C, KH, KW)
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(*win.shape[:3], -1).astype(np.int64)


def _sparse_rows_acc(cols: np.ndarray, p: SparseRows) -> np.ndarray:
    """sum over the stored nonzeros of value * cols[..., column], per row: (..., rows)."""
    counts = p.counts.astype(np.int64).ravel()
    seg_of = np.repeat(np.arange(counts.size), counts)
    row_of = seg_of // p.segments
    col_of = (seg_of % p.segments) * 256 + p.index.astype(np.int64)
    contrib = cols[..., col_of] * p.values.astype(np.int64)  # (..., nnz)
    lead = int(np.prod(cols.shape[:-1]))
    flat = contrib.reshape(lead, contrib.shape[-1])
    acc = np.zeros((lead, p.rows), np.int64)
    for r in np.unique(row_of):  # rows with nonzeros; the others stay 0
        acc[:, r] = flat[:, row_of == r].sum(axis=1)
    return acc.reshape(*cols.shape[:-1], p.rows)


def fully_connected_sparse_s8(x: np.ndarray, p: SparseRows, bias: np.ndarray | None, attrs: FullyConnectedAttrs,
                              rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_fully_connected_sparse_s8: x int8 (B, in) -> int8 (B, rows)."""
    x = np.asarray(x)
    rq, b = _fc_checks("fully_connected_sparse", x, p.rows, p.row_len, bias, attrs, rounding)
    acc = _sparse_rows_acc(x.astype(np.int64) + attrs.input_offset, p)
    return output_stage(acc, b, rq, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)


def conv2d_sparse_s8(x: np.ndarray, p: SparseRows, kh: int, kw: int, bias: np.ndarray | None, attrs: ConvAttrs,
                     rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_conv2d_sparse_s8: x int8 NHWC, filter (rows, kh, kw, Cin) packed."""
    x = np.asarray(x)
    if p.row_len != kh * kw * x.shape[-1]:
        raise UnsupportedModelError(f"conv2d_sparse: rows of {p.row_len} do not match {kh}x{kw}x{x.shape[-1]}")
    cols = _conv_cols("conv2d_sparse", x, kh, kw, attrs)
    rq = check_output_stage("conv2d_sparse", attrs.requant, p.rows, attrs.output_offset, attrs.act_min,
                            attrs.act_max, rounding)
    acc = _sparse_rows_acc(cols, p)
    return output_stage(acc, check_bias("conv2d_sparse", bias, p.rows), rq, attrs.output_offset, attrs.act_min,
                        attrs.act_max, rounding)


def depthwise_conv2d_sparse_s8(x: np.ndarray, p: SparseDepthwise, kh: int, kw: int, bias: np.ndarray | None,
                               attrs: ConvAttrs, rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_depthwise_conv2d_sparse_s8: each channel sums its stored taps only."""
    x = np.asarray(x)
    op = "depthwise_conv2d_sparse"
    dm = attrs.depth_multiplier
    if p.taps != kh * kw or x.ndim != 4 or dm < 1 or p.channels != x.shape[3] * dm:
        raise UnsupportedModelError(f"{op}: packed filter of {p.channels} channels x {p.taps} taps does not match "
                                    f"{kh}x{kw} over {x.shape} with depth multiplier {dm}")
    cols = _conv_cols(op, x, kh, kw, attrs).reshape(*x.shape[:1], -1, kh * kw, x.shape[3])  # (N, P, taps, Cin)
    rq = check_output_stage(op, attrs.requant, p.channels, attrs.output_offset, attrs.act_min, attrs.act_max,
                            rounding)
    ch = np.repeat(np.arange(p.channels), p.counts.astype(np.int64))
    tap = p.index.astype(np.int64)
    contrib = cols[:, :, tap, ch // dm] * p.values.astype(np.int64)  # (N, P, nnz)
    acc = np.zeros((*contrib.shape[:2], p.channels), np.int64)
    for c in np.unique(ch):
        acc[..., c] = contrib[..., ch == c].sum(axis=-1)
    n, h, w = x.shape[0], *_out_hw(x, cols.shape[1], kh, kw, attrs)
    acc = acc.reshape(n, h, w, p.channels)
    return output_stage(acc, check_bias(op, bias, p.channels), rq, attrs.output_offset, attrs.act_min,
                        attrs.act_max, rounding)


def _out_hw(x: np.ndarray, pixels: int, kh: int, kw: int, attrs: ConvAttrs) -> tuple[int, int]:
    from mcuqp.ops.conv2d import conv_output_hw

    oh, ow = conv_output_hw(x.shape[1], x.shape[2], kh, kw, attrs)
    assert oh * ow == pixels
    return oh, ow


def fully_connected_lowbit_s8(x: np.ndarray, p: LowBit, bias: np.ndarray | None, attrs: FullyConnectedAttrs,
                              rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_fully_connected_lowbit_s8 (int4 / ternary / binary weights)."""
    x = np.asarray(x)
    rq, b = _fc_checks("fully_connected_lowbit", x, p.rows, p.row_len, bias, attrs, rounding)
    acc = (x.astype(np.int64) + attrs.input_offset) @ unpack_lowbit(p).astype(np.int64).T
    return output_stage(acc, b, rq, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)


def conv2d_lowbit_s8(x: np.ndarray, p: LowBit, kh: int, kw: int, bias: np.ndarray | None, attrs: ConvAttrs,
                     rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_conv2d_lowbit_s8."""
    x = np.asarray(x)
    if p.row_len != kh * kw * x.shape[-1]:
        raise UnsupportedModelError(f"conv2d_lowbit: rows of {p.row_len} do not match {kh}x{kw}x{x.shape[-1]}")
    cols = _conv_cols("conv2d_lowbit", x, kh, kw, attrs)
    rq = check_output_stage("conv2d_lowbit", attrs.requant, p.rows, attrs.output_offset, attrs.act_min,
                            attrs.act_max, rounding)
    acc = cols @ unpack_lowbit(p).astype(np.int64).T
    return output_stage(acc, check_bias("conv2d_lowbit", bias, p.rows), rq, attrs.output_offset, attrs.act_min,
                        attrs.act_max, rounding)


def depthwise_conv2d_lowbit_s8(x: np.ndarray, p: LowBit, kh: int, kw: int, bias: np.ndarray | None,
                               attrs: ConvAttrs, rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_depthwise_conv2d_lowbit_s8: the stream decoded to (1, kh, kw, C)."""
    channels = p.row_len // (kh * kw)
    if p.rows != 1 or channels * kh * kw != p.row_len:
        raise UnsupportedModelError(f"depthwise_conv2d_lowbit: a stream of {p.row_len} values is not {kh}x{kw}xC")
    w = unpack_lowbit(p).reshape(1, kh, kw, channels)
    return depthwise_conv2d_s8(x, w, bias, attrs, rounding)


def _sign_bits(op: str, x: np.ndarray, input_offset: int) -> np.ndarray:
    if input_offset != 0:
        raise UnsupportedModelError(f"{op}: fully binary layers take SIGN outputs (input offset 0)")
    if x.size and not np.all((x == 1) | (x == -1)):
        raise UnsupportedModelError(f"{op}: fully binary layers take inputs of -1 and +1 only")
    return x > 0


def fully_connected_xnor_s8(x: np.ndarray, p: LowBit, bias: np.ndarray | None, attrs: FullyConnectedAttrs,
                            rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_fully_connected_xnor_s8: acc = in - 2 * (sign mismatches)."""
    x = np.asarray(x)
    op = "fully_connected_xnor"
    if p.kind != "binary":
        raise UnsupportedModelError(f"{op} takes binary weights, got {p.kind}")
    rq, b = _fc_checks(op, x, p.rows, p.row_len, bias, attrs, rounding)
    xb = _sign_bits(op, x, attrs.input_offset)
    wb = unpack_lowbit(p) > 0
    mismatches = (xb[:, None, :] != wb[None, :, :]).sum(axis=-1)
    acc = p.row_len - 2 * mismatches.astype(np.int64)
    return output_stage(acc, b, rq, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)


def conv2d_xnor_s8(x: np.ndarray, p: LowBit, kh: int, kw: int, bias: np.ndarray | None, attrs: ConvAttrs,
                   rounding: Rounding = "double") -> np.ndarray:
    """Twin of mcuqp_conv2d_xnor_s8: per window, acc = taps inside the input - 2 * mismatches
    among them (taps in the padding count for nothing)."""
    x = np.asarray(x)
    op = "conv2d_xnor"
    if p.kind != "binary" or p.row_len != kh * kw * x.shape[-1]:
        raise UnsupportedModelError(f"{op} takes binary rows of {kh}x{kw}x{x.shape[-1]}, got {p.kind} {p.row_len}")
    _sign_bits(op, x, attrs.input_offset)
    cols = _conv_cols(op, x, kh, kw, attrs)  # values -1 / +1 inside, 0 in the padding
    rq = check_output_stage(op, attrs.requant, p.rows, attrs.output_offset, attrs.act_min, attrs.act_max, rounding)
    valid = cols != 0
    wb = unpack_lowbit(p) > 0
    mism = ((cols[..., None, :] > 0) != wb) & valid[..., None, :]
    acc = valid.sum(axis=-1)[..., None].astype(np.int64) - 2 * mism.sum(axis=-1).astype(np.int64)
    return output_stage(acc, check_bias(op, bias, p.rows), rq, attrs.output_offset, attrs.act_min, attrs.act_max,
                        rounding)
