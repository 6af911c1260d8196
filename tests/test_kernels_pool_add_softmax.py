"""Pooling, add, softmax and reshape: host-compiled C == numpy reference, bit for bit,
over randomized shapes and parameters (including saturation and extreme multipliers).
The C fixed-point helpers behind softmax are also compared one by one with their numpy
twins through a small shim library."""
from __future__ import annotations

import ctypes as C
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuqp.errors import McuqpError
from mcuqp.ir import Padding
from mcuqp.ops.add import AddAttrs, add_attrs, add_s8
from mcuqp.ops.pool import PoolAttrs, avg_pool2d_s8, max_pool2d_s8, pool_output_hw
from mcuqp.ops.reshape import ReshapeAttrs, reshape_s8
from mcuqp.ops.softmax import SoftmaxAttrs, softmax_attrs, softmax_s8
from mcuqp.quant import fixedpoint as fp
import hostlib
from hostlib import AddParams, PoolParams, SoftmaxParams, dims, ptr

MY_SOURCES = ["max_pool2d_s8.c", "avg_pool2d_s8.c", "add_s8.c", "softmax_s8.c", "reshape_s8.c"]
OK, ERR = 0, -1


def i8(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape).astype(np.int8)


# ---- C call wrappers ---------------------------------------------------------------


def c_pool(lib, name: str, x: np.ndarray, attrs: PoolAttrs, out_hw: tuple[int, int]) -> tuple[int, np.ndarray]:
    x = np.ascontiguousarray(x)
    n, _, _, c = x.shape
    y = np.full((n, *out_hw, c), 99, dtype=np.int8)
    p = PoolParams(
        stride_h=attrs.stride[0], stride_w=attrs.stride[1], pad_h=attrs.padding.top, pad_w=attrs.padding.left,
        filter_h=attrs.filter[0], filter_w=attrs.filter[1], act_min=attrs.act_min, act_max=attrs.act_max,
    )
    di, do = dims(x.shape), dims(y.shape)
    rc = getattr(lib, name)(C.byref(p), C.byref(di), ptr(x), C.byref(do), ptr(y))
    return rc, y


def c_add(lib, x1: np.ndarray, x2: np.ndarray, a: AddAttrs) -> tuple[int, np.ndarray]:
    x1, x2 = np.ascontiguousarray(x1), np.ascontiguousarray(x2)
    y = np.zeros_like(x1)
    p = AddParams(
        a.left_shift, a.input1_offset, a.input1_multiplier, a.input1_shift, a.input2_offset, a.input2_multiplier,
        a.input2_shift, a.output_offset, a.output_multiplier, a.output_shift, a.act_min, a.act_max,
    )
    rc = lib.mcuqp_add_s8(C.byref(p), C.c_int32(x1.size), ptr(x1), ptr(x2), ptr(y))
    return rc, y


