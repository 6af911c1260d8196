"""Property-based fuzzing of every C kernel (runtime_c/src, and runtime_c/src/dsp through
their host twins) against its numpy twin, with the C built under AddressSanitizer and
UndefinedBehaviorSanitizer (-fno-sanitize-recover: the first report aborts the process).

Not a pytest module: tests/test_fuzz_kernels.py runs it in a subprocess with the ASan
runtime preloaded (ctypes loads the sanitized library into a Python that was not built
with ASan) and checks its exit status, its stderr and the counts it prints:

    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        python tests/fuzz_kernels.py [--scale 1.0] [--canary]

Hypothesis draws the structure of each case (shapes down to one element and odd sizes,
strides, paddings, dilations, depth multipliers, zero points including the extremes,
clamps, saturating inputs) and a seed for the bulk values; requantization multipliers and
shifts come from kernel_cases.random_requant (per-channel, from 2^-32 to 2^30 effective
scales, INT32_MIN and dead channels). Every case compares the whole output exactly.
`derandomize` makes a CI run reproducible; MCUQP_FUZZ_SEED picks another sequence.
"""
from __future__ import annotations

import argparse
import ctypes as C
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostlib  # noqa: E402
from fuzz_draws import SEED, ZP, conv_geometry, quantized, values  # noqa: E402
from fuzz_packed import PACKED  # noqa: E402
from kernel_cases import c_conv, c_fc, random_weights  # noqa: E402
from mcuqp.ir import Padding  # noqa: E402
from mcuqp.ops.concatenation import ConcatAttrs  # noqa: E402
from mcuqp.ops.conv2d import ConvAttrs  # noqa: E402
from mcuqp.ops.fully_connected import FullyConnectedAttrs  # noqa: E402
from mcuqp.ops.logistic import logistic_attrs  # noqa: E402
from mcuqp.ops.mean import mean_attrs  # noqa: E402
from mcuqp.ops.mul import MulAttrs, mul_attrs  # noqa: E402
from mcuqp.ops.pad import PadAttrs  # noqa: E402
from mcuqp.ops.pool import PoolAttrs  # noqa: E402
from mcuqp.ops.quantize import quantize_attrs  # noqa: E402
from mcuqp.ops.sign import SignAttrs  # noqa: E402
from mcuqp.ops.add import add_attrs  # noqa: E402
from mcuqp.ops.softmax import softmax_attrs  # noqa: E402
from mcuqp.ops.add import add_s8  # noqa: E402
from mcuqp.ops.concatenation import concatenation_s8  # noqa: E402
from mcuqp.ops.conv2d import conv2d_s8, conv_output_hw  # noqa: E402
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8  # noqa: E402
from mcuqp.ops.fully_connected import fully_connected_s8  # noqa: E402
from mcuqp.ops.logistic import logistic_s8  # noqa: E402
from mcuqp.ops.mean import mean_s8  # noqa: E402
from mcuqp.ops.mul import mul_s8  # noqa: E402
from mcuqp.ops.pad import pad_s8  # noqa: E402
from mcuqp.ops.pool import avg_pool2d_s8, max_pool2d_s8, pool_output_hw  # noqa: E402
from mcuqp.ops.quantize import quantize_s8  # noqa: E402
from mcuqp.ops.reshape import reshape_s8  # noqa: E402
from mcuqp.ops.sign import sign_s8  # noqa: E402
from mcuqp.ops.softmax import softmax_s8  # noqa: E402
from test_kernels_concatenation import c_concat  # noqa: E402
from test_kernels_conv_inplace import c_inplace as c_conv_1x1_inplace  # noqa: E402
from test_kernels_depthwise_inplace import c_inplace as c_depthwise_inplace  # noqa: E402
from test_kernels_logistic import c_logistic  # noqa: E402
from test_kernels_mean import c_mean  # noqa: E402
from test_kernels_mul import c_mul  # noqa: E402
from test_kernels_pad import c_pad  # noqa: E402
from test_kernels_pool_add_softmax import c_add, c_pool, c_softmax  # noqa: E402
from test_kernels_quantize import c_quantize  # noqa: E402
from test_kernels_sign import c_sign  # noqa: E402
from test_kernels_hard_swish import c_hard_swish, random_quant as hard_swish_quant  # noqa: E402
from test_kernels_leaky_relu import c_leaky_relu, random_attrs as leaky_relu_random  # noqa: E402
from test_kernels_relu import ACTS as RELU_ACTS, c_relu, random_quant as relu_quant  # noqa: E402
from mcuqp.ops.hard_swish import hard_swish_s8  # noqa: E402
from mcuqp.ops.leaky_relu import leaky_relu_s8  # noqa: E402
from mcuqp.ops.relu import relu_attrs, relu_s8  # noqa: E402
from mcuqp.ops.tanh import tanh_s8  # noqa: E402
from test_kernels_broadcast import check_case as broadcast_case  # noqa: E402
from test_kernels_tanh import c_tanh  # noqa: E402
from mcuqp.ops.resize_nearest_neighbor import resize_attrs, resize_nearest_neighbor_s8  # noqa: E402
from mcuqp.ops.strided_slice import StridedSliceAttrs, strided_slice_s8  # noqa: E402
from mcuqp.ops.transpose import TransposeAttrs, transpose_s8  # noqa: E402
from test_kernels_resize_nearest_neighbor import c_resize  # noqa: E402
from test_kernels_strided_slice import c_slice  # noqa: E402
from test_kernels_transpose import c_transpose  # noqa: E402

