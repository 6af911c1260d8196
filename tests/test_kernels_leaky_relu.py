"""int8 LEAKY_RELU: host-compiled C == numpy twin over every input value for randomized
quantizations and alphas; numpy twin == TFLite Micro on single-op models; a conv -> LEAKY_RELU
-> fully connected model bit-exact on QEMU (Cortex-M4 and M55)."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest

import prereq
from hostlib import LeakyReluParams, ptr
from mcuqp.ops.leaky_relu import LeakyReluAttrs, leaky_relu_attrs, leaky_relu_s8

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)
FIELDS = [f for f, _ in LeakyReluParams._fields_]


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.float32(10 ** rng.uniform(np.log10(lo), np.log10(hi))))


def random_attrs(rng: np.random.Generator) -> tuple[tuple[float, int, float, int, float], LeakyReluAttrs]:
    args = (log_uniform(rng, 1e-3, 1.0), int(rng.integers(-128, 128)), log_uniform(rng, 1e-3, 1.0),
            int(rng.integers(-128, 128)), float(np.float32(rng.choice([0.0, 0.01, 0.1, 0.2, 0.3, 1.0,
                                                                       rng.uniform(0.0, 3.0)]))))
    return args, leaky_relu_attrs(*args)


def c_leaky_relu(lib, x: np.ndarray, a: LeakyReluAttrs) -> tuple[int, np.ndarray]:
    y = np.zeros_like(x)
    p = LeakyReluParams(*(getattr(a, f) for f in FIELDS))
    return lib.mcuqp_leaky_relu_s8(C.byref(p), C.c_int32(x.size), ptr(x), ptr(y)), y


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_leaky_relu_c_matches_numpy(runtime, runtime_single_rounding, rounding) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(21)
    for _ in range(200):
        _, attrs = random_attrs(rng)
        shape = tuple(int(v) for v in rng.integers(1, 6, int(rng.integers(1, 5))))
        x = np.concatenate([ALL_INT8, rng.integers(-128, 128, int(np.prod(shape))).astype(np.int8)])
        rc, y = c_leaky_relu(lib, x, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, leaky_relu_s8(x, attrs, rounding))


def test_leaky_relu_is_close_to_the_real_function() -> None:
    s_in, z_in, s_out, z_out, alpha = 0.05, 3, 0.04, -20, 0.2
    y = leaky_relu_s8(ALL_INT8, leaky_relu_attrs(s_in, z_in, s_out, z_out, alpha)).astype(int)
    real = s_in * (ALL_INT8.astype(int) - z_in)
    real = np.where(real >= 0, real, alpha * real)
    expect = np.clip(np.round(real / s_out) + z_out, -128, 127)
    assert np.abs(y - expect).max() <= 1
    assert np.all(np.diff(y) >= 0)


def test_leaky_relu_rejects_bad_arguments(runtime) -> None:
    rc, _ = c_leaky_relu(runtime, ALL_INT8, LeakyReluAttrs(identity_multiplier=1 << 30, identity_shift=31))
    assert rc == -1
    rc, _ = c_leaky_relu(runtime, ALL_INT8, LeakyReluAttrs(alpha_multiplier=-1))
    assert rc == -1


# ---- TFLite Micro oracle -------------------------------------------------------------


def test_leaky_relu_matches_tflm() -> None:
    prereq.require_module("tflite_micro")
    from tflite_builder import ModelBuilder, run_tflm, tflm_interpreter

    rng = np.random.default_rng(22)
    for case in range(40):
        (s_in, z_in, s_out, z_out, alpha), attrs = random_attrs(rng)
        shape = tuple(int(v) for v in rng.integers(1, 7, int(rng.integers(1, 5))))
        b = ModelBuilder()
        x = b.add_input("x", shape, scale=s_in, zero_point=z_in)
        y = b.add_tensor("y", shape, scale=s_out, zero_point=z_out)
        b.add_operator("LEAKY_RELU", [x], [y], {"alpha": alpha}, options_type="LeakyReluOptions")
        b.mark_output(y)
        model = b.build()
        interp = tflm_interpreter(model)
        for _ in range(3):
            xs = np.resize(np.concatenate([ALL_INT8, rng.integers(-128, 128, 256).astype(np.int8)]),
                           shape)
            got = run_tflm(model, [xs], interpreter=interp)[0]
            assert np.array_equal(got, leaky_relu_s8(xs, attrs)), (case, s_in, z_in, s_out, z_out, alpha)


def _conv_leaky_fc(path: Path) -> Path:
    from tflite_builder import ModelBuilder

    rng = np.random.default_rng(23)
    b = ModelBuilder()
    x = b.add_input("x", (1, 6, 6, 3), scale=0.05, zero_point=-3)
    wscale = rng.uniform(0.005, 0.02, 4).astype(np.float32)
    w = b.add_constant("w", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=wscale,
                       quantized_dimension=0)
    bias = b.add_constant("b", rng.integers(-2000, 2000, 4).astype(np.int32),
                          scale=np.float32(0.05) * wscale, quantized_dimension=0)
    h = b.add_tensor("h", (1, 6, 6, 4), scale=0.08, zero_point=5)
    b.add_operator("CONV_2D", [x, w, bias], [h], {"padding": "SAME", "stride_w": 1, "stride_h": 1,
                                                  "fused_activation_function": "NONE"})
    a = b.add_tensor("a", (1, 6, 6, 4), scale=0.06, zero_point=-30)
    b.add_operator("LEAKY_RELU", [h], [a], {"alpha": 0.15}, options_type="LeakyReluOptions")
    f = b.add_tensor("f", (1, 144), scale=0.06, zero_point=-30)
    b.add_operator("RESHAPE", [a], [f], {"new_shape": [1, 144]})
    fw = b.add_constant("fw", rng.integers(-127, 128, (5, 144)).astype(np.int8), scale=np.float32(0.004))
    fb = b.add_constant("fb", rng.integers(-500, 500, 5).astype(np.int32), scale=np.float32(0.06 * 0.004))
    y = b.add_tensor("y", (1, 5), scale=0.25, zero_point=2)
    b.add_operator("FULLY_CONNECTED", [f, fw, fb], [y])
    b.mark_output(y)
    path.write_bytes(b.build())
    return path


def test_conv_leaky_fc_reference_matches_tflm(tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp import api
    from mcuqp.ir import OpKind
    from mcuqp.oracle import tflm_run

    model = _conv_leaky_fc(tmp_path / "m.tflite")
    loaded = api.load(model, n_random=16, seed=3)
    assert OpKind.LEAKY_RELU in [op.kind for op in loaded.graph.ops]
    assert api.oracle_first_mismatch(loaded, 16) is None
    from mcuqp.reference.interpreter import run as reference_run

    xs = loaded.verify_inputs[:16]
    assert xs.min() == -128 and xs.max() == 127
    ref = np.stack([reference_run(loaded.graph, x[None])[0] for x in xs])
    assert np.array_equal(ref.reshape(16, -1), tflm_run(model, xs).reshape(16, -1))


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_conv_leaky_fc_bit_exact_on_qemu(board: str, tmp_path: Path) -> None:
    from mcuqp import api

    loaded = api.load(_conv_leaky_fc(tmp_path / "m.tflite"), n_random=12, seed=5)
    res = api.verify(loaded, board=board, n_inputs=12)
    assert res.compared == 12
    assert res.mismatches == 0, f"{res.mismatched_elements} elements differ"
    assert np.array_equal(res.device_outputs, res.reference_outputs)


# ---- from torch ----------------------------------------------------------------------


def _torch_leaky_net(slope: float = 0.1):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.act = nn.LeakyReLU(slope)
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.act(self.conv(x)), 1))

    torch.manual_seed(0)
    return Net().eval()


def test_torch_leaky_relu_imports_and_quantizes() -> None:
    import torch

    from mcuqp.frontends.torch_fx import import_torch
    from mcuqp.ir import OpKind
    from mcuqp.quant.ptq import quantize

    model = _torch_leaky_net(0.2)
    x = torch.randn(128, 1, 6, 6).numpy()
    fg = import_torch(model, torch.from_numpy(x[:1]))
    [leaky] = [op for op in fg.ops if op.kind == OpKind.LEAKY_RELU]
    assert leaky.alpha == pytest.approx(0.2)
    np.testing.assert_allclose(fg.run(x), model(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    g = quantize(fg, x)
    op = next(o for o in g.ops if o.kind == OpKind.LEAKY_RELU)
    xq, yq = g.tensors[op.inputs[0]].quant, g.tensors[op.outputs[0]].quant
    assert op.attrs == leaky_relu_attrs(xq.s, xq.zp, yq.s, yq.zp, 0.2)


def test_torch_negative_slope_is_refused() -> None:
    import torch

    from mcuqp.errors import UnsupportedModelError
    from mcuqp.frontends.torch_fx import import_torch

    with pytest.raises(UnsupportedModelError, match="negative_slope"):
        import_torch(_torch_leaky_net(-0.5), torch.zeros(1, 1, 6, 6))


@pytest.mark.qemu
def test_torch_leaky_relu_bit_exact_on_qemu(tmp_path: Path) -> None:
    import torch

    from mcuqp import api

    calib = tmp_path / "calib.npy"
    np.save(calib, torch.randn(64, 1, 6, 6).numpy())
    loaded = api.load(_torch_leaky_net(0.1), calib=str(calib))
    res = api.verify(loaded, board="mps2-an386", n_inputs=12)
    assert res.compared == 12 and res.mismatches == 0
    assert np.array_equal(res.device_outputs, res.reference_outputs)