def c_softmax(lib, x: np.ndarray, a: SoftmaxAttrs) -> tuple[int, np.ndarray]:
    x = np.ascontiguousarray(x)
    y = np.zeros_like(x)
    p = SoftmaxParams(a.input_multiplier, a.input_left_shift, a.diff_min)
    depth = x.shape[-1]
    rc = lib.mcuqp_softmax_s8(C.byref(p), C.c_int32(x.size // depth), C.c_int32(depth), ptr(x), ptr(y))
    return rc, y


# ---- pooling -----------------------------------------------------------------------


def random_pool(rng: np.random.Generator) -> tuple[np.ndarray, PoolAttrs]:
    fh, fw = (int(v) for v in rng.integers(1, 5, 2))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    # Padding below the filter size keeps every window partly inside the input.
    top, bottom = (int(v) for v in rng.integers(0, fh, 2))
    left, right = (int(v) for v in rng.integers(0, fw, 2))
    h = int(rng.integers(max(1, fh - top - bottom), 13))
    w = int(rng.integers(max(1, fw - left - right), 13))
    x = i8(rng, (int(rng.integers(1, 3)), h, w, int(rng.integers(1, 10))))
    lo = int(rng.integers(-128, 20)) if rng.random() < 0.5 else -128
    hi = int(rng.integers(lo, 128)) if rng.random() < 0.5 else 127
    return x, PoolAttrs((fh, fw), (sh, sw), Padding(top, bottom, left, right), lo, hi)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_c_matches_numpy(runtime, kind):
    rng = np.random.default_rng(11 if kind == "max" else 12)
    ref = max_pool2d_s8 if kind == "max" else avg_pool2d_s8
    for _ in range(150):
        x, attrs = random_pool(rng)
        want = ref(x, attrs)
        assert want.shape[1:3] == pool_output_hw(x.shape[1], x.shape[2], attrs)
        rc, got = c_pool(runtime, f"mcuqp_{kind}_pool2d_s8", x, attrs, want.shape[1:3])
        assert rc == OK
        assert np.array_equal(got, want), (x.shape, attrs)


def test_avg_pool_rounds_half_away_from_zero(runtime):
    # 1x2 windows over [a, b]: averages of .5 go away from zero, and clamps apply.
    x = np.array([1, 2, -1, -2, 3, 3, -3, -4, 127, 127, -128, -127], dtype=np.int8).reshape(1, 1, 12, 1)
    attrs = PoolAttrs((1, 2), (1, 2), Padding())
    want = np.array([2, -2, 3, -4, 127, -128], dtype=np.int8).reshape(1, 1, 6, 1)
    assert np.array_equal(avg_pool2d_s8(x, attrs), want)
    rc, got = c_pool(runtime, "mcuqp_avg_pool2d_s8", x, attrs, (1, 6))
    assert rc == OK and np.array_equal(got, want)
    clamped = PoolAttrs((1, 2), (1, 2), Padding(), act_min=-3, act_max=2)
    assert np.array_equal(avg_pool2d_s8(x, clamped), np.clip(want, -3, 2))


def test_pool_padding_is_excluded(runtime):
    # 3x3 average with padding 1 over a constant image stays the constant at the borders.
    x = np.full((1, 4, 5, 3), -77, dtype=np.int8)
    attrs = PoolAttrs((3, 3), (1, 1), Padding(1, 1, 1, 1))
    for kind, ref in (("avg", avg_pool2d_s8), ("max", max_pool2d_s8)):
        want = ref(x, attrs)
        assert np.array_equal(want, x)
        rc, got = c_pool(runtime, f"mcuqp_{kind}_pool2d_s8", x, attrs, (4, 5))
        assert rc == OK and np.array_equal(got, x)


def test_avg_pool_window_in_padding_is_an_error(runtime):
    x = np.ones((1, 2, 2, 1), dtype=np.int8)
    attrs = PoolAttrs((1, 1), (1, 1), Padding(1, 0, 0, 0))  # first output row sees only padding
    with pytest.raises(McuqpError):
        avg_pool2d_s8(x, attrs)
    rc, _ = c_pool(runtime, "mcuqp_avg_pool2d_s8", x, attrs, (3, 2))
    assert rc == ERR
    # TFLite's max pool yields the clamped lowest value there instead.
    want = max_pool2d_s8(x, PoolAttrs((1, 1), (1, 1), Padding(1, 0, 0, 0), act_min=-5))
    assert np.array_equal(want[0, 0, :, 0], [-5, -5])
    rc, got = c_pool(runtime, "mcuqp_max_pool2d_s8", x, PoolAttrs((1, 1), (1, 1), Padding(1, 0, 0, 0), -5), (3, 2))
    assert rc == OK and np.array_equal(got, want)


@pytest.mark.parametrize(
    "attrs",
    [
        PoolAttrs((0, 1), (1, 1), Padding()),
        PoolAttrs((1, 1), (0, 1), Padding()),
        PoolAttrs((1, 1), (1, 1), Padding(-1, 0, 0, 0)),
        PoolAttrs((1, 1), (1, 1), Padding(), act_min=5, act_max=4),
    ],
)
def test_pool_rejects_bad_params(runtime, attrs):
    x = np.zeros((1, 3, 3, 2), dtype=np.int8)
    for kind, ref in (("max", max_pool2d_s8), ("avg", avg_pool2d_s8)):
        rc, _ = c_pool(runtime, f"mcuqp_{kind}_pool2d_s8", x, attrs, (3, 3))
        assert rc == ERR
        with pytest.raises(McuqpError):
            ref(x, attrs)


def test_pool_rejects_mismatched_dims(runtime):
    x = np.zeros((1, 3, 3, 2), dtype=np.int8)
    y = np.zeros((1, 3, 3, 3), dtype=np.int8)
    p = PoolParams(1, 1, 0, 0, 1, 1, -128, 127)
    for name in ("mcuqp_max_pool2d_s8", "mcuqp_avg_pool2d_s8"):
        rc = getattr(runtime, name)(C.byref(p), C.byref(dims(x.shape)), ptr(x), C.byref(dims(y.shape)), ptr(y))
        assert rc == ERR


# ---- add ---------------------------------------------------------------------------


def random_add_attrs(rng: np.random.Generator) -> AddAttrs:
    s1, s2, so = (float(10 ** rng.uniform(-3, 0)) for _ in range(3))
    z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
    act = rng.choice(["none", "relu", "relu6", "relu_n1_to_1"])
    return add_attrs(s1, z1, s2, z2, so, zo, str(act))


def extreme_add_attrs(rng: np.random.Generator) -> AddAttrs:
    """Raw parameters at the edges of their ranges (not derived from scales)."""
    def mult() -> int:
        return int(rng.choice([0, 1, 1 << 30, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))]))

    def shift() -> int:
        return int(rng.choice([0, -1, -31, int(rng.integers(-31, 1))]))

    lo = int(rng.integers(-128, 128))
    return AddAttrs(
        left_shift=int(rng.choice([0, 20, 24, 31, int(rng.integers(0, 32))])),
        input1_offset=int(rng.integers(-128, 129)),
        input1_multiplier=mult(),
        input1_shift=shift(),
        input2_offset=int(rng.integers(-128, 129)),
        input2_multiplier=mult(),
        input2_shift=shift(),
        output_offset=int(rng.integers(-128, 128)),
        output_multiplier=mult(),
        output_shift=shift(),
        act_min=lo,
        act_max=int(rng.integers(lo, 128)),
    )


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_add_c_matches_numpy(runtime, runtime_single_rounding, rounding):
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(21 if rounding == "double" else 22)
    saturated = 0
    for i in range(200):
        attrs = random_add_attrs(rng) if i % 2 else extreme_add_attrs(rng)
        shape = tuple(int(v) for v in rng.integers(1, 9, int(rng.integers(1, 5))))
        x1, x2 = i8(rng, shape), i8(rng, shape)
        want = add_s8(x1, x2, attrs, rounding)
        rc, got = c_add(lib, x1, x2, attrs)
        assert rc == OK
        assert np.array_equal(got, want), attrs
        saturated += int(np.isin(want, [attrs.act_min, attrs.act_max]).sum())
    assert saturated > 0


