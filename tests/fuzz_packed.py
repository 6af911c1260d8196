"""Hypothesis properties of the packed-weight kernels (runtime_c/src/*_sparse_s8.c,
*_lowbit_s8.c, *_xnor_s8.c and their DSP variants) for tests/fuzz_kernels.py: random
shapes down to one element, densities 0-100 % (empty rows, all-zero channels, several
256-column sparse segments), low-bit weights of 4, 2 and 1 bits, extreme zero points,
multipliers and shifts, saturating inputs; each compares the sanitized C with its numpy
twin (mcuqp/reference/packed.py) exactly. The C gets exactly the scratch the generated
code reserves, so an overrun is an AddressSanitizer report. Not a test module."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import strategies as st

from fuzz_draws import SEED, conv_geometry, quantized, values
from mcuqp.codegen.packed import PackedLayer
from mcuqp.ops.fully_connected import FullyConnectedAttrs
from packed_cases import OK, c_call, format_weights

LOWBIT = ("int4", "ternary", "binary")  # bits 4, 2, 1
DENSITY = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))


def _signs(data, shape) -> np.ndarray:
    """SIGN outputs (-1 / +1) for the fully binary kernels: random, all -1 or all +1."""
    mode = data.draw(st.sampled_from(["random"] * 3 + ["minus", "plus"]))
    if mode != "random":
        return np.full(shape, -1 if mode == "minus" else 1, np.int8)
    rng = np.random.default_rng(data.draw(SEED))
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)


def _check(lib, rounding, data, op: str, fmt: str, x_shape, w_shape, attrs, channels: int, taps: int) -> None:
    rng = np.random.default_rng(data.draw(SEED))
    axis = 3 if op == "depthwise" else 0
    w = format_weights(rng, fmt, w_shape, data.draw(DENSITY), data.draw(st.booleans()), axis)
    x = _signs(data, x_shape) if fmt == "xnor" else values(data, x_shape)
    a, bias = quantized(data, rng, attrs, channels, taps, w, rounding)
    if fmt == "xnor":
        a = replace(a, input_offset=0)  # the kernels take SIGN outputs
    ly = PackedLayer(op, fmt, tuple(x_shape), w, bias, a)
    want = ly.reference(x, rounding)
    rc, got = c_call(lib, ly, x, want.shape)
    assert rc == OK and np.array_equal(got, want), (ly.kernel, fmt, x.shape, w.shape, a)


def _fc(fmts, lib, rounding, data):
    fmt = data.draw(st.sampled_from(fmts))
    batches = data.draw(st.integers(1, 3))
    cin = data.draw(st.one_of(st.integers(1, 40), st.integers(200, 600)))  # one or several sparse segments
    cout = data.draw(st.integers(1, 24))
    _check(lib, rounding, data, "fc", fmt, (batches, cin), (cout, cin), FullyConnectedAttrs(), cout, cin)


def _conv(fmts, lib, rounding, data):
    fmt = data.draw(st.sampled_from(fmts))
    (h, w), (kh, kw), geo = conv_geometry(data)
    n, cin = data.draw(st.integers(1, 2)), data.draw(st.one_of(st.integers(1, 9), st.integers(10, 36)))
    cout = data.draw(st.integers(1, 16))
    _check(lib, rounding, data, "conv2d", fmt, (n, h, w, cin), (cout, kh, kw, cin), geo, cout, kh * kw * cin)


def _depthwise(fmts, lib, rounding, data):
    fmt = data.draw(st.sampled_from(fmts))
    (h, w), (kh, kw), geo = conv_geometry(data)
    n, cin = data.draw(st.integers(1, 2)), data.draw(st.one_of(st.integers(1, 7), st.integers(8, 20)))
    mult = data.draw(st.integers(1, 3))
    geo = replace(geo, depth_multiplier=mult)
    _check(lib, rounding, data, "depthwise", fmt, (n, h, w, cin), (1, kh, kw, cin * mult), geo, cin * mult, kh * kw)


def prop_fc_sparse(lib, rounding, data):
    _fc(("sparse",), lib, rounding, data)


def prop_conv_sparse(lib, rounding, data):
    _conv(("sparse",), lib, rounding, data)


def prop_depthwise_sparse(lib, rounding, data):
    _depthwise(("sparse",), lib, rounding, data)


def prop_fc_lowbit(lib, rounding, data):
    _fc(LOWBIT, lib, rounding, data)


def prop_conv_lowbit(lib, rounding, data):
    _conv(LOWBIT, lib, rounding, data)


def prop_depthwise_lowbit(lib, rounding, data):
    _depthwise(LOWBIT, lib, rounding, data)


def prop_fc_xnor(lib, rounding, data):
    _fc(("xnor",), lib, rounding, data)


def prop_conv_xnor(lib, rounding, data):
    _conv(("xnor",), lib, rounding, data)


# (kernel, property): the KERNELS rows of tests/fuzz_kernels.py (on the DSP build too where
# runtime_c/src/dsp/ has a variant)
PACKED = [
    ("fully_connected_sparse_s8", prop_fc_sparse),
    ("conv2d_sparse_s8", prop_conv_sparse),
    ("depthwise_conv2d_sparse_s8", prop_depthwise_sparse),
    ("fully_connected_lowbit_s8", prop_fc_lowbit),
    ("conv2d_lowbit_s8", prop_conv_lowbit),
    ("depthwise_conv2d_lowbit_s8", prop_depthwise_lowbit),
    ("fully_connected_xnor_s8", prop_fc_xnor),
    ("conv2d_xnor_s8", prop_conv_xnor),
]
