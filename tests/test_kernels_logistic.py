"""int8 LOGISTIC: host-compiled C == numpy reference over every input value, for many
input quantizations, and the parameters TFLite Micro's Prepare derives."""
from __future__ import annotations

import ctypes as C
import math

import numpy as np
import pytest

from mcuqp.ops.logistic import LogisticAttrs, logistic_attrs, logistic_s8
from hostlib import mirrors, ptr

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


@mirrors("mcuqp_logistic_params")
class LogisticParams(C.Structure):  # mirrors mcuqp_logistic_params
    _fields_ = [(f, C.c_int32) for f in "input_zero_point input_multiplier input_left_shift input_range_radius".split()]


def c_logistic(lib, x: np.ndarray, a: LogisticAttrs) -> tuple[int, np.ndarray]:
    y = np.zeros_like(x)
    p = LogisticParams(a.input_zero_point, a.input_multiplier, a.input_left_shift, a.input_range_radius)
    return lib.mcuqp_logistic_s8(C.byref(p), C.c_int32(x.size), ptr(x), ptr(y)), y


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_logistic_c_matches_numpy(runtime, runtime_single_rounding, rounding) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(3)
    for _ in range(150):
        attrs = logistic_attrs(float(10.0 ** rng.uniform(-3.5, 0.7)), int(rng.integers(-128, 128)))
        rc, y = c_logistic(lib, ALL_INT8, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, logistic_s8(ALL_INT8, attrs, rounding))


def test_logistic_is_close_to_the_real_sigmoid() -> None:
    scale, zp = 0.05, 7
    y = logistic_s8(ALL_INT8, logistic_attrs(scale, zp)).astype(int)
    real = 1.0 / (1.0 + np.exp(-np.float64(scale) * (ALL_INT8.astype(int) - zp)))
    assert np.abs((y + 128) / 256.0 - real).max() <= 1.0 / 256
    assert np.all(np.diff(y) >= 0)  # monotone
    assert y[ALL_INT8 == zp][0] == 0  # sigmoid(0) = 1/2 -> 128/256 - 128


def test_logistic_attrs_follow_tflm_prepare() -> None:
    a = logistic_attrs(0.1, -3)
    q, e = math.frexp(float(np.float32(0.1)) * 2.0**27)
    assert a.input_left_shift == e and a.input_multiplier == int(math.floor(q * 2**31 + 0.5))
    assert a.input_range_radius == math.floor(15 * 2**27 / 2**e)
    assert a.input_zero_point == -3


def test_logistic_rejects_bad_arguments(runtime) -> None:
    rc, _ = c_logistic(runtime, ALL_INT8, LogisticAttrs(input_multiplier=1 << 30, input_left_shift=31,
                                                        input_range_radius=10))
    assert rc == -1
    rc, _ = c_logistic(runtime, ALL_INT8, LogisticAttrs(input_range_radius=-1))
    assert rc == -1
