"""int8 constant padding: host-compiled C == numpy reference bit for bit."""
from __future__ import annotations

import ctypes as C

import numpy as np

from mcuqp.ops.pad import PadAttrs, pad_s8
from hostlib import dims, mirrors, ptr


@mirrors("mcuqp_pad_params")
class PadParams(C.Structure):  # mirrors mcuqp_pad_params
    _fields_ = [("before", C.c_int32 * 4), ("after", C.c_int32 * 4), ("pad_value", C.c_int32)]


def c_pad(lib, x: np.ndarray, a: PadAttrs) -> tuple[int, np.ndarray]:
    x = np.ascontiguousarray(x)
    lead = 4 - x.ndim  # the C kernel sees NHWC with missing leading dimensions of 1
    paddings = [(0, 0)] * lead + list(a.paddings)
    out = tuple(d + b + e for d, (b, e) in zip((1,) * lead + x.shape, paddings))
    y = np.full(out, 99, np.int8)
    p = PadParams((C.c_int32 * 4)(*[b for b, _ in paddings]), (C.c_int32 * 4)(*[e for _, e in paddings]),
                  a.pad_value)
    di, do = dims(x.shape), dims(out)
    rc = lib.mcuqp_pad_s8(C.byref(p), C.byref(di), ptr(x), C.byref(do), ptr(y))
    return rc, y.reshape(out[lead:])


def test_pad_c_matches_numpy(runtime) -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        rank = int(rng.integers(2, 5))
        shape = (int(rng.integers(1, 4)), *(int(v) for v in rng.integers(1, 6, rank - 1)))
        x = rng.integers(-128, 128, shape).astype(np.int8)
        paddings = ((0, 0), *((int(b), int(e)) for b, e in rng.integers(0, 4, (rank - 1, 2))))
        attrs = PadAttrs(paddings=paddings, pad_value=int(rng.integers(-128, 128)))
        rc, y = c_pad(runtime, x, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, pad_s8(x, attrs))


def test_pad_numpy_definition() -> None:
    x = np.array([[[[1], [2]]]], np.int8)  # (1, 1, 2, 1)
    y = pad_s8(x, PadAttrs(paddings=((0, 0), (1, 0), (0, 1), (0, 0)), pad_value=-7))
    assert y[0, :, :, 0].tolist() == [[-7, -7, -7], [1, 2, -7]]


def test_pad_rejects_bad_arguments(runtime) -> None:
    x = np.zeros((1, 2, 2, 1), np.int8)
    y = np.zeros((1, 3, 2, 1), np.int8)
    bad = PadParams((C.c_int32 * 4)(0, 2, 0, 0), (C.c_int32 * 4)(0, 0, 0, 0), 0)  # 2 + 2 != 3
    assert runtime.mcuqp_pad_s8(C.byref(bad), C.byref(dims(x.shape)), ptr(x), C.byref(dims(y.shape)), ptr(y)) == -1
    neg = PadParams((C.c_int32 * 4)(0, 2, -1, 0), (C.c_int32 * 4)(0, -1, 1, 0), 0)
    assert runtime.mcuqp_pad_s8(C.byref(neg), C.byref(dims(x.shape)), ptr(x), C.byref(dims(y.shape)), ptr(y)) == -1
    ok = PadParams((C.c_int32 * 4)(0, 1, 0, 0), (C.c_int32 * 4)(0, 0, 0, 0), 3)
    assert runtime.mcuqp_pad_s8(C.byref(ok), C.byref(dims(x.shape)), ptr(x), C.byref(dims(y.shape)), ptr(y)) == 0
    assert y[0, 0, :, 0].tolist() == [3, 3]
