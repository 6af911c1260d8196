"""int8 HARD_SWISH: host-compiled C == numpy twin over every input value for randomized
quantizations; numpy twin == TFLite Micro on single-op models; a conv -> HARD_SWISH -> fully
connected model bit-exact on QEMU (Cortex-M4 and M55)."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest

import prereq
from hostlib import HardSwishParams, ptr
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.hard_swish import HardSwishAttrs, hard_swish_attrs, hard_swish_s8

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)
FIELDS = [f for f, _ in HardSwishParams._fields_]


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.float32(10 ** rng.uniform(np.log10(lo), np.log10(hi))))


def random_quant(rng: np.random.Generator) -> tuple[tuple[float, int, float, int], HardSwishAttrs]:
    while True:  # TFLM refuses in_scale / 128 / out_scale >= 1 (output exponent > 0): so do we
        args = (log_uniform(rng, 1e-3, 1.0), int(rng.integers(-128, 128)), log_uniform(rng, 1e-3, 1.0),
                int(rng.integers(-128, 128)))
        try:
            return args, hard_swish_attrs(*args)
        except tfl.Reject:
            continue


def c_hard_swish(lib, x: np.ndarray, a: HardSwishAttrs) -> tuple[int, np.ndarray]:
    y = np.zeros_like(x)
    p = HardSwishParams(*(getattr(a, f) for f in FIELDS))
    return lib.mcuqp_hard_swish_s8(C.byref(p), C.c_int32(x.size), ptr(x), ptr(y)), y


def test_hard_swish_c_matches_numpy(runtime) -> None:
    rng = np.random.default_rng(41)
    exponents = set()
    for _ in range(300):
        _, attrs = random_quant(rng)
        exponents.add(int(np.sign(attrs.reluish_exponent)))
        x = np.concatenate([ALL_INT8, rng.integers(-128, 128, int(rng.integers(1, 200))).astype(np.int8)])
        rc, y = c_hard_swish(runtime, x, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, hard_swish_s8(x, attrs))
    assert exponents == {-1, 0, 1}  # every branch of the reluish rescale was taken


def test_hard_swish_is_close_to_the_real_function() -> None:
    s_in, z_in, s_out, z_out = 0.05, 10, 0.03, -60
    y = hard_swish_s8(ALL_INT8, hard_swish_attrs(s_in, z_in, s_out, z_out)).astype(int)
    r = s_in * (ALL_INT8.astype(int) - z_in)
    real = r * np.clip(r + 3, 0, 6) / 6
    assert np.abs(y - np.clip(np.round(real / s_out) + z_out, -128, 127)).max() <= 1


def test_hard_swish_refuses_what_tflm_refuses() -> None:
    with pytest.raises(tfl.Reject, match="out of range"):
        hard_swish_attrs(0.5, 0, 0.001, 0)  # in_scale / 128 / out_scale > 1


def test_hard_swish_rejects_bad_arguments(runtime) -> None:
    for bad in (HardSwishAttrs(output_exponent=1), HardSwishAttrs(reluish_exponent=16),
                HardSwishAttrs(output_multiplier=1 << 15), HardSwishAttrs(input_zero_point=200)):
        rc, _ = c_hard_swish(runtime, ALL_INT8, bad)
        assert rc == -1


# ---- TFLite Micro oracle -------------------------------------------------------------


def test_hard_swish_matches_tflm() -> None:
    prereq.require_module("tflite_micro")
    from tflite_builder import ModelBuilder, run_tflm, tflm_interpreter

    rng = np.random.default_rng(42)
    for case in range(50):
        (s_in, z_in, s_out, z_out), attrs = random_quant(rng)
        shape = tuple(int(v) for v in rng.integers(1, 7, int(rng.integers(1, 5))))
        b = ModelBuilder()
        x = b.add_input("x", shape, scale=s_in, zero_point=z_in)
        y = b.add_tensor("y", shape, scale=s_out, zero_point=z_out)
        b.add_operator("HARD_SWISH", [x], [y])
        b.mark_output(y)
        model = b.build()
        interp = tflm_interpreter(model)
        for _ in range(3):
            xs = np.resize(np.concatenate([ALL_INT8, rng.integers(-128, 128, 256).astype(np.int8)]), shape)
            got = run_tflm(model, [xs], interpreter=interp)[0]
            assert np.array_equal(got, hard_swish_s8(xs, attrs)), (case, s_in, z_in, s_out, z_out)


def _conv_hard_swish_fc(path: Path) -> Path:
    from tflite_builder import ModelBuilder

    rng = np.random.default_rng(43)
    b = ModelBuilder()
    x = b.add_input("x", (1, 6, 6, 3), scale=0.05, zero_point=-3)
    wscale = rng.uniform(0.005, 0.02, 4).astype(np.float32)
    w = b.add_constant("w", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=wscale,
                       quantized_dimension=0)
    bias = b.add_constant("b", rng.integers(-2000, 2000, 4).astype(np.int32),
                          scale=np.float32(0.05) * wscale, quantized_dimension=0)
    h = b.add_tensor("h", (1, 6, 6, 4), scale=0.06, zero_point=5)
    b.add_operator("CONV_2D", [x, w, bias], [h], {"padding": "SAME", "stride_w": 1, "stride_h": 1,
                                                  "fused_activation_function": "NONE"})
    a = b.add_tensor("a", (1, 6, 6, 4), scale=0.04, zero_point=-90)
    b.add_operator("HARD_SWISH", [h], [a])
    f = b.add_tensor("f", (1, 144), scale=0.04, zero_point=-90)
    b.add_operator("RESHAPE", [a], [f], {"new_shape": [1, 144]})
    fw = b.add_constant("fw", rng.integers(-127, 128, (5, 144)).astype(np.int8), scale=np.float32(0.004))
    fb = b.add_constant("fb", rng.integers(-500, 500, 5).astype(np.int32), scale=np.float32(0.04 * 0.004))
    y = b.add_tensor("y", (1, 5), scale=0.25, zero_point=2)
    b.add_operator("FULLY_CONNECTED", [f, fw, fb], [y])
    b.mark_output(y)
    path.write_bytes(b.build())
    return path


def test_conv_hard_swish_fc_reference_matches_tflm(tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp import api
    from mcuqp.ir import OpKind
    from mcuqp.oracle import tflm_run
    from mcuqp.reference.interpreter import run as reference_run

    model = _conv_hard_swish_fc(tmp_path / "m.tflite")
    loaded = api.load(model, n_random=16, seed=3)
    assert OpKind.HARD_SWISH in [op.kind for op in loaded.graph.ops]
    assert api.oracle_first_mismatch(loaded, 16) is None
    xs = loaded.verify_inputs[:16]
    ref = np.stack([reference_run(loaded.graph, x[None])[0] for x in xs])
    assert np.array_equal(ref.reshape(16, -1), tflm_run(model, xs).reshape(16, -1))


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_conv_hard_swish_fc_bit_exact_on_qemu(board: str, tmp_path: Path) -> None:
    from mcuqp import api

    loaded = api.load(_conv_hard_swish_fc(tmp_path / "m.tflite"), n_random=12, seed=5)
    res = api.verify(loaded, board=board, n_inputs=12)
    assert res.compared == 12
    assert res.mismatches == 0, f"{res.mismatched_elements} elements differ"
    assert np.array_equal(res.device_outputs, res.reference_outputs)


# ---- from torch ----------------------------------------------------------------------


def _torch_hardswish_net():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.act = nn.Hardswish()
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.act(self.conv(x)), 1))

    torch.manual_seed(0)
    return Net().eval()


def test_torch_hardswish_imports_and_quantizes(tmp_path: Path) -> None:
    import torch

    from mcuqp.frontends.torch_fx import import_torch
    from mcuqp.ir import OpKind
    from mcuqp.quant.ptq import quantize

    model = _torch_hardswish_net()
    x = (torch.randn(128, 1, 6, 6) * 2).numpy()
    fg = import_torch(model, torch.from_numpy(x[:1]))
    assert OpKind.HARD_SWISH in [op.kind for op in fg.ops]
    np.testing.assert_allclose(fg.run(x), model(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    g = quantize(fg, x)
    op = next(o for o in g.ops if o.kind == OpKind.HARD_SWISH)
    xq, yq = g.tensors[op.inputs[0]].quant, g.tensors[op.outputs[0]].quant
    assert op.attrs == hard_swish_attrs(xq.s, xq.zp, yq.s, yq.zp)


@pytest.mark.qemu
def test_torch_hardswish_bit_exact_on_qemu(tmp_path: Path) -> None:
    import torch

    from mcuqp import api

    calib = tmp_path / "calib.npy"
    np.save(calib, (torch.randn(64, 1, 6, 6) * 2).numpy())
    loaded = api.load(_torch_hardswish_net(), calib=str(calib))
    res = api.verify(loaded, board="mps2-an386", n_inputs=12)
    assert res.compared == 12 and res.mismatches == 0
    assert np.array_equal(res.device_outputs, res.reference_outputs)
