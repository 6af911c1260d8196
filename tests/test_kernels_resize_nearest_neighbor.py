"""int8 RESIZE_NEAREST_NEIGHBOR: host-compiled C == numpy twin on random shapes and index
maps; the float32 index formula and the numpy twin == TFLite Micro on single-op models for
every align_corners / half_pixel_centers combination, up- and down-sampling."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import prereq
from hostlib import dims, ptr
from mcuqp.ops.resize_nearest_neighbor import ResizeNearestAttrs, resize_attrs, resize_nearest_neighbor_s8


def c_resize(lib, x: np.ndarray, a: ResizeNearestAttrs) -> tuple[int, np.ndarray]:
    x = np.ascontiguousarray(x)
    out = (x.shape[0], len(a.y_map), len(a.x_map), x.shape[3])
    y = np.full(out, 42, np.int8)
    ym, xm = np.array(a.y_map or [0], np.int32), np.array(a.x_map or [0], np.int32)
    rc = lib.mcuqp_resize_nearest_neighbor_s8(C.byref(dims(x.shape)), ptr(x), ptr(ym, C.c_int32),
                                              ptr(xm, C.c_int32), C.byref(dims(out)), ptr(y))
    return rc, y


@st.composite
def resizes(draw):
    n, h, w, c = (draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 5)))
    oh, ow = draw(st.integers(1, 15)), draw(st.integers(1, 15))
    align, half = draw(st.booleans()), draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).integers(-128, 128, (n, h, w, c)).astype(np.int8)
    return x, resize_attrs((h, w), (oh, ow), align, half)


@settings(max_examples=300, deadline=None)
@given(resizes())
def test_resize_c_matches_numpy(runtime, case) -> None:
    x, attrs = case
    rc, y = c_resize(runtime, x, attrs)
    assert rc == 0
    np.testing.assert_array_equal(y, resize_nearest_neighbor_s8(x, attrs))


def test_resize_maps() -> None:
    assert resize_attrs((2, 3), (4, 6), False, False) == ResizeNearestAttrs((0, 0, 1, 1), (0, 0, 1, 1, 2, 2))
    assert resize_attrs((3, 3), (5, 2), True, False).y_map == (0, 1, 1, 2, 2)  # round((0..4) * 0.5), half away
    assert resize_attrs((4, 4), (2, 2), False, True).y_map == (1, 3)


def test_resize_rejects_bad_arguments(runtime) -> None:
    x = np.zeros((1, 2, 2, 3), np.int8)
    bad = [ResizeNearestAttrs((0, 2), (0, 1)), ResizeNearestAttrs((0, 1), (-1, 1))]
    for a in bad:
        rc, _ = c_resize(runtime, x, a)
        assert rc == -1
    y = np.zeros((1, 2, 2, 4), np.int8)  # channel count differs
    m = np.zeros(2, np.int32)
    assert runtime.mcuqp_resize_nearest_neighbor_s8(C.byref(dims(x.shape)), ptr(x), ptr(m, C.c_int32),
                                                    ptr(m, C.c_int32), C.byref(dims(y.shape)), ptr(y)) == -1


def resize_model(in_shape, out_hw, align: bool, half: bool, scale: float = 0.07, zp: int = -9) -> bytes:
    from tflite_builder import ModelBuilder

    b = ModelBuilder()
    x = b.add_input("x", in_shape, scale=scale, zero_point=zp)
    size = b.add_constant("size", np.array(out_hw, np.int32))
    y = b.add_tensor("y", (in_shape[0], *out_hw, in_shape[3]), scale=scale, zero_point=zp)
    b.add_operator("RESIZE_NEAREST_NEIGHBOR", [x, size], [y], {"align_corners": align, "half_pixel_centers": half},
                   options_type="ResizeNearestNeighborOptions")
    b.mark_output(y)
    return b.build()


def test_resize_reference_matches_tflm(tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from tflite_builder import run_tflm

    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.reference.interpreter import run as reference_run

    rng = np.random.default_rng(21)
    for case in range(64):
        shape = (1, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 4)))
        out_hw = (int(rng.integers(1, 20)), int(rng.integers(1, 20)))
        align, half = bool(case & 1), bool(case & 2)
        path = tmp_path / f"r{case}.tflite"
        path.write_bytes(resize_model(shape, out_hw, align, half))
        g = load_tflite(path)
        x = rng.integers(-128, 128, shape).astype(np.int8)
        (want,) = run_tflm(path.read_bytes(), [x])
        np.testing.assert_array_equal(reference_run(g, x), want, err_msg=f"{shape} -> {out_hw} {align} {half}")