def test_add_known_values():
    # Equal scales, zero points 0, output scale doubled: y = round((x1 + x2) / 2).
    attrs = add_attrs(0.5, 0, 0.5, 0, 1.0, 0)
    x1 = np.array([10, 1, -1, 127, -128], dtype=np.int8)
    x2 = np.array([20, 2, -2, 127, -128], dtype=np.int8)
    assert np.array_equal(add_s8(x1, x2, attrs), [15, 2, -2, 127, -128])


def test_add_rejects_bad_params(runtime):
    good = add_attrs(0.1, 0, 0.2, 3, 0.3, -4)
    x = np.zeros(4, dtype=np.int8)
    for field, value in [("input1_shift", 1), ("output_shift", 2), ("left_shift", 32), ("input2_multiplier", -5)]:
        bad = AddAttrs(**{**good.__dict__, field: value})
        rc, _ = c_add(runtime, x, x, bad)
        assert rc == ERR
        with pytest.raises(McuqpError):
            add_s8(x, x, bad)
    with pytest.raises(McuqpError):
        add_s8(x, np.zeros(5, dtype=np.int8), good)


# ---- softmax -----------------------------------------------------------------------


def test_softmax_attrs_match_tflite_derivation():
    # scale 1, beta 1: real multiplier 2^26 -> Q31 2^30 with left shift 27, radius 15.
    a = softmax_attrs(1.0)
    assert (a.input_multiplier, a.input_left_shift, a.diff_min) == (1 << 30, 27, -15)
    # Huge scales clamp the multiplier to 2^31 - 1 (shift 31, radius 0).
    a = softmax_attrs(100.0)
    assert (a.input_multiplier, a.input_left_shift, a.diff_min) == ((1 << 31) - 1, 31, 0)
    a = softmax_attrs(100.0, rounding="single")
    assert (a.input_multiplier, a.input_left_shift) == ((1 << 31) - 2, 30)
    with pytest.raises(McuqpError):
        softmax_attrs(1e-9)


