"""The requantization arithmetic: numpy (mcuqp.quant.fixedpoint) == the C inlines of
mcuqp_fixedpoint.h, compiled into a small shim in both rounding modes, on edge cases and
random values; and both == hand-checked TFLite/gemmlowp values."""
from __future__ import annotations

import ctypes as C
import subprocess

import numpy as np
import pytest

from mcuqp.quant import fixedpoint as fp
import hostlib
from hostlib import ptr

I32_MIN, I32_MAX = fp.INT32_MIN, fp.INT32_MAX

_SHIM = r"""
#include <math.h>
#include "mcuqp_fixedpoint.h"
#define MAP2(name, expr) \
    void name(const int32_t *a, const int32_t *b, int32_t *out, int32_t n) \
    { for (int32_t i = 0; i < n; ++i) out[i] = (expr); }
MAP2(srdhm, mcuqp_srdhm(a[i], b[i]))
MAP2(rdbpot, mcuqp_rdbpot(a[i], b[i]))
MAP2(shl_wrap, mcuqp_shl_wrap(a[i], b[i]))
void requantize(const int32_t *x, const int32_t *m, const int32_t *s, int32_t *out, int32_t n)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_requantize(x[i], m[i], s[i]); }
void smaller(const int32_t *x, const int32_t *m, const int32_t *s, int32_t *out, int32_t n)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_mul_by_qm_smaller_than_one(x[i], m[i], s[i]); }
void greater(const int32_t *x, const int32_t *m, const int32_t *s, int32_t *out, int32_t n)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_mul_by_qm_greater_than_one(x[i], m[i], s[i]); }
void clamp(const int32_t *x, const int32_t *lo, const int32_t *hi, int32_t *out, int32_t n)
{ for (int32_t i = 0; i < n; ++i) out[i] = mcuqp_clamp_i32(x[i], lo[i], hi[i]); }
int32_t single_rounding(void) { return MCUQP_SINGLE_ROUNDING; }

/* TFLite's QuantizeMultiplier with the C library's frexp and round (half away from zero),
 * an oracle for the Python version that shares none of its code. */
void quantize_multiplier(const double *real, int32_t *multiplier, int32_t *shift, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        int e = 0;
        int64_t q = 0;
        if (real[i] != 0.0) {
            q = (int64_t)round(frexp(real[i], &e) * 2147483648.0);
        }
        if (q == ((int64_t)1 << 31)) { q /= 2; ++e; }
        if (e < -31) { e = 0; q = 0; }
#if MCUQP_SINGLE_ROUNDING
        if (e > 30) { e = 30; q = ((int64_t)1 << 31) - 1; }
#endif
        multiplier[i] = (int32_t)q;
        shift[i] = e;
    }
}
"""