SRC = hostlib.RUNTIME_DIR / "src"
DSP = SRC / "dsp"
INCLUDE = hostlib.RUNTIME_DIR / "include"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
OK = 0

# ---------------------------------------------------------------------------- builds


def build(dsp: bool, single_rounding: bool) -> Path:
    """The portable kernels (or the DSP variants plus the portable kernels they do not
    replace) as one sanitized shared library, cached by content."""
    portable = sorted(SRC.glob("*.c"))
    dsp_files = sorted(DSP.glob("*.c")) if dsp else []
    srcs = dsp_files + [p for p in portable if p.name not in {d.name for d in dsp_files}]
    flags = [*hostlib.HOST_CFLAGS, *SANITIZE] + (["-DMCUQP_SINGLE_ROUNDING=1"] if single_rounding else [])
    h = hashlib.sha256(" ".join(flags).encode())
    for p in srcs + sorted(INCLUDE.glob("*.h")):
        h.update(str(p).encode() + p.read_bytes())
    cache = Path(os.environ.get("MCUQP_CACHE", Path(tempfile.gettempdir()) / "mcuqp-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"libmcuqp-asan-{h.hexdigest()[:16]}.so"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run(["gcc", *flags, "-shared", "-I", str(INCLUDE), *map(str, srcs), "-o", str(tmp)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"sanitized build failed:\n{r.stderr}")
        os.replace(tmp, out)
    return out


CANARY = r"""
#include <stdint.h>
#include <stdlib.h>
int32_t mcuqp_canary_asan(int32_t n)
{
    volatile int8_t *p = calloc((size_t)n, 1);
    int32_t v = p[n]; /* one byte past the block */
    free((void *)p);
    return v;
}
int32_t mcuqp_canary_ubsan(int32_t n)
{
    int32_t big = INT32_MAX - 1;
    return big + n; /* signed overflow for n >= 2 */
}
"""


def canary(kind: str) -> None:
    """A deliberate heap overflow (asan) or signed overflow (ubsan), built with the same
    flags: the sanitizer must abort the process before the print."""
    with tempfile.TemporaryDirectory() as d:
        src, so = Path(d) / "canary.c", Path(d) / "canary.so"
        src.write_text(CANARY)
        subprocess.run(["gcc", *hostlib.HOST_CFLAGS, *SANITIZE, "-shared", str(src), "-o", str(so)], check=True)
        fn = getattr(C.CDLL(str(so)), f"mcuqp_canary_{kind}")
        print("canary survived:", fn(C.c_int32(16)))


# ---------------------------------------------------------------------------- properties
# Each takes (lib, rounding, data) and asserts C == numpy exactly.


def prop_conv(lib, rounding, data):
    (h, w), (kh, kw), geo = conv_geometry(data)
    n, cin, cout = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    rng = np.random.default_rng(data.draw(SEED))
    x = values(data, (n, h, w, cin))
    wt = random_weights(rng, (cout, kh, kw, cin), edges=True)
    a, bias = quantized(data, rng, geo, cout, kh * kw * cin, wt, rounding)
    want = conv2d_s8(x, wt, bias, a, rounding=rounding)
    rc, got = c_conv(lib, False, x, wt, bias, a, want.shape)
    assert rc == OK and np.array_equal(got, want), (x.shape, wt.shape, a)


def prop_depthwise(lib, rounding, data):
    (h, w), (kh, kw), geo = conv_geometry(data)
    n, cin, mult = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(SEED))
    x = values(data, (n, h, w, cin))
    wt = random_weights(rng, (1, kh, kw, cin * mult), edges=True)
    a, bias = quantized(data, rng, replace(geo, depth_multiplier=mult), cin * mult, kh * kw, wt, rounding)
    want = depthwise_conv2d_s8(x, wt, bias, a, rounding=rounding)
    rc, got = c_conv(lib, True, x, wt, bias, a, want.shape)
    assert rc == OK and np.array_equal(got, want), (x.shape, wt.shape, a)


def prop_fc(lib, rounding, data):
    batches, cin, cout = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 48)), data.draw(st.integers(1, 12))
    rng = np.random.default_rng(data.draw(SEED))
    x = values(data, (batches, cin))
    wt = random_weights(rng, (cout, cin), edges=True)
    w_zp = data.draw(st.one_of(st.just(0), ZP))
    a, bias = quantized(data, rng, FullyConnectedAttrs(filter_offset=-w_zp), cout, cin,
                        wt.astype(np.int16) - w_zp, rounding)
    want = fully_connected_s8(x, wt, bias, a, rounding=rounding)
    rc, got = c_fc(lib, x, wt, bias, a)
    assert rc == OK and np.array_equal(got, want), (x.shape, wt.shape, a)