def softmax_rows(rng: np.random.Generator, n: int, attrs: SoftmaxAttrs) -> np.ndarray:
    """Rows of length n: random, all-equal, and rows straddling diff_min."""
    rows = [i8(rng, n), np.full(n, int(rng.integers(-128, 128)), np.int8), np.full(n, 127, np.int8)]
    if n >= 2:
        top = int(rng.integers(0, 128))
        edge = np.full(n, top, np.int64)
        edge[1:] = top + attrs.diff_min - rng.integers(-1, 2, n - 1)  # diff_min - 1, diff_min, diff_min + 1
        rows.append(np.clip(edge, -128, 127).astype(np.int8))
        narrow = rng.integers(-3, 1, n) + top
        rows.append(narrow.astype(np.int8))
    return np.stack(rows)


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_softmax_c_matches_numpy(runtime, runtime_single_rounding, rounding):
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(31 if rounding == "double" else 32)
    lengths = [1, 2, 3, 10, 100, 511, 512, 1000] + [int(v) for v in rng.integers(1, 1001, 32)]
    cut = 0
    for n in lengths:
        scale = float(10 ** rng.uniform(-3, 0))
        beta = float(rng.choice([1.0, rng.uniform(0.2, 3.0)]))
        attrs = softmax_attrs(scale, beta, rounding)
        x = softmax_rows(rng, n, attrs)
        want = softmax_s8(x, attrs, rounding)
        rc, got = c_softmax(lib, x, attrs)
        assert rc == OK
        assert np.array_equal(got, want), (n, scale, beta)
        cut += int((x.astype(np.int32) - x.max(axis=1, keepdims=True) < attrs.diff_min).sum())
    assert cut > 0  # some elements fell below diff_min


def test_softmax_large_scales_hit_diff_min(runtime):
    # Scales near 1 give small radii: elements exactly at diff_min count, one below is cut.
    for scale in (0.25, 0.5, 1.0, 2.0, 8.0, 100.0):
        attrs = softmax_attrs(scale)
        top = 60
        x = np.array([[top, top + attrs.diff_min, top + attrs.diff_min - 1, top - 100]], dtype=np.int8)
        want = softmax_s8(x, attrs)
        assert want[0, 2] == -128 and want[0, 3] == -128
        rc, got = c_softmax(runtime, x, attrs)
        assert rc == OK and np.array_equal(got, want)


def test_softmax_known_values(runtime):
    attrs = softmax_attrs(0.1)
    # One element: probability 1 saturates to 127. n equal elements: 256/n - 128.
    assert softmax_s8(np.array([[5]], np.int8), attrs)[0, 0] == 127
    for n, q in [(2, 0), (4, -64), (8, -96), (256, -127), (600, -128)]:
        x = np.full((1, n), -7, np.int8)
        y = softmax_s8(x, attrs)
        assert np.all(y == q), (n, np.unique(y))
        rc, got = c_softmax(runtime, x, attrs)
        assert rc == OK and np.array_equal(got, y)


def test_softmax_output_tracks_float(runtime):
    """Not an exactness check: the integer softmax must land within one step of the float."""
    rng = np.random.default_rng(5)
    attrs = softmax_attrs(0.05)
    x = i8(rng, (20, 10))
    xi = x.astype(np.float64)
    p = np.exp(0.05 * (xi - xi.max(axis=1, keepdims=True)))
    p /= p.sum(axis=1, keepdims=True)
    q = softmax_s8(x, attrs).astype(np.int32) + 128
    assert np.abs(q - np.round(p * 256)).max() <= 1