def _build(d, name: str, defines: tuple[str, ...]) -> C.CDLL:
    src = d / "fp_shim.c"
    src.write_text(_SHIM)
    so = d / f"{name}.so"
    r = subprocess.run(
        ["gcc", *hostlib.HOST_CFLAGS, *[f"-D{x}" for x in defines], "-shared",
         "-I", str(hostlib.RUNTIME_DIR / "include"), str(src), "-o", str(so), "-lm"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr  # -Wall -Wextra -Werror: the header compiles clean
    return C.CDLL(str(so))


@pytest.fixture(scope="module")
def shims(tmp_path_factory) -> dict[str, C.CDLL]:
    d = tmp_path_factory.mktemp("fixedpoint")
    libs = {"double": _build(d, "double", ()), "single": _build(d, "single", ("MCUQP_SINGLE_ROUNDING=1",))}
    assert libs["double"].single_rounding() == 0 and libs["single"].single_rounding() == 1
    return libs


def call(fn, *inputs) -> np.ndarray:
    """fn(in..., out, n) over int32 arrays; returns out as int64."""
    keep = [np.ascontiguousarray(np.broadcast_arrays(*inputs)[i], dtype=np.int32) for i in range(len(inputs))]
    out = np.zeros(keep[0].size, np.int32)
    fn(*[ptr(k, C.c_int32) for k in keep], ptr(out, C.c_int32), C.c_int32(out.size))
    return out.astype(np.int64)


def edge_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """INT32 extremes, small values, powers of two (+-1) and random values of every bit length."""
    pots = np.array([1 << k for k in range(31)], np.int64)
    fixed = np.concatenate([[0, 1, -1, 2, -2, 3, -3, I32_MIN, I32_MIN + 1, I32_MAX, I32_MAX - 1],
                            pots, -pots, pots - 1, -pots + 1, pots + 1])
    rand = rng.integers(I32_MIN, I32_MAX + 1, n, dtype=np.int64) >> rng.integers(0, 32, n)
    return np.clip(np.concatenate([fixed, rand]), I32_MIN, I32_MAX)


def multipliers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Q31 multipliers as QuantizeMultiplier makes them: [2^30, 2^31), ends included."""
    m = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    m[:4] = [1 << 30, (1 << 30) + 1, I32_MAX - 1, I32_MAX]
    return m


# ---- the C inlines == numpy --------------------------------------------------------


def test_srdhm_c_matches_numpy(shims):
    rng = np.random.default_rng(1)
    v = edge_values(rng, 4000)
    a, b = np.meshgrid(v[:300], v[:300])  # every pair of edge values, incl. INT32_MIN * INT32_MIN
    a = np.concatenate([a.ravel(), v, rng.permutation(v)])
    b = np.concatenate([b.ravel(), rng.permutation(v), v])
    for lib in shims.values():
        assert np.array_equal(call(lib.srdhm, a, b), fp.saturating_rounding_doubling_high_mul(a, b))


def test_rdbpot_c_matches_numpy_all_exponents(shims):
    rng = np.random.default_rng(2)
    x = edge_values(rng, 3000)
    for e in range(32):
        got = call(shims["double"].rdbpot, x, np.full(x.size, e))
        assert np.array_equal(got, fp.rounding_divide_by_pot(x, e)), e


def test_shl_wrap_c_matches_numpy(shims):
    rng = np.random.default_rng(3)
    x = edge_values(rng, 2000)
    for s in range(32):
        got = call(shims["double"].shl_wrap, x, np.full(x.size, s))
        assert np.array_equal(got, fp.wrap_int32(x << s)), s


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requantize_c_matches_numpy_all_shifts(shims, rounding):
    rng = np.random.default_rng(4)
    x = edge_values(rng, 3000)
    m = multipliers(rng, x.size)
    for shift in range(-31, 31):
        s = np.full(x.size, shift)
        got = call(shims[rounding].requantize, x, m, s)
        want = fp.multiply_by_quantized_multiplier(x, m, s, rounding)
        if rounding == "single":
            # Left of TFLite's contract (result beyond int32) the C casts the 64-bit result;
            # in range, numpy must already be exact.
            fits = (want >= I32_MIN) & (want <= I32_MAX)
            assert np.array_equal(got[fits], want[fits]), shift
            want = fp.wrap_int32(want)
        assert np.array_equal(got, want), shift


def test_requantize_zero_multiplier(shims):
    """QuantizeMultiplier's (0, 0) for scales below 2^-32: every result is 0."""
    x = edge_values(np.random.default_rng(5), 100)
    for rounding, lib in shims.items():
        assert not call(lib.requantize, x, 0, 0).any()
        assert not fp.multiply_by_quantized_multiplier(x, 0, 0, rounding).any()


def test_smaller_and_greater_than_one_c_match_numpy(shims):
    rng = np.random.default_rng(6)
    x = edge_values(rng, 3000)
    m = multipliers(rng, x.size)
    lib = shims["double"]
    for shift in range(-31, 1):
        got = call(lib.smaller, x, m, np.full(x.size, shift))
        assert np.array_equal(got, fp.multiply_by_quantized_multiplier_smaller_than_one_exp(x, m, shift)), shift
    for shift in range(0, 31):
        got = call(lib.greater, x, m, np.full(x.size, shift))
        assert np.array_equal(got, fp.multiply_by_quantized_multiplier_greater_than_one(x, m, shift)), shift


def test_double_rounding_requantize_is_the_composition():
    """MultiplyByQuantizedMultiplier (double) == SmallerThanOneExp for shift <= 0 and
    GreaterThanOne for shift >= 0, as TFLite defines them."""
    rng = np.random.default_rng(7)
    x = edge_values(rng, 2000)
    m = multipliers(rng, x.size)
    for shift in range(-31, 1):
        assert np.array_equal(fp.multiply_by_quantized_multiplier(x, m, shift),
                              fp.multiply_by_quantized_multiplier_smaller_than_one_exp(x, m, shift))
    for shift in range(0, 31):
        assert np.array_equal(fp.multiply_by_quantized_multiplier(x, m, shift),
                              fp.multiply_by_quantized_multiplier_greater_than_one(x, m, shift))


def test_clamp_c(shims):
    x = np.array([-300, -128, -5, 0, 5, 127, 300, I32_MIN, I32_MAX])
    got = call(shims["double"].clamp, x, -10, 20)
    assert got.tolist() == [-10, -10, -5, 0, 5, 20, 20, -10, 20]


# ---- hand-checked values -------------------------------------------------------------


def test_srdhm_known_values(shims):
    # gemmlowp: (a*b + nudge) / 2^31 with nudge 2^30 or 1 - 2^30 and C division, so
    # exact halves round up (toward +inf); INT32_MIN * INT32_MIN saturates.
    cases = [
        (1, 1 << 30, 1), (-1, 1 << 30, 0), (3, 1 << 30, 2), (-3, 1 << 30, -1), (5, 1 << 30, 3),
        (I32_MIN, I32_MIN, I32_MAX), (I32_MAX, I32_MAX, I32_MAX - 1), (I32_MIN, I32_MAX, I32_MIN + 1),
        (1 << 20, 1 << 30, 1 << 19), (123456789, 0, 0),
    ]
    a, b, want = (np.array(c, np.int64) for c in zip(*cases))
    assert fp.saturating_rounding_doubling_high_mul(a, b).tolist() == want.tolist()
    assert call(shims["double"].srdhm, a, b).tolist() == want.tolist()


def test_rdbpot_known_values(shims):
    # Round half away from zero.
    cases = [(5, 1, 3), (-5, 1, -3), (3, 1, 2), (-3, 1, -2), (1, 1, 1), (-1, 1, -1), (7, 2, 2), (-7, 2, -2),
             (6, 2, 2), (-6, 2, -2), (I32_MIN, 31, -1), (I32_MAX, 31, 1), (I32_MAX, 0, I32_MAX), (-(1 << 30), 31, -1),
             ((1 << 30) - 1, 31, 0), (1000, 3, 125), (-1004, 3, -126)]
    x, e, want = (np.array(c, np.int64) for c in zip(*cases))
    assert fp.rounding_divide_by_pot(x, e).tolist() == want.tolist()
    assert call(shims["double"].rdbpot, x, e).tolist() == want.tolist()


def test_requantize_known_values(shims):
    half = 1 << 30  # multiplier 0.5
    # (x, multiplier, shift, double, single): x * 0.5 * 2^shift
    cases = [
        (100, half, 0, 50, 50),
        (3, half, 0, 2, 2),  # 1.5
        (-3, half, 0, -1, -1),  # -1.5: SRDHM rounds up, single rounding floors(x + 1/2)
        (5, half, -1, 2, 1),  # 1.25: double rounding rounds 2.5 -> 3 -> 1.5 -> 2
        (-5, half, -1, -1, -1),
        (7, half, 1, 7, 7),
        (1, half, -31, 0, 0),
        (I32_MAX, half, -31, 1, 0),  # 0.4999999998: double rounding goes 2^30 - 0.5 -> 2^30 -> 1
        (I32_MIN, half, -30, -1, -1),  # -1 exactly
        (I32_MIN, half, -31, -1, 0),  # -0.5: away from zero (double), floor(-0.5 + 0.5) (single)
        (I32_MAX, I32_MAX, 0, I32_MAX - 1, I32_MAX - 1),
    ]
    x, m, s, want_d, want_s = (np.array(c, np.int64) for c in zip(*cases))
    assert fp.multiply_by_quantized_multiplier(x, m, s, "double").tolist() == want_d.tolist()
    assert fp.multiply_by_quantized_multiplier(x, m, s, "single").tolist() == want_s.tolist()
    assert call(shims["double"].requantize, x, m, s).tolist() == want_d.tolist()
    assert call(shims["single"].requantize, x, m, s).tolist() == want_s.tolist()


def test_single_rounding_is_round_half_up_of_the_exact_product():
    """Single rounding: floor(x * m / 2^(31 - shift) + 1/2), computed exactly in Python ints,
    then cast to int32 as the C does (which wraps only outside TFLite's contract)."""
    rng = np.random.default_rng(8)
    x = edge_values(rng, 500)
    m = multipliers(rng, x.size)
    for shift in (-31, -17, -1, 0, 1, 5):
        got = fp.multiply_by_quantized_multiplier(x, m, shift, "single")
        total = 31 - shift
        exact = [(int(a) * int(b) + (1 << (total - 1))) >> total for a, b in zip(x, m)]
        want = [((v + (1 << 31)) % (1 << 32)) - (1 << 31) for v in exact]
        assert got.tolist() == want, shift


# TFLite QuantizeMultiplier, worked by hand: frexp(real) = q * 2^e with q in [0.5, 1),
# q_fixed = round-half-away(q * 2^31); q_fixed == 2^31 -> (2^30, e + 1); e < -31 -> (0, 0).
QUANTIZE_MULTIPLIER_CASES = [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.75, (1610612736, 0)),
    (0.1, (1717986918, -3)),  # 0.8 * 2^31 = 1717986918.4
    (1 / 3, (1431655765, -1)),  # 2/3 * 2^31 = 1431655765.33
    (2.0**-32, (1 << 30, -31)),  # the smallest kept exponent
    (2.0**-33, (0, 0)),  # below it: zero
    (0.5 + 2.0**-32, ((1 << 30) + 1, 0)),  # q * 2^31 = 2^30 + 0.5 exactly: away from zero
    (0.5 + 2.0**-33, (1 << 30, 0)),  # 2^30 + 0.25
    (1 - 2.0**-33, (1 << 30, 1)),  # q * 2^31 = 2^31 - 0.25 rounds to 2^31
    (1 - 2.0**-32, (1 << 30, 1)),  # 2^31 - 0.5 rounds away from zero to 2^31
    (1 - 2.0**-31, (I32_MAX, 0)),  # 2^31 - 1 exactly
    (2.0**-20 * (1 - 2.0**-33), (1 << 30, -19)),  # rounding to 2^31 at another exponent
    (3.0, (1610612736, 2)),
    (2.0**30, (1 << 30, 31)),
]


@pytest.mark.parametrize("real, expected", QUANTIZE_MULTIPLIER_CASES)
def test_quantize_multiplier_known_values(real, expected):
    assert fp.quantize_multiplier(real) == expected
    m, s = fp.quantize_multiplier(real)
    if m:
        assert m * 2.0 ** (s - 31) == pytest.approx(real, rel=2**-30)


def test_quantize_multiplier_single_rounding_caps_the_shift():
    # TFLITE_SINGLE_ROUNDING: shifts above 30 become (2^31 - 1, 30).
    assert fp.quantize_multiplier(2.0**30, "single") == (I32_MAX, 30)
    assert fp.quantize_multiplier(2.0**29, "single") == (1 << 30, 30)
    assert fp.quantize_multiplier(2.0**40, "single") == (I32_MAX, 30)
    assert fp.quantize_multiplier(0.1, "single") == (1717986918, -3)
    assert fp.quantize_multiplier(2.0**-33, "single") == (0, 0)


def test_quantize_multiplier_random_is_nearest_q31():
    """Over many scales: multiplier in [2^30, 2^31), and the nearest Q31 value at that exponent."""
    rng = np.random.default_rng(9)
    for real in 2.0 ** rng.uniform(-31, 20, 2000):
        m, s = fp.quantize_multiplier(float(real))
        assert (1 << 30) <= m <= I32_MAX
        exact = real * 2.0 ** (31 - s)  # exact in binary floating point (power-of-two scaling)
        assert abs(m - exact) <= 0.5


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_quantize_multiplier_matches_c_libm(shims, rounding):
    """Python's QuantizeMultiplier == the same algorithm on C's frexp/round, over float32
    scale ratios (as conv_requant forms them), exact halves, values next to powers of
    two and the hand-checked cases."""
    rng = np.random.default_rng(10)
    f32 = lambda v: v.astype(np.float32).astype(np.float64)  # noqa: E731
    in_s, w_s, out_s = (f32(10 ** rng.uniform(lo, hi, 3000)) for lo, hi in ((-3, 0), (-4, 0), (-3, 1)))
    ratios = in_s * w_s / out_s
    exps = rng.integers(-40, 40, 500).astype(np.float64)
    near_pot = np.concatenate([2.0**exps * (1 - 2.0**-33), 2.0**exps * (1 - 2.0**-32), 2.0**exps * (0.5 + 2.0**-32)])
    reals = np.ascontiguousarray(np.concatenate([ratios, 2.0 ** rng.uniform(-35, 35, 2000), near_pot,
                                                  [r for r, _ in QUANTIZE_MULTIPLIER_CASES]]))
    m = np.zeros(reals.size, np.int32)
    s = np.zeros(reals.size, np.int32)
    shims[rounding].quantize_multiplier(ptr(reals, C.c_double), ptr(m, C.c_int32), ptr(s, C.c_int32),
                                        C.c_int32(reals.size))
    got = [fp.quantize_multiplier(float(r), rounding) for r in reals]
    assert got == list(zip(m.tolist(), s.tolist()))