def prop_conv_1x1_inplace(lib, rounding, data):
    n, h, w = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    cin = data.draw(st.integers(1, 40))
    cout = data.draw(st.integers(1, cin))
    rng = np.random.default_rng(data.draw(SEED))
    x = values(data, (n, h, w, cin))
    wt = random_weights(rng, (cout, 1, 1, cin), edges=True)
    a, bias = quantized(data, rng, ConvAttrs((1, 1), Padding()), cout, cin, wt, rounding)
    want = conv2d_s8(x, wt, bias, a, rounding=rounding)
    rc, region, after, buf = c_conv_1x1_inplace(lib, x, wt, bias, a)
    assert rc == OK and np.array_equal(region[:want.size].reshape(want.shape), want), (x.shape, wt.shape, a)
    assert (after == 66).all() and (buf[:64] == 55).all() and (buf[-64:] == 55).all()


def prop_depthwise_inplace(lib, rounding, data):
    kh, kw = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    pt, pl = data.draw(st.integers(0, eh - 1)), data.draw(st.integers(0, ew - 1))
    n, h, w, c = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)),
                  data.draw(st.integers(1, 24)))
    rng = np.random.default_rng(data.draw(SEED))
    x = values(data, (n, h, w, c))
    wt = random_weights(rng, (1, kh, kw, c), edges=True)
    geo = ConvAttrs((1, 1), Padding(pt, eh - 1 - pt, pl, ew - 1 - pl), dilation=(dh, dw))
    a, bias = quantized(data, rng, geo, c, kh * kw, wt, rounding)
    want = depthwise_conv2d_s8(x, wt, bias, a, rounding=rounding)
    rc, got, buf = c_depthwise_inplace(lib, x, wt, bias, a)
    assert rc == OK and np.array_equal(got, want), (x.shape, wt.shape, a)
    assert (buf[:64] == 55).all() and (buf[-64:] == 55).all()


def _pool(kind, lib, rounding, data):
    fh, fw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    pt, pb, pl, pr = (data.draw(st.integers(0, f - 1)) for f in (fh, fh, fw, fw))
    h = data.draw(st.integers(max(1, fh - pt - pb), 10))
    w = data.draw(st.integers(max(1, fw - pl - pr), 10))
    x = values(data, (data.draw(st.integers(1, 2)), h, w, data.draw(st.integers(1, 9))))
    lo = data.draw(st.integers(-128, 127))
    a = PoolAttrs((fh, fw), (sh, sw), Padding(pt, pb, pl, pr), lo, data.draw(st.integers(lo, 127)))
    want = (max_pool2d_s8 if kind == "max" else avg_pool2d_s8)(x, a)
    assert want.shape[1:3] == pool_output_hw(h, w, a)
    rc, got = c_pool(lib, f"mcuqp_{kind}_pool2d_s8", x, a, want.shape[1:3])
    assert rc == OK and np.array_equal(got, want), (x.shape, a)


def prop_max_pool(lib, rounding, data):
    _pool("max", lib, rounding, data)


