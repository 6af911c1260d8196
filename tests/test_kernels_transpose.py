"""int8 TRANSPOSE (rank 1-5): host-compiled C == numpy twin on random shapes and
permutations; numpy twin == TFLite Micro on single-op models; the importer turns a
permutation that moves only size-1 axes into a RESHAPE view."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import prereq
from hostlib import TransposeParams, ptr
from mcuqp.ops.transpose import MAX_RANK, TransposeAttrs, moves_data, padded_perm, transpose_s8


def c_transpose(lib, x: np.ndarray, perm: tuple[int, ...]) -> tuple[int, np.ndarray]:
    x = np.ascontiguousarray(x)
    shape = (1,) * (MAX_RANK - x.ndim) + x.shape
    p = TransposeParams((C.c_int32 * 5)(*shape), (C.c_int32 * 5)(*padded_perm(perm)))
    y = np.full(tuple(x.shape[d] for d in perm), 77, np.int8)
    return lib.mcuqp_transpose_s8(C.byref(p), ptr(x), ptr(y)), y


@st.composite
def tensors_and_perms(draw):
    rank = draw(st.integers(1, MAX_RANK))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    perm = tuple(draw(st.permutations(range(rank))))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(-128, 128, shape).astype(np.int8), perm


@settings(max_examples=300, deadline=None)
@given(tensors_and_perms())
def test_transpose_c_matches_numpy(runtime, case) -> None:
    x, perm = case
    rc, y = c_transpose(runtime, x, perm)
    assert rc == 0
    np.testing.assert_array_equal(y, transpose_s8(x, TransposeAttrs(perm)))


def test_transpose_numpy_definition_and_views() -> None:
    x = np.arange(6, dtype=np.int8).reshape(1, 2, 3)
    assert transpose_s8(x, TransposeAttrs((0, 2, 1)))[0].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert not moves_data((1, 1, 4, 1), (0, 3, 2, 1))  # only 1s move: same bytes
    assert moves_data((1, 2, 3), (0, 2, 1))


def test_transpose_rejects_bad_arguments(runtime) -> None:
    x = np.zeros((2, 3), np.int8)
    y = np.zeros(6, np.int8)
    for shape, perm in (((1, 1, 1, 2, 3), (0, 1, 2, 4, 4)), ((1, 1, 1, 2, 0), (0, 1, 2, 4, 3)),
                        ((1, 1, 1, 2, 3), (0, 1, 2, 5, 3))):
        p = TransposeParams((C.c_int32 * 5)(*shape), (C.c_int32 * 5)(*perm))
        assert runtime.mcuqp_transpose_s8(C.byref(p), ptr(x), ptr(y)) == -1
    p = TransposeParams((C.c_int32 * 5)(1, 1, 1, 2, 3), (C.c_int32 * 5)(0, 1, 2, 4, 3))
    assert runtime.mcuqp_transpose_s8(None, ptr(x), ptr(y)) == -1
    assert runtime.mcuqp_transpose_s8(C.byref(p), ptr(x), ptr(y)) == 0


def transpose_model(shape: tuple[int, ...], perm: tuple[int, ...], scale: float = 0.05, zp: int = 3) -> bytes:
    from tflite_builder import ModelBuilder

    b = ModelBuilder()
    x = b.add_input("x", shape, scale=scale, zero_point=zp)
    p = b.add_constant("perm", np.array(perm, np.int32))
    y = b.add_tensor("y", tuple(shape[d] for d in perm), scale=scale, zero_point=zp)
    b.add_operator("TRANSPOSE", [x, p], [y])
    b.mark_output(y)
    return b.build()


def test_transpose_reference_matches_tflm(tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from tflite_builder import run_tflm

    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.ir import OpKind
    from mcuqp.reference.interpreter import run as reference_run

    rng = np.random.default_rng(8)
    kinds = set()
    for case in range(40):
        rank = int(rng.integers(2, MAX_RANK + 1))
        shape = (1, *(int(v) for v in rng.integers(1, 5, rank - 1)))
        perm = (0, *(int(v) + 1 for v in rng.permutation(rank - 1)))
        path = tmp_path / f"t{case}.tflite"
        path.write_bytes(transpose_model(shape, perm))
        g = load_tflite(path)
        kinds.add(g.ops[0].kind)
        x = rng.integers(-128, 128, shape).astype(np.int8)
        (want,) = run_tflm(path.read_bytes(), [x])
        np.testing.assert_array_equal(reference_run(g, x).reshape(want.shape), want)
    assert kinds == {OpKind.TRANSPOSE, OpKind.RESHAPE}
