"""int8 SIGN (binary activations): host-compiled C == numpy reference, bit for bit, for
every input zero point, on every int8 value and on random tensors; sign(0) = +1."""
from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

from mcuqp.errors import UnsupportedModelError
from mcuqp.ops.sign import SignAttrs, sign_s8
from hostlib import mirrors, ptr

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


@mirrors("mcuqp_sign_params")
class SignParams(C.Structure):  # mirrors mcuqp_sign_params
    _fields_ = [("input_zero_point", C.c_int32)]


def c_sign(lib, x: np.ndarray, a: SignAttrs, out: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    y = np.zeros_like(x) if out is None else out
    p = SignParams(a.input_zero_point)
    return lib.mcuqp_sign_s8(C.byref(p), C.c_int32(x.size), ptr(x), ptr(y)), y


def test_sign_c_matches_numpy_for_every_zero_point(runtime) -> None:
    rng = np.random.default_rng(11)
    for zp in range(-128, 128):
        attrs = SignAttrs(zp)
        rc, y = c_sign(runtime, ALL_INT8, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, sign_s8(ALL_INT8, attrs))
        x = rng.integers(-128, 128, size=int(rng.integers(1, 3000)), dtype=np.int8)
        rc, y = c_sign(runtime, x, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, sign_s8(x, attrs))


def test_sign_in_place(runtime) -> None:
    x = np.random.default_rng(2).integers(-128, 128, size=777, dtype=np.int8)
    expected = sign_s8(x, SignAttrs(-5))
    rc, y = c_sign(runtime, x, SignAttrs(-5), out=x)
    assert rc == 0 and y is x
    np.testing.assert_array_equal(x, expected)


def test_sign_semantics() -> None:
    # Real value = s * (q - zp): zero (q == zp) maps to +1, as torch's BinaryActivation does.
    y = sign_s8(np.array([-128, 2, 3, 4, 127], dtype=np.int8), SignAttrs(3))
    np.testing.assert_array_equal(y, [-1, -1, 1, 1, 1])
    assert y.dtype == np.int8


def test_sign_rejects_bad_arguments(runtime) -> None:
    x = ALL_INT8.copy()
    assert c_sign(runtime, x, SignAttrs(128))[0] != 0
    assert c_sign(runtime, x, SignAttrs(-129))[0] != 0
    assert runtime.mcuqp_sign_s8(None, C.c_int32(1), ptr(x), ptr(x)) != 0
    assert runtime.mcuqp_sign_s8(C.byref(SignParams(0)), C.c_int32(-1), ptr(x), ptr(x)) != 0
    with pytest.raises(UnsupportedModelError):
        sign_s8(x.astype(np.int16), SignAttrs(0))
    with pytest.raises(UnsupportedModelError):
        sign_s8(x, SignAttrs(200))