def prop_avg_pool(lib, rounding, data):
    _pool("avg", lib, rounding, data)


SCALE = st.floats(1e-4, 1.0).map(lambda v: float(np.float32(v)))


def prop_add(lib, rounding, data):
    shape = tuple(data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    x1, x2 = values(data, shape), values(data, shape)
    act = data.draw(st.sampled_from([None, "relu", "relu6"]))
    a = add_attrs(data.draw(SCALE), data.draw(ZP), data.draw(SCALE), data.draw(ZP), data.draw(SCALE), data.draw(ZP),
                  act)
    want = add_s8(x1, x2, a, rounding)
    rc, got = c_add(lib, x1, x2, a)
    assert rc == OK and np.array_equal(got, want), (shape, a)


def prop_mul(lib, rounding, data):
    full = tuple(data.draw(st.integers(1, 5)) for _ in range(4))
    s1 = tuple(d if data.draw(st.booleans()) else 1 for d in full)
    s2 = tuple(d if data.draw(st.booleans()) else 1 for d in full)
    x1, x2 = values(data, s1), values(data, s2)
    if data.draw(st.booleans()):
        a = mul_attrs(data.draw(SCALE), data.draw(ZP), data.draw(SCALE), data.draw(ZP), data.draw(SCALE),
                      data.draw(ZP), data.draw(st.sampled_from([None, "relu", "relu6"])))
    else:  # anything the C contract allows
        lo = data.draw(st.integers(-128, 127))
        a = MulAttrs(data.draw(st.integers(-127, 128)), data.draw(st.integers(-127, 128)), data.draw(ZP),
                     data.draw(st.integers(1 << 30, (1 << 31) - 1)), data.draw(st.integers(-31, 7)), lo,
                     data.draw(st.integers(lo, 127)))
    want = mul_s8(x1, x2, a, rounding)
    rc, got = c_mul(lib, x1, x2, a, np.broadcast_shapes(s1, s2))
    assert rc == OK and np.array_equal(got, want), (s1, s2, a)


def prop_softmax(lib, rounding, data):
    rows, depth = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 40))
    x = values(data, (rows, depth))
    a = softmax_attrs(data.draw(st.floats(1e-3, 2.0)), data.draw(st.sampled_from([1.0, 0.5, 2.0])), rounding)
    want = softmax_s8(x, a, rounding)
    rc, got = c_softmax(lib, x, a)
    assert rc == OK and np.array_equal(got, want), (x.shape, a)


def prop_mean(lib, rounding, data):
    n, h, w, c = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12)),
                  data.draw(st.integers(1, 8)))
    x = values(data, (n, h, w, c))
    a = mean_attrs(data.draw(SCALE), data.draw(ZP), data.draw(SCALE), data.draw(ZP), h * w)
    want = mean_s8(x, a, rounding)
    rc, got = c_mean(lib, x, a)
    assert rc == OK and np.array_equal(got, want), (x.shape, a)


def prop_pad(lib, rounding, data):
    rank = data.draw(st.integers(2, 4))
    shape = (data.draw(st.integers(1, 2)), *(data.draw(st.integers(1, 5)) for _ in range(rank - 1)))
    x = values(data, shape)
    paddings = ((0, 0), *((data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))) for _ in range(rank - 1)))
    a = PadAttrs(paddings=paddings, pad_value=data.draw(ZP))
    want = pad_s8(x, a)
    rc, got = c_pad(lib, x, a)
    assert rc == OK and np.array_equal(got, want), (shape, a)


def prop_concatenation(lib, rounding, data):
    rank = data.draw(st.integers(2, 4))
    base = [data.draw(st.integers(1, 2))] + [data.draw(st.integers(1, 5)) for _ in range(rank - 1)]
    axis = data.draw(st.integers(1, rank - 1))
    xs = []
    for _ in range(data.draw(st.integers(1, 4))):
        shape = list(base)
        shape[axis] = data.draw(st.integers(0, 4))
        xs.append(values(data, tuple(shape)))
    want = concatenation_s8(xs, ConcatAttrs(axis=axis))
    rc, got = c_concat(lib, xs, axis)
    assert rc == OK and np.array_equal(got, want), ([x.shape for x in xs], axis)


def _elementwise(data) -> np.ndarray:
    return values(data, (data.draw(st.integers(1, 300)),))


