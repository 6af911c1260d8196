"""int8 STRIDED_SLICE / SPLIT / SPLIT_V (rank 1-5): host-compiled C == numpy twin on random
slices (negative strides included); the begin / end / mask resolution and the numpy twin ==
TFLite Micro on single-op models with random masks; SPLIT and SPLIT_V become one slice
per output."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prereq
from hostlib import StridedSliceParams, ptr
from mcuqp.ops.strided_slice import MAX_RANK, StridedSliceAttrs, params_fields, resolve, strided_slice_s8


def c_slice(lib, x: np.ndarray, a: StridedSliceAttrs) -> tuple[int, np.ndarray]:
    x = np.ascontiguousarray(x)
    p = StridedSliceParams(*((C.c_int32 * 5)(*f) for f in params_fields(x.shape, a)))
    y = np.full(a.sizes, 55, np.int8)
    return lib.mcuqp_strided_slice_s8(C.byref(p), ptr(x), ptr(y)), y


@st.composite
def slices(draw):
    rank = draw(st.integers(1, MAX_RANK))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank)))
    begin, strides, sizes = [], [], []
    for size in shape:
        s = draw(st.integers(-3, 3).filter(lambda v: v != 0))
        b = draw(st.integers(0, size - 1))
        room = b // -s + 1 if s < 0 else (size - 1 - b) // s + 1
        begin.append(b)
        strides.append(s)
        sizes.append(draw(st.integers(0, room)))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).integers(-128, 128, shape).astype(np.int8)
    return x, StridedSliceAttrs(tuple(begin), tuple(strides), tuple(sizes))


@settings(max_examples=300, deadline=None)
@given(slices())
def test_strided_slice_c_matches_numpy(runtime, case) -> None:
    x, attrs = case
    rc, y = c_slice(runtime, x, attrs)
    assert rc == 0
    np.testing.assert_array_equal(y, strided_slice_s8(x, attrs))


def test_resolve_follows_tflite_masks() -> None:
    x = np.arange(24, dtype=np.int8).reshape(2, 3, 4)
    cases = [  # (begin, end, strides, begin_mask, end_mask, shrink_mask) -> numpy slice
        (([0, 1, -1], [2, 3, 0], [1, 1, -1], 0, 0, 0), np.s_[0:2, 1:3, -1:0:-1]),
        (([0, 0, 0], [0, 0, 0], [1, 1, -2], 0b111, 0b111, 0), np.s_[:, :, ::-2]),
        (([1, -2, 0], [2, 0, 4], [1, 1, 3], 0, 0b010, 0b001), np.s_[1, -2:, 0:4:3]),
        (([-5, 10, 7], [5, -10, -9], [1, 1, -1], 0, 0, 0), np.s_[-5:5, 10:-10, 7:-9:-1]),
    ]
    for args, index in cases:
        a = resolve(x.shape, *args)
        got = strided_slice_s8(x, a)
        want = x[index]
        assert got.size == want.size and got.reshape(-1).tolist() == want.reshape(-1).tolist(), args


def test_strided_slice_rejects_bad_arguments(runtime) -> None:
    x = np.zeros((2, 3), np.int8)
    y = np.zeros(6, np.int8)
    bad = [((1, 1, 1, 2, 3), (0, 0, 0, 0, 3), (1, 1, 1, 1, 1), (1, 1, 1, 1, 1)),  # begin outside
           ((1, 1, 1, 2, 3), (0, 0, 0, 0, 1), (1, 1, 1, 1, 1), (1, 1, 1, 1, 3)),  # runs past the end
           ((1, 1, 1, 2, 3), (0, 0, 0, 0, 1), (1, 1, 1, 1, -1), (1, 1, 1, 1, 3)),  # runs below 0
           ((1, 1, 1, 2, 3), (0, 0, 0, 0, 0), (1, 1, 1, 1, 0), (1, 1, 1, 1, 1)),  # stride 0
           ((1, 1, 1, 0, 3), (0, 0, 0, 0, 0), (1, 1, 1, 1, 1), (1, 1, 1, 1, 1))]  # empty input
    for f in bad:
        p = StridedSliceParams(*((C.c_int32 * 5)(*v) for v in f))
        assert runtime.mcuqp_strided_slice_s8(C.byref(p), ptr(x), ptr(y)) == -1
    ok = StridedSliceParams(*((C.c_int32 * 5)(*v) for v in (
        (1, 1, 1, 2, 3), (0, 0, 0, 1, 2), (1, 1, 1, -1, -1), (1, 1, 1, 2, 3))))
    assert runtime.mcuqp_strided_slice_s8(C.byref(ok), ptr(np.arange(6, dtype=np.int8)), ptr(y)) == 0
    assert y.tolist() == [5, 4, 3, 2, 1, 0]


# ---- against TFLite Micro --------------------------------------------------------------


def _slice_model(shape, begin, end, strides, masks, out_shape) -> bytes:
    from tflite_builder import ModelBuilder

    b = ModelBuilder()
    x = b.add_input("x", shape, scale=0.05, zero_point=-4)
    ins = [x] + [b.add_constant(n, np.array(v, np.int32)) for n, v in (("b", begin), ("e", end), ("s", strides))]
    y = b.add_tensor("y", out_shape, scale=0.05, zero_point=-4)
    b.add_operator("STRIDED_SLICE", ins, [y], {"begin_mask": masks[0], "end_mask": masks[1],
                                                "shrink_axis_mask": masks[2]})
    b.mark_output(y)
    return b.build()


def _check(path: Path, model: bytes, rng, shape) -> None:
    from tflite_builder import run_tflm

    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.reference.interpreter import run as reference_run

    path.write_bytes(model)
    g = load_tflite(path)
    for _ in range(2):
        x = rng.integers(-128, 128, shape).astype(np.int8)
        (want,) = run_tflm(model, [x])
        ref = reference_run(g, x.reshape((1, *g.input.shape[1:])))  # a rank-1 input is imported as (1, C)
        np.testing.assert_array_equal(ref.reshape(want.shape), want)


def test_strided_slice_reference_matches_tflm(tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp.errors import UnsupportedModelError
    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.ir import OpKind

    rng = np.random.default_rng(12)
    checked, negative = 0, 0
    for case in range(200):
        rank = int(rng.integers(1, 5))  # TFLite Micro's STRIDED_SLICE takes at most 4-D
        shape = (1, *(int(v) for v in rng.integers(1, 7, rank - 1)))
        begin = [int(v) for v in rng.integers(-8, 8, rank)]
        end = [int(v) for v in rng.integers(-8, 8, rank)]
        strides = [int(rng.choice([-3, -2, -1, 1, 1, 2, 3])) for _ in range(rank)]
        masks = [int(rng.integers(0, 1 << rank)) for _ in range(3)]
        masks[2] &= ~1  # keep the batch axis
        masks[0] |= 1
        masks[1] |= 1
        strides[0] = 1
        try:
            a = resolve(shape, begin, end, strides, *masks)
        except UnsupportedModelError:  # a shrunk axis past the end: TFLM would read out of bounds
            continue
        if min(a.sizes) < 1:
            continue
        out_shape = tuple(n for d, n in enumerate(a.sizes) if not masks[2] >> d & 1)
        model = _slice_model(shape, begin, end, strides, masks, out_shape)
        path = tmp_path / f"s{case}.tflite"
        path.write_bytes(model)
        try:
            g = load_tflite(path)
        except UnsupportedModelError as e:  # only the rank-1 outputs of a full shrink
            assert not out_shape, e
            continue
        assert g.ops[0].kind in (OpKind.STRIDED_SLICE, OpKind.RESHAPE)
        _check(path, model, rng, shape)
        checked += 1
        negative += any(s < 0 for s in strides)
    assert checked >= 60 and negative >= 15


def _split_model(shape, axis: int, sizes: list[int], v: bool) -> tuple[bytes, list[int]]:
    """SPLIT (or SPLIT_V) then CONCATENATION of the parts in reverse order (one output)."""
    from tflite_builder import ModelBuilder

    b = ModelBuilder()
    x = b.add_input("x", shape, scale=0.1, zero_point=7)
    ax = b.add_constant("axis", np.array([axis], np.int32))
    outs = []
    for k, n in enumerate(sizes):
        s = list(shape)
        s[axis] = n
        outs.append(b.add_tensor(f"part{k}", tuple(s), scale=0.1, zero_point=7))
    if v:
        sv = b.add_constant("sizes", np.array(sizes[:-1] + [-1], np.int32))
        b.add_operator("SPLIT_V", [x, sv, ax], outs, {"num_splits": len(sizes)}, options_type="SplitVOptions")
    else:
        b.add_operator("SPLIT", [ax, x], outs, {"num_splits": len(sizes)}, options_type="SplitOptions")
    y = b.add_tensor("y", shape, scale=0.1, zero_point=7)
    b.add_operator("CONCATENATION", outs[::-1], [y], {"axis": axis})
    b.mark_output(y)
    return b.build(), outs


def test_split_and_split_v_match_tflm(tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.ir import OpKind

    rng = np.random.default_rng(13)
    for case in range(30):
        rank = int(rng.integers(2, 5))  # CONCATENATION takes at most 4-D
        shape = [1, *(int(v) for v in rng.integers(1, 5, rank - 1))]
        axis = int(rng.integers(1, rank))
        k = int(rng.integers(1, 4))
        v = bool(case % 2)
        if v:
            shape[axis] = int(rng.integers(k, 8))
            cuts = sorted(int(c) for c in rng.choice(np.arange(1, shape[axis]), k - 1, replace=False))
            sizes = [b - a for a, b in zip([0, *cuts], [*cuts, shape[axis]])]
        else:
            shape[axis] *= k
            sizes = [shape[axis] // k] * k
        model, _ = _split_model(tuple(shape), axis, sizes, v)
        path = tmp_path / f"split{case}.tflite"
        _check(path, model, rng, tuple(shape))
        kinds = [op.kind for op in load_tflite(path).ops]
        assert kinds.count(OpKind.STRIDED_SLICE) + kinds.count(OpKind.RESHAPE) == k


def test_malformed_operators_are_reported(tmp_path: Path) -> None:
    from tflite_builder import ModelBuilder

    from mcuqp.errors import UnsupportedModelError
    from mcuqp.frontends.tflite import load_tflite

    cases = {  # what the importer says about each malformed operator
        "SPLIT": ("axis \\[1, 1\\]", lambda b, x, o: b.add_operator(
            "SPLIT", [b.add_constant("ax", np.ones(2, np.int32)), x], o, {"num_splits": 2},
            options_type="SplitOptions")),
        "SPLIT_V": ("do not cover", lambda b, x, o: b.add_operator(
            "SPLIT_V", [x, b.add_constant("sv", np.array([3, 3], np.int32)), b.add_constant("ax", np.array([1], np.int32))],
            o, {"num_splits": 2}, options_type="SplitVOptions")),
        "STRIDED_SLICE": ("2 inputs, expected the tensor, begin", lambda b, x, o: b.add_operator(
            "STRIDED_SLICE", [x, b.add_constant("b", np.zeros(2, np.int32))], o[:1])),
    }
    for opcode, (why, add) in cases.items():
        b = ModelBuilder()
        x = b.add_input("x", (1, 4), scale=0.1, zero_point=0)
        outs = [b.add_tensor(f"o{k}", (1, 2), scale=0.1, zero_point=0) for k in range(2)]
        add(b, x, outs)
        y = b.add_tensor("y", (1, 4), scale=0.1, zero_point=0)
        b.add_operator("CONCATENATION", outs, [y], {"axis": 1})
        b.mark_output(y)
        path = tmp_path / f"{opcode}.tflite"
        path.write_bytes(b.build())
        with pytest.raises(UnsupportedModelError, match=f"{opcode} \\(.*{why}"):
            load_tflite(path)