def test_softmax_rejects_bad_params(runtime):
    x = np.zeros((2, 4), dtype=np.int8)
    good = softmax_attrs(0.1)
    for bad in [
        SoftmaxAttrs(input_multiplier=good.input_multiplier, input_left_shift=good.input_left_shift, diff_min=1),
        SoftmaxAttrs(input_multiplier=good.input_multiplier, input_left_shift=good.input_left_shift,
                     diff_min=good.diff_min - 1),
        SoftmaxAttrs(input_multiplier=0, input_left_shift=good.input_left_shift, diff_min=good.diff_min),
        SoftmaxAttrs(input_multiplier=good.input_multiplier, input_left_shift=32, diff_min=0),
    ]:
        rc, _ = c_softmax(runtime, x, bad)
        assert rc == ERR
        with pytest.raises(McuqpError):
            softmax_s8(x, bad)
    big = np.zeros((1, 4096), dtype=np.int8)
    rc, _ = c_softmax(runtime, big, good)
    assert rc == ERR
    with pytest.raises(McuqpError):
        softmax_s8(big, good)


# ---- reshape -----------------------------------------------------------------------


def test_reshape(runtime):
    rng = np.random.default_rng(41)
    x = i8(rng, (1, 2, 3, 4))
    assert np.array_equal(reshape_s8(x, ReshapeAttrs((1, 24))), x.reshape(1, 24))
    batch = i8(rng, (5, 2, 3, 4))
    assert reshape_s8(batch, ReshapeAttrs((1, 24))).shape == (5, 24)
    with pytest.raises(McuqpError):
        reshape_s8(x, ReshapeAttrs((1, 25)))

    y = np.zeros(24, dtype=np.int8)
    assert runtime.mcuqp_reshape_s8(C.c_int32(24), ptr(x), ptr(y)) == OK
    assert np.array_equal(y, x.ravel())
    # Overlapping buffers: shift a buffer left by 5 in place (memmove semantics).
    buf = np.arange(40, dtype=np.int8)
    base = buf.ctypes.data
    rc = runtime.mcuqp_reshape_s8(C.c_int32(30), C.cast(base + 5, C.POINTER(C.c_int8)), C.cast(base, C.POINTER(C.c_int8)))
    assert rc == OK and np.array_equal(buf[:30], np.arange(5, 35))
    assert runtime.mcuqp_reshape_s8(C.c_int32(-1), ptr(x), ptr(y)) == ERR


# ---- fixed-point helpers: C header == numpy ----------------------------------------

