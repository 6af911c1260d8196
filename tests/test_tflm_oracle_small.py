"""The strongest check of the numpy reference: single-op int8 .tflite models with random
quantization, run by TFLite Micro, must give exactly the reference's output.

Covers SOFTMAX, ADD, AVERAGE_POOL_2D and MAX_POOL_2D; the models are written by
tests/tflite_builder.py (the package's writer, mcuqp.export.tflite), so this also exercises it."""
from __future__ import annotations

import numpy as np
import pytest

import prereq  # noqa: E402

prereq.require_module("tflite_micro", module_level=True)

from tflite_builder import ModelBuilder, TfliteBuildError, run_tflm, tflm_interpreter  # noqa: E402
from mcuqp.ir import Padding  # noqa: E402
from mcuqp.ops.add import add_attrs, add_s8  # noqa: E402
from mcuqp.ops.common import activation_range  # noqa: E402
from mcuqp.ops.pool import PoolAttrs, avg_pool2d_s8, max_pool2d_s8  # noqa: E402
from mcuqp.ops.softmax import softmax_attrs, softmax_s8  # noqa: E402

ACTIVATIONS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]


def i8(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape).astype(np.int8)


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.float32(10 ** rng.uniform(np.log10(lo), np.log10(hi))))


def single_op(op: str, inputs: list[tuple[tuple[int, ...], float, int]], output: tuple[tuple[int, ...], float, int],
              options: dict) -> bytes:
    b = ModelBuilder()
    ins = [b.add_input(f"in{i}", shape, scale=s, zero_point=z) for i, (shape, s, z) in enumerate(inputs)]
    shape, s, z = output
    out = b.add_tensor("out", shape, scale=s, zero_point=z)
    b.add_operator(op, ins, [out], options)
    b.mark_output(out)
    return b.build()


def run_many(model: bytes, batches: list[list[np.ndarray]]) -> list[np.ndarray]:
    interp = tflm_interpreter(model)
    return [run_tflm(model, xs, interpreter=interp)[0] for xs in batches]


# ---- SOFTMAX -----------------------------------------------------------------------


def test_softmax_matches_tflm():
    rng = np.random.default_rng(101)
    checked = 0
    for case in range(40):
        # Rows up to 511 keep the exp sum below 512, where TFLM itself asserts.
        n = int(rng.choice([1, 2, 3, 10, 511, int(rng.integers(1, 512))]))
        scale = log_uniform(rng, 1e-3, 1.0) if case % 8 else log_uniform(rng, 1.0, 50.0)
        beta = float(np.float32(rng.choice([1.0, rng.uniform(0.1, 4.0)])))
        shape = (4, n) if case % 3 else (1, 2, 2, n)
        model = single_op("SOFTMAX", [(shape, scale, int(rng.integers(-128, 128)))], (shape, 1 / 256, -128),
                          {"beta": beta})
        attrs = softmax_attrs(scale, beta)
        batches = []
        for _ in range(3):
            x = i8(rng, shape).reshape(-1, n)
            x[0] = x[0, 0]  # an all-equal row
            if n > 1:  # a row straddling diff_min
                top = int(rng.integers(0, 128))
                x[1] = np.clip(top + attrs.diff_min - rng.integers(-1, 2, n), -128, 127)
                x[1, 0] = top
            batches.append([x.reshape(shape)])
        for [x], got in zip(batches, run_many(model, batches)):
            assert np.array_equal(got, softmax_s8(x, attrs)), (n, scale, beta)
            checked += x.size // n
    assert checked >= 400


# ---- ADD ---------------------------------------------------------------------------


def test_add_matches_tflm():
    rng = np.random.default_rng(102)
    for case in range(40):
        shape = tuple(int(v) for v in rng.integers(1, 7, int(rng.integers(1, 5))))
        s1, s2, so = (log_uniform(rng, 1e-3, 1.0) for _ in range(3))
        if case % 5 == 0:
            so = log_uniform(rng, 1e-3, 3e-3)  # a narrow output: many saturated results
        z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
        act = ACTIVATIONS[case % 4]
        model = single_op("ADD", [(shape, s1, z1), (shape, s2, z2)], (shape, so, zo),
                          {"fused_activation_function": act})
        attrs = add_attrs(s1, z1, s2, z2, so, zo, act)
        batches = [[i8(rng, shape), i8(rng, shape)] for _ in range(8)]
        for (x1, x2), got in zip(batches, run_many(model, batches)):
            assert np.array_equal(got, add_s8(x1, x2, attrs)), (shape, s1, s2, so, act)


# ---- pooling -----------------------------------------------------------------------


