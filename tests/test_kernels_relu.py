"""Standalone int8 RELU / RELU6 / RELU_N1_TO_1: host-compiled C == numpy twin over every input
value for randomized quantizations; numpy twin == TFLite Micro on single-op RELU and RELU6
models (TFLite Micro has no RELU_N1_TO_1 kernel: that one is checked against TFLite's formula);
a conv -> RELU6 -> RELU -> fully connected model bit-exact on QEMU (Cortex-M4 and M55)."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest

import prereq
from hostlib import ReluParams, ptr
from mcuqp.ops.relu import ReluAttrs, relu_attrs, relu_s8

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)
FIELDS = [f for f, _ in ReluParams._fields_]
ACTS = ["relu", "relu6", "relu_n1_to_1"]


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.float32(10 ** rng.uniform(np.log10(lo), np.log10(hi))))


def random_quant(rng: np.random.Generator) -> tuple[float, int, float, int]:
    return (log_uniform(rng, 1e-3, 1.0), int(rng.integers(-128, 128)), log_uniform(rng, 1e-3, 1.0),
            int(rng.integers(-128, 128)))


def c_relu(lib, x: np.ndarray, a: ReluAttrs) -> tuple[int, np.ndarray]:
    y = np.zeros_like(x)
    p = ReluParams(*(getattr(a, f) for f in FIELDS))
    return lib.mcuqp_relu_s8(C.byref(p), C.c_int32(x.size), ptr(x), ptr(y)), y


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_relu_c_matches_numpy(runtime, runtime_single_rounding, rounding) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(31)
    for case in range(240):
        attrs = relu_attrs(ACTS[case % 3], *random_quant(rng))
        x = np.concatenate([ALL_INT8, rng.integers(-128, 128, int(rng.integers(1, 200))).astype(np.int8)])
        rc, y = c_relu(lib, x, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, relu_s8(x, attrs, rounding))


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_relu6_is_a_pure_clamp_in_the_input_quantization(rounding) -> None:
    # TFLM's RELU6 does not requantize: multiplier 1.0 must give back x exactly.
    a = relu_attrs("relu6", 0.05, 3, 0.5, -100)
    assert (a.multiplier, a.shift, a.act_min, a.act_max) == (1 << 30, 1, 3, 3 + 120)
    y = relu_s8(ALL_INT8, a, rounding)
    np.testing.assert_array_equal(y, np.clip(ALL_INT8, 3, 123))


def test_relu_n1_to_1_follows_tflite_formula() -> None:
    s_in, z_in, s_out, z_out = 0.02, -5, 1 / 128, 0
    y = relu_s8(ALL_INT8, relu_attrs("relu_n1_to_1", s_in, z_in, s_out, z_out)).astype(int)
    real = np.clip(s_in * (ALL_INT8.astype(int) - z_in), -1.0, 1.0)
    assert np.abs(y - np.clip(np.round(real / s_out) + z_out, -128, 127)).max() <= 1
    assert y.min() == -128 and y.max() == 127  # q(-1) = -128, q(1) = 128 -> 127


def test_relu_rejects_bad_arguments(runtime) -> None:
    for bad in (ReluAttrs(multiplier=-1), ReluAttrs(multiplier=1 << 30, shift=31), ReluAttrs(act_min=5, act_max=4),
                ReluAttrs(act_min=-129)):
        rc, _ = c_relu(runtime, ALL_INT8, bad)
        assert rc == -1


# ---- TFLite Micro oracle -------------------------------------------------------------


@pytest.mark.parametrize("op", ["RELU", "RELU6"])
def test_relu_matches_tflm(op: str) -> None:
    prereq.require_module("tflite_micro")
    from tflite_builder import ModelBuilder, run_tflm, tflm_interpreter

    rng = np.random.default_rng(32 if op == "RELU" else 33)
    for case in range(40):
        s_in, z_in, s_out, z_out = random_quant(rng)
        if case % 4 == 0:
            s_out, z_out = s_in, z_in  # what converters write
        shape = tuple(int(v) for v in rng.integers(1, 7, int(rng.integers(1, 5))))
        b = ModelBuilder()
        x = b.add_input("x", shape, scale=s_in, zero_point=z_in)
        y = b.add_tensor("y", shape, scale=s_out, zero_point=z_out)
        b.add_operator(op, [x], [y])
        b.mark_output(y)
        model = b.build()
        interp = tflm_interpreter(model)
        attrs = relu_attrs(op.lower(), s_in, z_in, s_out, z_out)
        for _ in range(3):
            xs = np.resize(np.concatenate([ALL_INT8, rng.integers(-128, 128, 256).astype(np.int8)]), shape)
            got = run_tflm(model, [xs], interpreter=interp)[0]
            assert np.array_equal(got, relu_s8(xs, attrs)), (case, s_in, z_in, s_out, z_out)


def _conv_relu_fc(path: Path) -> Path:
    from tflite_builder import ModelBuilder

    rng = np.random.default_rng(34)
    b = ModelBuilder()
    x = b.add_input("x", (1, 6, 6, 3), scale=0.05, zero_point=-3)
    wscale = rng.uniform(0.005, 0.02, 4).astype(np.float32)
    w = b.add_constant("w", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=wscale,
                       quantized_dimension=0)
    bias = b.add_constant("b", rng.integers(-2000, 2000, 4).astype(np.int32),
                          scale=np.float32(0.05) * wscale, quantized_dimension=0)
    h = b.add_tensor("h", (1, 6, 6, 4), scale=0.04, zero_point=5)
    b.add_operator("CONV_2D", [x, w, bias], [h], {"padding": "SAME", "stride_w": 1, "stride_h": 1,
                                                  "fused_activation_function": "NONE"})
    r6 = b.add_tensor("r6", (1, 6, 6, 4), scale=0.04, zero_point=5)
    b.add_operator("RELU6", [h], [r6])
    r = b.add_tensor("r", (1, 6, 6, 4), scale=0.03, zero_point=-110)
    b.add_operator("RELU", [r6], [r])
    f = b.add_tensor("f", (1, 144), scale=0.03, zero_point=-110)
    b.add_operator("RESHAPE", [r], [f], {"new_shape": [1, 144]})
    fw = b.add_constant("fw", rng.integers(-127, 128, (5, 144)).astype(np.int8), scale=np.float32(0.004))
    fb = b.add_constant("fb", rng.integers(-500, 500, 5).astype(np.int32), scale=np.float32(0.03 * 0.004))
    y = b.add_tensor("y", (1, 5), scale=0.25, zero_point=2)
    b.add_operator("FULLY_CONNECTED", [f, fw, fb], [y])
    b.mark_output(y)
    path.write_bytes(b.build())
    return path


def test_conv_relu_fc_reference_matches_tflm(tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp import api
    from mcuqp.ir import OpKind
    from mcuqp.oracle import tflm_run
    from mcuqp.reference.interpreter import run as reference_run

    model = _conv_relu_fc(tmp_path / "m.tflite")
    loaded = api.load(model, n_random=16, seed=3)
    assert [op.kind for op in loaded.graph.ops].count(OpKind.RELU) == 2
    assert api.oracle_first_mismatch(loaded, 16) is None
    xs = loaded.verify_inputs[:16]
    ref = np.stack([reference_run(loaded.graph, x[None])[0] for x in xs])
    assert np.array_equal(ref.reshape(16, -1), tflm_run(model, xs).reshape(16, -1))


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_conv_relu_fc_bit_exact_on_qemu(board: str, tmp_path: Path) -> None:
    from mcuqp import api

    loaded = api.load(_conv_relu_fc(tmp_path / "m.tflite"), n_random=12, seed=5)
    res = api.verify(loaded, board=board, n_inputs=12)
    assert res.compared == 12
    assert res.mismatches == 0, f"{res.mismatched_elements} elements differ"
    assert np.array_equal(res.device_outputs, res.reference_outputs)


def test_relu_n1_to_1_imports_from_tflite(tmp_path: Path) -> None:
    from tflite_builder import ModelBuilder

    from mcuqp import api
    from mcuqp.reference.interpreter import run as reference_run

    b = ModelBuilder()
    x = b.add_input("x", (1, 256), scale=0.02, zero_point=-5)
    y = b.add_tensor("y", (1, 256), scale=1 / 128, zero_point=0)
    b.add_operator("RELU_N1_TO_1", [x], [y])
    b.mark_output(y)
    (tmp_path / "m.tflite").write_bytes(b.build())
    loaded = api.load(tmp_path / "m.tflite", n_random=2, seed=1)
    [op] = loaded.graph.ops
    assert op.attrs == relu_attrs("relu_n1_to_1", 0.02, -5, 1 / 128, 0)
    np.testing.assert_array_equal(reference_run(loaded.graph, ALL_INT8[None])[0], relu_s8(ALL_INT8, op.attrs))
