"""int8 -> int8 QUANTIZE: host-compiled C == numpy reference over every input value."""
from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

from mcuqp.ops.quantize import QuantizeAttrs, quantize_attrs, quantize_s8
from hostlib import mirrors, ptr

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


@mirrors("mcuqp_quantize_params")
class QuantizeParams(C.Structure):  # mirrors mcuqp_quantize_params
    _fields_ = [(f, C.c_int32) for f in "input_offset output_offset multiplier shift".split()]


def c_quantize(lib, x: np.ndarray, a: QuantizeAttrs) -> tuple[int, np.ndarray]:
    y = np.zeros_like(x)
    p = QuantizeParams(a.input_offset, a.output_offset, a.multiplier, a.shift)
    return lib.mcuqp_quantize_s8(C.byref(p), C.c_int32(x.size), ptr(x), ptr(y)), y


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_quantize_c_matches_numpy(runtime, runtime_single_rounding, rounding) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(1)
    for _ in range(200):
        s_in, s_out = (float(v) for v in 10.0 ** rng.uniform(-4, 1, 2))
        attrs = quantize_attrs(s_in, int(rng.integers(-128, 128)), s_out, int(rng.integers(-128, 128)))
        rc, y = c_quantize(lib, ALL_INT8, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, quantize_s8(ALL_INT8, attrs, rounding))


def test_quantize_same_scale_only_moves_the_zero_point() -> None:
    attrs = quantize_attrs(0.05, 3, 0.05, -10)
    expected = np.clip(ALL_INT8.astype(int) - 13, -128, 127)
    np.testing.assert_array_equal(quantize_s8(ALL_INT8, attrs), expected)


def test_quantize_rejects_bad_arguments(runtime) -> None:
    rc, _ = c_quantize(runtime, ALL_INT8, QuantizeAttrs(multiplier=1 << 30, shift=31))
    assert rc == -1
    rc, _ = c_quantize(runtime, ALL_INT8, QuantizeAttrs(multiplier=-1))
    assert rc == -1
