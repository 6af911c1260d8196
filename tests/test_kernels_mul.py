"""int8 MUL: host-compiled C == numpy reference bit for bit (broadcasting, both rounding
modes, extreme multipliers), and the parameters TFLite Micro's Prepare derives."""
from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

from mcuqp.ops.mul import MulAttrs, mul_attrs, mul_s8
from mcuqp.quant.fixedpoint import quantize_multiplier
from hostlib import broadcast, mirrors, ptr


@mirrors("mcuqp_mul_params")
class MulParams(C.Structure):  # mirrors mcuqp_mul_params
    _fields_ = [(f, C.c_int32) for f in
                "input1_offset input2_offset output_offset output_multiplier output_shift act_min act_max".split()]


def c_mul(lib, x1: np.ndarray, x2: np.ndarray, a: MulAttrs, out_shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
    x1, x2 = np.ascontiguousarray(x1), np.ascontiguousarray(x2)
    y = np.full(out_shape, 77, np.int8)
    p = MulParams(a.input1_offset, a.input2_offset, a.output_offset, a.output_multiplier, a.output_shift,
                  a.act_min, a.act_max)
    b = broadcast(x1.shape, x2.shape, y.shape)
    rc = lib.mcuqp_mul_s8(C.byref(p), C.byref(b), ptr(x1), ptr(x2), ptr(y))
    return rc, y


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, MulAttrs, tuple[int, ...]]:
    full = tuple(int(v) for v in rng.integers(1, 6, 4))
    s1 = tuple(d if rng.random() < 0.6 else 1 for d in full)
    s2 = tuple(d if rng.random() < 0.6 else 1 for d in full)
    out = np.broadcast_shapes(s1, s2)
    x1 = rng.integers(-128, 128, s1).astype(np.int8)
    x2 = rng.integers(-128, 128, s2).astype(np.int8)
    if rng.random() < 0.5:  # parameters from realistic scales
        sc = rng.uniform(0.001, 0.2, 3).astype(np.float32)
        zp = rng.integers(-128, 128, 3)
        act = rng.choice([None, "relu", "relu6"])
        attrs = mul_attrs(sc[0], int(zp[0]), sc[1], int(zp[1]), sc[2], int(zp[2]), act)
    else:  # anything the C contract allows
        lo = int(rng.integers(-128, 128))
        attrs = MulAttrs(int(rng.integers(-127, 129)), int(rng.integers(-127, 129)), int(rng.integers(-128, 128)),
                         int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(-31, 8)), lo,
                         int(rng.integers(lo, 128)))
    return x1, x2, attrs, out


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mul_c_matches_numpy(runtime, runtime_single_rounding, rounding) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(42)
    for _ in range(300):
        x1, x2, attrs, out = random_case(rng)
        rc, y = c_mul(lib, x1, x2, attrs, out)
        assert rc == 0
        np.testing.assert_array_equal(y, mul_s8(x1, x2, attrs, rounding))


def test_mul_numpy_definition() -> None:
    # By hand: (10 - 3) * (-21 + 5) = -112; * 0.5 (m = 2^30, shift 0) = -56; + zero point 4.
    # Broadcasting: the (1, 2) row repeats down the (3, 1) column.
    attrs = MulAttrs(input1_offset=-3, input2_offset=5, output_offset=4, output_multiplier=1 << 30, output_shift=0)
    y = mul_s8(np.array([[10], [10], [3]], np.int8), np.array([[-21, -5]], np.int8), attrs)
    assert y.tolist() == [[-52, 4], [-52, 4], [4, 4]]


def test_mul_attrs_follow_tflm_prepare() -> None:
    attrs = mul_attrs(0.05, 3, 0.07, -5, 0.02, 1, "relu")
    m, s = quantize_multiplier(float(np.float32(0.05)) * float(np.float32(0.07)) / float(np.float32(0.02)))
    assert (attrs.output_multiplier, attrs.output_shift) == (m, s)
    assert (attrs.input1_offset, attrs.input2_offset, attrs.output_offset) == (-3, 5, 1)
    assert (attrs.act_min, attrs.act_max) == (1, 127)


def test_mul_rejects_bad_arguments(runtime) -> None:
    x = np.zeros((1, 2, 2, 3), np.int8)
    good = MulAttrs(output_multiplier=1 << 30)
    rc, _ = c_mul(runtime, x, x, MulAttrs(output_multiplier=1 << 30, input1_offset=-128), (1, 2, 2, 3))
    assert rc == -1
    rc, _ = c_mul(runtime, x, x, MulAttrs(output_multiplier=1 << 30, act_min=5, act_max=4), (1, 2, 2, 3))
    assert rc == -1
    rc, _ = c_mul(runtime, x, x, MulAttrs(output_multiplier=-1), (1, 2, 2, 3))
    assert rc == -1
    rc, _ = c_mul(runtime, x, x, good, (1, 2, 2, 3))
    assert rc == 0