def prop_logistic(lib, rounding, data):
    x = _elementwise(data)
    a = logistic_attrs(float(10.0 ** data.draw(st.floats(-3.5, 0.7))), data.draw(ZP))
    rc, got = c_logistic(lib, x, a)
    assert rc == OK and np.array_equal(got, logistic_s8(x, a, rounding)), a


def prop_quantize(lib, rounding, data):
    x = _elementwise(data)
    a = quantize_attrs(float(10.0 ** data.draw(st.floats(-4, 1))), data.draw(ZP),
                       float(10.0 ** data.draw(st.floats(-4, 1))), data.draw(ZP))
    rc, got = c_quantize(lib, x, a)
    assert rc == OK and np.array_equal(got, quantize_s8(x, a, rounding)), a


def prop_sign(lib, rounding, data):
    x = _elementwise(data)
    a = SignAttrs(data.draw(ZP))
    rc, got = c_sign(lib, x, a)
    assert rc == OK and np.array_equal(got, sign_s8(x, a)), a


def prop_relu(lib, rounding, data):
    x = _elementwise(data)
    a = relu_attrs(data.draw(st.sampled_from(RELU_ACTS)), *relu_quant(np.random.default_rng(data.draw(SEED))))
    rc, got = c_relu(lib, x, a)
    assert rc == OK and np.array_equal(got, relu_s8(x, a, rounding)), a


def prop_leaky_relu(lib, rounding, data):
    x = _elementwise(data)
    _, a = leaky_relu_random(np.random.default_rng(data.draw(SEED)))
    rc, got = c_leaky_relu(lib, x, a)
    assert rc == OK and np.array_equal(got, leaky_relu_s8(x, a, rounding)), a


def prop_hard_swish(lib, rounding, data):
    x = _elementwise(data)
    _, a = hard_swish_quant(np.random.default_rng(data.draw(SEED)))
    rc, got = c_hard_swish(lib, x, a)
    assert rc == OK and np.array_equal(got, hard_swish_s8(x, a, rounding)), a


def prop_reshape(lib, rounding, data):
    from mcuqp.ops.reshape import ReshapeAttrs

    x = values(data, (1, data.draw(st.integers(1, 64))))
    want = reshape_s8(x, ReshapeAttrs((1, x.size)))
    y = np.full(x.size, 99, np.int8)
    rc = lib.mcuqp_reshape_s8(C.c_int32(x.size), hostlib.ptr(np.ascontiguousarray(x)), hostlib.ptr(y))
    assert rc == OK and np.array_equal(y.reshape(want.shape), want)


def _broadcast(op: str):
    def prop(lib, rounding, data):
        broadcast_case(lib, rounding, op, data)

    return prop


def prop_tanh(lib, rounding, data):
    x = _elementwise(data)
    a = logistic_attrs(float(10.0 ** data.draw(st.floats(-3.5, 0.7))), data.draw(ZP))
    rc, got = c_tanh(lib, x, a)
    assert rc == OK and np.array_equal(got, tanh_s8(x, a, rounding)), a


def _rank5_shape(data, hi: int = 4) -> tuple[int, ...]:
    return tuple(data.draw(st.integers(1, hi)) for _ in range(data.draw(st.integers(1, 5))))


def prop_transpose(lib, rounding, data):
    x = values(data, _rank5_shape(data))
    perm = tuple(data.draw(st.permutations(range(x.ndim))))
    rc, got = c_transpose(lib, x, perm)
    assert rc == OK and np.array_equal(got, transpose_s8(x, TransposeAttrs(perm))), (x.shape, perm)


def prop_strided_slice(lib, rounding, data):
    x = values(data, _rank5_shape(data, 6))
    begin, strides, sizes = [], [], []
    for size in x.shape:
        s = data.draw(st.integers(-size, size).filter(lambda v: v != 0))
        b = data.draw(st.integers(0, size - 1))
        begin.append(b)
        strides.append(s)
        sizes.append(data.draw(st.integers(0, b // -s + 1 if s < 0 else (size - 1 - b) // s + 1)))
    a = StridedSliceAttrs(tuple(begin), tuple(strides), tuple(sizes))
    rc, got = c_slice(lib, x, a)
    assert rc == OK and np.array_equal(got, strided_slice_s8(x, a)), (x.shape, a)


def prop_resize_nearest_neighbor(lib, rounding, data):
    x = values(data, (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)),
                      data.draw(st.integers(1, 5))))
    a = resize_attrs(x.shape[1:3], (data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))),
                     data.draw(st.booleans()), data.draw(st.booleans()))
    rc, got = c_resize(lib, x, a)
    assert rc == OK and np.array_equal(got, resize_nearest_neighbor_s8(x, a)), (x.shape, a)


