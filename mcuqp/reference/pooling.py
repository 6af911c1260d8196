"""Max and average pooling, int8 NHWC (TFLite int8 reference semantics).

Windows cover only the in-bounds part of the input: padding never wins a max and is
not counted in an average. The output size follows from the explicit padding:
OH = (H + top + bottom - FH) // stride_h + 1.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import PoolAttrs


def pool_output_hw(h: int, w: int, attrs: PoolAttrs) -> tuple[int, int]:
    """(OH, OW) for an (h, w) input."""
    fh, fw = attrs.filter
    sh, sw = attrs.stride
    p = attrs.padding
    return (h + p.top + p.bottom - fh) // sh + 1, (w + p.left + p.right - fw) // sw + 1


def _windows(x: np.ndarray, attrs: PoolAttrs, fill: int) -> np.ndarray:
    """(N, OH, OW, C, FH, FW) int32 view of the padded input's windows."""
    if x.dtype != np.int8 or x.ndim != 4:
        raise UnsupportedModelError(f"pooling takes int8 NHWC input, got {x.dtype} {x.shape}")
    fh, fw = attrs.filter
    sh, sw = attrs.stride
    p = attrs.padding
    if min(fh, fw, sh, sw) < 1 or min(p.top, p.bottom, p.left, p.right) < 0:
        raise UnsupportedModelError(f"invalid pooling filter {attrs.filter}, stride {attrs.stride} or padding {p}")
    if not -128 <= attrs.act_min <= attrs.act_max <= 127:
        raise UnsupportedModelError(f"invalid pooling clamp [{attrs.act_min}, {attrs.act_max}]")
    oh, ow = pool_output_hw(x.shape[1], x.shape[2], attrs)
    if oh < 1 or ow < 1:
        raise UnsupportedModelError(f"pooling window {attrs.filter} is larger than the padded input {x.shape[1:3]}")
    xp = np.pad(x.astype(np.int32), ((0, 0), (p.top, p.bottom), (p.left, p.right), (0, 0)), constant_values=fill)
    win = sliding_window_view(xp, (fh, fw), axis=(1, 2))
    return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def max_pool2d_s8(x: np.ndarray, attrs: PoolAttrs) -> np.ndarray:
    # -128 padding equals TFLite's "lowest" start value: it never beats a real input.
    m = _windows(x, attrs, -128).max(axis=(-2, -1))
    return np.clip(m, attrs.act_min, attrs.act_max).astype(np.int8)


def avg_pool2d_s8(x: np.ndarray, attrs: PoolAttrs) -> np.ndarray:
    s = _windows(x, attrs, 0).sum(axis=(-2, -1), dtype=np.int64)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.int8)
    count = _windows(ones, attrs, 0).sum(axis=(-2, -1), dtype=np.int64)
    if (count == 0).any():
        raise UnsupportedModelError("average pool has a window that lies entirely in the padding")
    half = count // 2
    # C division truncates toward zero: TFLite's round-half-away-from-zero average.
    avg = np.where(s > 0, (s + half) // count, -((half - s) // count))
    return np.clip(avg, attrs.act_min, attrs.act_max).astype(np.int8)
