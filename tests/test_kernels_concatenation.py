"""int8 concatenation: host-compiled C == numpy reference bit for bit."""
from __future__ import annotations

import ctypes as C

import numpy as np

from mcuqp.ops.concatenation import ConcatAttrs, concatenation_s8
from hostlib import ptr


def c_concat(lib, xs: list[np.ndarray], axis: int) -> tuple[int, np.ndarray]:
    xs = [np.ascontiguousarray(x) for x in xs]
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    y = np.full(shape, 99, np.int8)
    ptrs = (C.POINTER(C.c_int8) * len(xs))(*[ptr(x) for x in xs])
    sizes = (C.c_int32 * len(xs))(*[x.shape[axis] for x in xs])
    outer = int(np.prod(shape[:axis]))
    inner = int(np.prod(shape[axis + 1:]))
    rc = lib.mcuqp_concatenation_s8(C.c_int32(len(xs)), ptrs, sizes, C.c_int32(outer), C.c_int32(inner), ptr(y))
    return rc, y


def test_concatenation_c_matches_numpy(runtime) -> None:
    rng = np.random.default_rng(8)
    for _ in range(200):
        rank = int(rng.integers(2, 5))
        base = [int(rng.integers(1, 3))] + [int(v) for v in rng.integers(1, 6, rank - 1)]
        axis = int(rng.integers(1, rank))
        xs = []
        for _ in range(int(rng.integers(1, 5))):
            shape = list(base)
            shape[axis] = int(rng.integers(0, 5))  # empty inputs are legal too
            xs.append(rng.integers(-128, 128, shape).astype(np.int8))
        rc, y = c_concat(runtime, xs, axis)
        assert rc == 0
        np.testing.assert_array_equal(y, concatenation_s8(xs, ConcatAttrs(axis=axis)))


def test_concatenation_rejects_bad_arguments(runtime) -> None:
    x = np.zeros((1, 2), np.int8)
    y = np.zeros((1, 4), np.int8)
    ptrs = (C.POINTER(C.c_int8) * 2)(ptr(x), ptr(x))
    sizes = (C.c_int32 * 2)(2, -1)
    assert runtime.mcuqp_concatenation_s8(2, ptrs, sizes, 1, 1, ptr(y)) == -1
    assert runtime.mcuqp_concatenation_s8(0, ptrs, sizes, 1, 1, ptr(y)) == -1
    sizes = (C.c_int32 * 2)(2, 2)
    assert runtime.mcuqp_concatenation_s8(2, ptrs, sizes, 1, 1, ptr(y)) == 0
