"""int8 MEAN over H and W: host-compiled C == numpy reference bit for bit, and the
parameters TFLite Micro's Prepare/Eval derive (1/count folded into the multiplier)."""
from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

from mcuqp.ops.mean import MeanAttrs, mean_attrs, mean_s8
from mcuqp.quant.fixedpoint import quantize_multiplier
from hostlib import dims, mirrors, ptr


@mirrors("mcuqp_mean_params")
class MeanParams(C.Structure):  # mirrors mcuqp_mean_params
    _fields_ = [(f, C.c_int32) for f in "count input_offset output_offset multiplier shift".split()]


def c_mean(lib, x: np.ndarray, a: MeanAttrs) -> tuple[int, np.ndarray]:
    x = np.ascontiguousarray(x)
    y = np.full((x.shape[0], x.shape[3]), 55, np.int8)
    p = MeanParams(a.count, a.input_offset, a.output_offset, a.multiplier, a.shift)
    d = dims(x.shape)
    return lib.mcuqp_mean_s8(C.byref(p), C.byref(d), ptr(x), ptr(y)), y


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mean_c_matches_numpy(runtime, runtime_single_rounding, rounding) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(9)
    for i in range(200):
        n, h, w, c = (int(v) for v in rng.integers(1, 9, 4))
        if i % 10 == 0:
            h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))  # big counts: shift clamping
        x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
        s_in, s_out = (float(v) for v in rng.uniform(0.001, 0.3, 2))
        if i % 7 == 0:
            s_out = s_in  # equal quantization: TFLM still requantizes
        attrs = mean_attrs(s_in, int(rng.integers(-128, 128)), s_out, int(rng.integers(-128, 128)), h * w)
        rc, y = c_mean(lib, x, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, mean_s8(x, attrs, rounding))


def test_mean_attrs_fold_the_count_into_the_multiplier() -> None:
    m, s = quantize_multiplier(float(np.float32(0.1)) / float(np.float32(0.03)))
    a = mean_attrs(0.1, 5, 0.03, -7, 15)  # floor(log2(15)) = 3
    assert (a.multiplier, a.shift) == ((m << 3) // 15, s - 3)
    assert (a.count, a.input_offset, a.output_offset) == (15, -5, -7)
    # The left shift never takes the final shift below -31.
    tiny = mean_attrs(1e-6, 0, 1.0, 0, 1 << 20)
    assert tiny.shift >= -31


def test_mean_of_a_constant_tensor_is_that_value() -> None:
    x = np.full((2, 5, 3, 4), -37, np.int8)
    np.testing.assert_array_equal(mean_s8(x, mean_attrs(0.1, 3, 0.1, 3, 15)), np.full((2, 4), -37, np.int8))


def test_mean_rejects_bad_arguments(runtime) -> None:
    x = np.zeros((1, 3, 3, 2), np.int8)
    rc, _ = c_mean(runtime, x, mean_attrs(0.1, 0, 0.1, 0, 8))  # count 8 for a 3x3 input
    assert rc == -1
    rc, _ = c_mean(runtime, x, MeanAttrs(count=9, multiplier=-5))
    assert rc == -1
    rc, _ = c_mean(runtime, x, mean_attrs(0.1, 0, 0.1, 0, 9))
    assert rc == 0


def test_mean_over_consecutive_axes_of_rank_2_to_5_matches_tflm(tmp_path) -> None:
    """MEAN over any run of consecutive axes after the batch (the length of a Conv1D's
    (1, L, C), channels, ...), with and without keep_dims, equals TFLite Micro."""
    import prereq

    prereq.require_module("tflite_micro")
    from tflite_builder import ModelBuilder, run_tflm

    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.reference.interpreter import run as reference_run

    rng = np.random.default_rng(17)
    for case in range(60):
        rank = int(rng.integers(2, 6))
        shape = (1, *(int(v) for v in rng.integers(1, 6, rank - 1)))
        a0 = int(rng.integers(1, rank))
        axes = list(range(a0, int(rng.integers(a0, rank)) + 1))
        keep = bool(case % 2)
        out = tuple(1 if d in axes else n for d, n in enumerate(shape)) if keep else tuple(
            n for d, n in enumerate(shape) if d not in axes)
        if len(out) < 2:
            continue
        b = ModelBuilder()
        x = b.add_input("x", shape, scale=float(rng.uniform(0.01, 0.2)), zero_point=int(rng.integers(-128, 128)))
        ax = b.add_constant("axes", np.array([a - rank if case % 3 == 0 else a for a in axes], np.int32))
        y = b.add_tensor("y", out, scale=float(rng.uniform(0.01, 0.2)), zero_point=int(rng.integers(-128, 128)))
        b.add_operator("MEAN", [x, ax], [y], {"keep_dims": keep})
        b.mark_output(y)
        path = tmp_path / f"m{case}.tflite"
        path.write_bytes(b.build())
        g = load_tflite(path)
        for _ in range(2):
            xs = rng.integers(-128, 128, shape).astype(np.int8)
            (want,) = run_tflm(path.read_bytes(), [xs])
            np.testing.assert_array_equal(reference_run(g, xs).reshape(want.shape), want, err_msg=f"{shape} {axes}")
