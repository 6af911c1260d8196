"""Hypothesis draws shared by the kernel fuzzers (tests/fuzz_kernels.py, tests/fuzz_packed.py):
zero points with their extremes, int8 values that saturate, conv geometries with at least
one output position, and a layer's quantization (kernel_cases.random_requant, edges on).
Not a test module."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import strategies as st

from kernel_cases import acc_spread, random_bias, random_clamp, random_requant
from mcuqp.ir import Padding
from mcuqp.ops.conv2d import ConvAttrs

ZP = st.one_of(st.sampled_from([-128, 127, 0, -1]), st.integers(-128, 127))
SEED = st.integers(0, 2**32 - 1)


def values(data, shape, lo: int = -128, hi: int = 127) -> np.ndarray:
    """int8 values: random, or saturating (all extremes, alternating extremes)."""
    mode = data.draw(st.sampled_from(["random"] * 5 + ["min", "max", "extremes"]))
    rng = np.random.default_rng(data.draw(SEED))
    if mode == "min":
        return np.full(shape, lo, np.int8)
    if mode == "max":
        return np.full(shape, hi, np.int8)
    if mode == "extremes":
        return np.where(rng.random(shape) < 0.5, lo, hi).astype(np.int8)
    return rng.integers(lo, hi + 1, shape).astype(np.int8)


def window(data, size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding with at least one output position."""
    eff = dilation * (k - 1) + 1
    before = data.draw(st.integers(0, eff))
    after = data.draw(st.integers(max(0, eff - size - before), eff))
    return before, after


def conv_geometry(data, max_hw: int = 9):
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    h, w = data.draw(st.integers(1, max_hw)), data.draw(st.integers(1, max_hw))
    (pt, pb), (pl, pr) = window(data, h, kh, sh, dh), window(data, w, kw, sw, dw)
    return (h, w), (kh, kw), ConvAttrs(stride=(sh, sw), padding=Padding(pt, pb, pl, pr), dilation=(dh, dw))


def quantized(data, rng, attrs, channels: int, taps: int, w: np.ndarray, rounding: str, cov=None):
    in_zp, out_zp = data.draw(ZP), data.draw(ZP)
    std = acc_spread(taps, -in_zp, w)
    lo, hi = random_clamp(rng, out_zp)
    a = replace(attrs, input_offset=-in_zp, output_offset=out_zp, act_min=lo, act_max=hi,
                requant=random_requant(rng, channels, std, rounding, edges=True))
    return a, random_bias(rng, channels, std, edges=True)