_SHIM = r"""
#include "mcuqp_fixedpoint.h"
void exp_neg(const int32_t *a, int32_t *out, int32_t n, int32_t bits)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_exp_on_negative_values(a[i], bits); }
void one_over(const int32_t *a, int32_t *out, int32_t n)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_one_over_one_plus_x_for_x_in_0_1(a[i]); }
void recip(const int32_t *a, int32_t *out, int32_t *nbits, int32_t n, int32_t digits)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_get_reciprocal(a[i], digits, &nbits[i]); }
void srmbpot(const int32_t *a, int32_t *out, int32_t n, int32_t e)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_srmbpot(a[i], e); }
void rdbpot64(const int32_t *a, int32_t *out, int32_t n, int32_t e)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_rdbpot64(a[i], e); }
void half_sum(const int32_t *a, const int32_t *b, int32_t *out, int32_t n)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_rounding_half_sum(a[i], b[i]); }
void clz(const int32_t *a, int32_t *out, int32_t n)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_clz_u32((uint32_t)a[i]); }
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    d = tmp_path_factory.mktemp("fpshim")
    src = d / "shim.c"
    src.write_text(_SHIM)
    so = d / "shim.so"
    subprocess.run(
        ["gcc", *hostlib.HOST_CFLAGS, "-shared", "-I", str(hostlib.RUNTIME_DIR / "include"), str(src), "-o", str(so)],
        check=True, capture_output=True, text=True,
    )
    return C.CDLL(str(so))


def _i32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


def _call(fn, *inputs: np.ndarray, outputs: int = 1, extra: tuple[int, ...] = ()) -> list[np.ndarray]:
    """Call a shim function fn(in..., out..., n, extra...) over int32 arrays of length n."""
    keep = [_i32(a) for a in inputs]
    n = keep[0].size
    outs = [np.zeros(n, np.int32) for _ in range(outputs)]
    fn(*[ptr(k, C.c_int32) for k in keep], *[ptr(o, C.c_int32) for o in outs], C.c_int32(n),
       *[C.c_int32(e) for e in extra])
    return outs


def test_fixedpoint_helpers_c_match_numpy(shim):
    rng = np.random.default_rng(51)
    n = 20000
    full = rng.integers(fp.INT32_MIN, fp.INT32_MAX + 1, n, dtype=np.int64)
    full[:6] = [0, -1, 1, fp.INT32_MIN, fp.INT32_MAX, -(1 << 26)]
    neg = -np.abs(rng.integers(0, 1 << 31, n, dtype=np.int64))
    neg[:4] = [0, -1, fp.INT32_MIN, -(31 << 26)]
    unit = rng.integers(0, 1 << 31, n, dtype=np.int64)
    unit[:3] = [0, 1, fp.INT32_MAX]

    for bits in (0, 1, 5, 6, 12, 29):
        (got,) = _call(shim.exp_neg, neg, extra=(bits,))
        assert np.array_equal(got, fp.exp_on_negative_values(neg, bits)), bits
    (got,) = _call(shim.one_over, unit)
    assert np.array_equal(got, fp.one_over_one_plus_x_for_x_in_0_1(unit))
    positive = np.maximum(unit >> rng.integers(0, 31, n), 1)
    for digits in (0, 5, 12):
        got, nbits = _call(shim.recip, positive, outputs=2, extra=(digits,))
        want, want_bits = fp.get_reciprocal(positive, digits)
        assert np.array_equal(got, want) and np.array_equal(nbits, want_bits)
    for e in (-31, -12, -1, 0, 1, 2, 5, 30):
        (got,) = _call(shim.srmbpot, full, extra=(e,))
        assert np.array_equal(got, fp.saturating_rounding_multiply_by_pot(full, e)), e
    for e in (0, 1, 23, 31, 32, 33, 34, 40):
        (got,) = _call(shim.rdbpot64, full, extra=(e,))
        assert np.array_equal(got, fp.rounding_divide_by_pot(full, e)), e
    other = rng.integers(fp.INT32_MIN, fp.INT32_MAX + 1, n, dtype=np.int64)
    (got,) = _call(shim.half_sum, full, other)
    assert np.array_equal(got, fp.rounding_half_sum(full, other))
    spread = full >> rng.integers(0, 32, n)  # every bit length, both signs
    (got,) = _call(shim.clz, spread)
    assert np.array_equal(got, fp.count_leading_zeros_u32(spread))


def test_fixedpoint_helpers_against_math():
    """Sanity of the constants (not an exactness check): exp and 1/(1+x) to ~1e-6."""
    a = np.arange(-(31 << 26), 1, 1 << 20, dtype=np.int64)
    e = fp.exp_on_negative_values(a, 5) / 2.0**31
    assert np.abs(e - np.exp(a / 2.0**26)).max() < 1e-6
    u = np.arange(0, 1 << 31, 1 << 20, dtype=np.int64)
    r = fp.one_over_one_plus_x_for_x_in_0_1(u) / 2.0**31
    assert np.abs(r - 1.0 / (1.0 + u / 2.0**31)).max() < 1e-6
    assert list(fp.count_leading_zeros_u32(np.array([0, 1, 2, 3, 1 << 30, -1]))) == [32, 31, 30, 30, 1, 0]


# ---- the kernels build for Cortex-M4 ------------------------------------------------


@pytest.mark.tools("arm-none-eabi-gcc")
@pytest.mark.parametrize("source", MY_SOURCES)
def test_kernels_compile_for_cortex_m4(tmp_path: Path, source: str):
    for defines in ([], ["-DMCUQP_SINGLE_ROUNDING=1"]):
        cmd = [
            "arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c99",
            *defines, "-I", str(hostlib.RUNTIME_DIR / "include"), "-c", str(hostlib.RUNTIME_DIR / "src" / source),
            "-o", str(tmp_path / "k.o"),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