# (name, property, weight: relative number of examples, run on the DSP build too)
PACKED_WEIGHT = 1  # 20 packed jobs (~3,000 cases); the run stays ~2 min on 2 cores, >= 10,000 cases
KERNELS = [
    ("conv2d_s8", prop_conv, 2, True),
    ("depthwise_conv2d_s8", prop_depthwise, 2, True),
    ("fully_connected_s8", prop_fc, 2, True),
    ("conv2d_1x1_s8_inplace", prop_conv_1x1_inplace, 2, True),
    ("depthwise_conv2d_s8_inplace", prop_depthwise_inplace, 2, True),
    ("max_pool2d_s8", prop_max_pool, 1, False),
    ("avg_pool2d_s8", prop_avg_pool, 1, False),
    ("add_s8", prop_add, 1, False),
    ("mul_s8", prop_mul, 1, False),
    ("softmax_s8", prop_softmax, 1, False),
    ("mean_s8", prop_mean, 1, False),
    ("pad_s8", prop_pad, 1, False),
    ("concatenation_s8", prop_concatenation, 1, False),
    ("logistic_s8", prop_logistic, 1, False),
    ("quantize_s8", prop_quantize, 1, False),
    ("sign_s8", prop_sign, 1, False),
    ("reshape_s8", prop_reshape, 1, False),
    ("relu_s8", prop_relu, 1, False),
    ("leaky_relu_s8", prop_leaky_relu, 1, False),
    ("hard_swish_s8", prop_hard_swish, 1, False),
    ("add_broadcast_s8", _broadcast("add"), 1, False),
    ("sub_s8", _broadcast("sub"), 1, False),
    ("maximum_s8", _broadcast("maximum"), 1, False),
    ("minimum_s8", _broadcast("minimum"), 1, False),
    ("prelu_s8", _broadcast("prelu"), 1, False),
    ("tanh_s8", prop_tanh, 1, False),
    ("transpose_s8", prop_transpose, 1, False),
    ("strided_slice_s8", prop_strided_slice, 1, False),
    ("resize_nearest_neighbor_s8", prop_resize_nearest_neighbor, 1, False),
    *((name, prop, PACKED_WEIGHT, (DSP / f"{name}.c").exists()) for name, prop in PACKED),
]
BASE_EXAMPLES = 150  # per unit of weight, per rounding mode


def run(name: str, prop, lib, rounding: str, examples: int) -> int:
    count = 0
    fixed = os.environ.get("MCUQP_FUZZ_SEED")

    @settings(max_examples=examples, deadline=None, database=None, derandomize=fixed is None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(data=st.data())
    def check(data):
        nonlocal count
        count += 1
        prop(lib, rounding, data)

    if fixed is not None:
        check = seed(int(fixed))(check)
    check()
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the number of examples")
    ap.add_argument("--only", default=None, help="comma-separated kernel names")
    ap.add_argument("--shard", default="0/1", help="I/N: run every N-th kernel job starting at I (parallel runs)")
    ap.add_argument("--canary", choices=["asan", "ubsan"], help="commit one error: the sanitizer must abort")
    args = ap.parse_args()
    if args.canary:
        canary(args.canary)
        return
    libs = {(dsp, r): C.CDLL(str(build(dsp, r == "single"))) for dsp in (False, True) for r in ("double", "single")}
    only = set(args.only.split(",")) if args.only else None
    jobs = [(name, prop, weight, dsp, rounding) for name, prop, weight, on_dsp in KERNELS
            if not only or name in only for dsp in ((False, True) if on_dsp else (False,))
            for rounding in ("double", "single")]
    shard, shards = (int(v) for v in args.shard.split("/"))
    counts: dict[str, int] = {}
    t0 = time.time()
    for name, prop, weight, dsp, rounding in jobs[shard::shards]:
        key = f"{'dsp/' if dsp else ''}{name}[{rounding}]"
        n = max(1, int(BASE_EXAMPLES * weight * args.scale))
        counts[key] = run(key, prop, libs[(dsp, rounding)], rounding, n)
    print(json.dumps({"cases": sum(counts.values()), "mismatches": 0, "seconds": round(time.time() - t0, 1),
                      "kernels": counts}))


if __name__ == "__main__":
    main()