def tflite_padding(size: int, filter_size: int, stride: int, same: bool) -> tuple[int, int, int]:
    """(out, before, after) as TFLite computes SAME / VALID padding."""
    out = (size + stride - 1) // stride if same else (size - filter_size + stride) // stride
    total = max((out - 1) * stride + filter_size - size, 0)
    return out, total // 2, total - total // 2


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
def test_pool_matches_tflm(op):
    rng = np.random.default_rng(103 if op == "MAX_POOL_2D" else 104)
    ref = avg_pool2d_s8 if op == "AVERAGE_POOL_2D" else max_pool2d_s8
    for case in range(40):
        fh, fw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        same = bool(case % 2)
        h = int(rng.integers(fh, 12))
        w = int(rng.integers(fw, 12))
        n, c = int(rng.integers(1, 3)), int(rng.integers(1, 9))
        oh, top, bottom = tflite_padding(h, fh, sh, same)
        ow, left, right = tflite_padding(w, fw, sw, same)
        scale, zp = log_uniform(rng, 1e-3, 1.0), int(rng.integers(-128, 128))
        act = ACTIVATIONS[case % 4]
        model = single_op(op, [((n, h, w, c), scale, zp)], ((n, oh, ow, c), scale, zp), {
            "padding": "SAME" if same else "VALID", "stride_h": sh, "stride_w": sw,
            "filter_height": fh, "filter_width": fw, "fused_activation_function": act,
        })
        lo, hi = activation_range(act, scale, zp)
        attrs = PoolAttrs((fh, fw), (sh, sw), Padding(top, bottom, left, right), lo, hi)
        batches = [[i8(rng, (n, h, w, c))] for _ in range(6)]
        for [x], got in zip(batches, run_many(model, batches)):
            want = ref(x, attrs)
            assert want.shape == (n, oh, ow, c)
            assert np.array_equal(got, want), (op, x.shape, attrs)


# ---- the builder itself --------------------------------------------------------------


def test_builder_constants_per_channel_and_reshape():
    """Constant int8/int32 buffers, per-channel quantization and a vector option survive
    the round trip through TFLM: RESHAPE with a shape tensor, then ADD of a constant."""
    from tflite.Model import Model

    rng = np.random.default_rng(105)
    kdata = i8(rng, (1, 6))
    wdata = i8(rng, (3, 1, 1, 2))
    b = ModelBuilder()
    x = b.add_input("x", (1, 2, 3), scale=0.1, zero_point=1)
    shape = b.add_constant("shape", np.array([1, 6], np.int32))
    r = b.add_tensor("r", (1, 6), scale=0.1, zero_point=1)
    b.add_operator("RESHAPE", [x, shape], [r], {"new_shape": [1, 6]})
    k = b.add_constant("k", kdata, scale=0.05, zero_point=-3)
    y = b.add_tensor("y", (1, 6), scale=0.2, zero_point=4)
    b.add_operator("ADD", [r, k], [y])
    b.mark_output(y)
    # A per-channel weight tensor (unused by the ops) must still serialise and load.
    b.add_constant("w", wdata, scale=[0.1, 0.2, 0.3], zero_point=0, quantized_dimension=0)
    model = b.build()

    sg = Model.GetRootAs(model, 0).Subgraphs(0)
    tensors = {sg.Tensors(i).Name().decode(): sg.Tensors(i) for i in range(sg.TensorsLength())}
    buffers = Model.GetRootAs(model, 0)

    def data(name: str) -> bytes:
        return buffers.Buffers(tensors[name].Buffer()).DataAsNumpy().tobytes()

    assert np.array_equal(np.frombuffer(data("k"), np.int8), kdata.ravel())
    assert np.array_equal(np.frombuffer(data("shape"), "<i4"), [1, 6])
    assert np.array_equal(np.frombuffer(data("w"), np.int8), wdata.ravel())
    wq = tensors["w"].Quantization()
    assert np.array_equal(wq.ScaleAsNumpy(), np.float32([0.1, 0.2, 0.3])) and wq.QuantizedDimension() == 0

    attrs = add_attrs(0.1, 1, 0.05, -3, 0.2, 4)
    interp = tflm_interpreter(model)
    for _ in range(5):
        xin = i8(rng, (1, 2, 3))
        (got,) = run_tflm(model, [xin], interpreter=interp)
        assert np.array_equal(got, add_s8(xin.reshape(1, 6), kdata, attrs))


def test_builder_rejects_bad_descriptions():
    b = ModelBuilder()
    with pytest.raises(TfliteBuildError):
        b.add_tensor("t", (2, 3), scale=[0.1, 0.2, 0.3], quantized_dimension=0)
    with pytest.raises(TfliteBuildError):
        b.add_tensor("t", (2, 3), data=np.zeros((3, 2), np.int8))
    with pytest.raises(TfliteBuildError):
        b.add_operator("NOT_AN_OP", [], [])
    x = b.add_input("x", (1, 4), scale=0.1, zero_point=0)
    with pytest.raises(TfliteBuildError):
        b.add_operator("SOFTMAX", [x], [7])
    with pytest.raises(TfliteBuildError):
        b.build()  # no output yet
    b.add_operator("SOFTMAX", [x], [x], {"no_such_field": 1})
    b.mark_output(x)
    with pytest.raises(TfliteBuildError):
        b.build()
