"""int8 TANH: host-compiled C == numpy twin over every input value for randomized input
quantizations (both rounding modes); numpy twin == TFLite Micro on single-op models; and the
torch front end for the new ops (nn.Tanh / torch.tanh, `-`, broadcasting `+` and `*`,
nn.PReLU, torch.maximum / minimum): imported, quantized and bit-exact on QEMU (Cortex-M4 and M55)."""
from __future__ import annotations

import ctypes as C
import math
from pathlib import Path

import numpy as np
import pytest

import prereq
from hostlib import ptr
from mcuqp.ops.logistic import LogisticAttrs, logistic_attrs
from mcuqp.ops.tanh import tanh_s8
from test_kernels_logistic import LogisticParams

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def c_tanh(lib, x: np.ndarray, a: LogisticAttrs) -> tuple[int, np.ndarray]:
    y = np.full_like(x, 99)
    p = LogisticParams(a.input_zero_point, a.input_multiplier, a.input_left_shift, a.input_range_radius)
    return lib.mcuqp_tanh_s8(C.byref(p), C.c_int32(x.size), ptr(x), ptr(y)), y


def random_attrs(rng: np.random.Generator) -> tuple[float, int, LogisticAttrs]:
    scale, zp = float(np.float32(10.0 ** rng.uniform(-3.5, 0.7))), int(rng.integers(-128, 128))
    return scale, zp, logistic_attrs(scale, zp)


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_tanh_c_matches_numpy(runtime, runtime_single_rounding, rounding) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding
    rng = np.random.default_rng(31)
    for _ in range(150):
        _, _, attrs = random_attrs(rng)
        rc, y = c_tanh(lib, ALL_INT8, attrs)
        assert rc == 0
        np.testing.assert_array_equal(y, tanh_s8(ALL_INT8, attrs, rounding))


def test_tanh_is_close_to_the_real_function() -> None:
    scale, zp = 0.03, -7
    y = tanh_s8(ALL_INT8, logistic_attrs(scale, zp)).astype(int)
    real = np.tanh(np.float64(scale) * (ALL_INT8.astype(int) - zp))
    assert np.abs(y / 128.0 - np.clip(real, -1, 127 / 128)).max() <= 1.0 / 128
    assert np.all(np.diff(y) >= 0)  # monotone
    assert y[ALL_INT8 == zp][0] == 0  # tanh(0) = 0
    assert math.isclose(logistic_attrs(scale, zp).input_range_radius, math.floor(15 * 2**27 / 2 ** math.frexp(
        float(np.float32(scale)) * 2**27)[1]))


def test_tanh_rejects_bad_arguments(runtime) -> None:
    rc, _ = c_tanh(runtime, ALL_INT8, LogisticAttrs(input_range_radius=-1))
    assert rc == -1
    rc, _ = c_tanh(runtime, ALL_INT8, LogisticAttrs(input_multiplier=1 << 30, input_left_shift=31,
                                                    input_range_radius=10))
    assert rc == -1


def test_tanh_matches_tflm() -> None:
    prereq.require_module("tflite_micro")
    from tflite_builder import ModelBuilder, run_tflm, tflm_interpreter

    rng = np.random.default_rng(32)
    for case in range(40):
        scale, zp, attrs = random_attrs(rng)
        shape = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(1, 6))))
        b = ModelBuilder()
        x = b.add_input("x", shape, scale=scale, zero_point=zp)
        y = b.add_tensor("y", shape, scale=1.0 / 128, zero_point=0)
        b.add_operator("TANH", [x], [y])
        b.mark_output(y)
        model = b.build()
        interp = tflm_interpreter(model)
        for _ in range(2):
            xs = np.resize(np.concatenate([ALL_INT8, rng.integers(-128, 128, 256).astype(np.int8)]), shape)
            got = run_tflm(model, [xs], interpreter=interp)[0]
            assert np.array_equal(got, tanh_s8(xs, attrs)), (case, scale, zp)


def test_tanh_lowerer_refuses_other_output_quantization(tmp_path: Path) -> None:
    from tflite_builder import ModelBuilder

    from mcuqp import api
    from mcuqp.errors import UnsupportedModelError

    b = ModelBuilder()
    x = b.add_input("x", (1, 8), scale=0.05, zero_point=0)
    y = b.add_tensor("y", (1, 8), scale=1.0 / 256, zero_point=0)
    b.add_operator("TANH", [x], [y])
    b.mark_output(y)
    (tmp_path / "m.tflite").write_bytes(b.build())
    with pytest.raises(UnsupportedModelError, match=r"TANH.*1/128"):
        api.load(tmp_path / "m.tflite")


# ---- from torch ----------------------------------------------------------------------


def _torch_net():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(2, 4, 1)
            self.prelu = nn.PReLU(4, init=0.2)
            self.tanh = nn.Tanh()
            self.fc = nn.Linear(4 * 5 * 5, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.prelu(self.conv(x))
            a = torch.maximum(a, F.max_pool2d(a, 3, stride=1, padding=1))  # pools share a's quantization
            b = self.conv2(x)
            b = torch.minimum(b, F.avg_pool2d(b, 5))  # broadcast (N, 4, 1, 1)
            g = torch.mean(b, dim=(2, 3), keepdim=True)  # (N, 4, 1, 1)
            h = a * g - b  # broadcasting mul, then sub
            h = self.tanh(h + g)  # broadcasting add
            return self.fc(torch.flatten(torch.tanh(h - a), 1))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.prelu.weight.copy_(torch.linspace(-0.5, 0.8, 4))
    return net


def test_torch_new_ops_import_and_quantize() -> None:
    import torch

    from mcuqp.frontends.torch_fx import import_torch
    from mcuqp.ir import OpKind
    from mcuqp.quant.ptq import quantize

    model = _torch_net()
    x = torch.randn(64, 2, 5, 5).numpy()
    fg = import_torch(model, torch.from_numpy(x[:1]))
    kinds = [op.kind for op in fg.ops]
    for k in (OpKind.PRELU, OpKind.MUL, OpKind.SUB, OpKind.ADD, OpKind.TANH, OpKind.MAXIMUM, OpKind.MINIMUM):
        assert k in kinds, k
    np.testing.assert_allclose(fg.run(x), model(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    g = quantize(fg, x)
    prelu = next(o for o in g.ops if o.kind == OpKind.PRELU)
    alpha = g.tensors[prelu.inputs[1]]
    assert alpha.is_const and alpha.quant.scale.size == 1 and alpha.data.shape == (4,)
    tanh = next(o for o in g.ops if o.kind == OpKind.TANH)
    assert g.tensors[tanh.outputs[0]].quant.zp == 0 and g.tensors[tanh.outputs[0]].quant.s == 1.0 / 128


def test_torch_maximum_of_differently_quantized_tensors_is_refused() -> None:
    import torch
    from torch import nn

    from mcuqp.errors import UnsupportedModelError
    from mcuqp.frontends.torch_fx import import_torch
    from mcuqp.quant.ptq import quantize

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.maximum(self.a(x), self.b(x))

    torch.manual_seed(1)
    x = torch.randn(16, 1, 3, 3).numpy()
    fg = import_torch(Net().eval(), torch.from_numpy(x[:1]))
    with pytest.raises(UnsupportedModelError, match="maximum of tensors with different quantization"):
        quantize(fg, x)


def test_torch_broadcast_of_different_ranks_is_refused() -> None:
    import torch
    from torch import nn

    from mcuqp.errors import UnsupportedModelError
    from mcuqp.frontends.torch_fx import import_torch

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x - torch.flatten(self.pool(x), 1)  # (1, 3, 3, 3) - (1, 3): torch aligns C with W

    with pytest.raises(UnsupportedModelError, match="ranks 4 and 2"):
        import_torch(Net(), torch.zeros(1, 3, 3, 3))


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_torch_new_ops_bit_exact_on_qemu(board: str, tmp_path: Path) -> None:
    import torch

    from mcuqp import api

    calib = tmp_path / "calib.npy"
    np.save(calib, torch.randn(64, 2, 5, 5).numpy())
    loaded = api.load(_torch_net(), calib=str(calib))
    res = api.verify(loaded, board=board, n_inputs=10)
    assert res.compared == 10 and res.mismatches == 0
    assert np.array_equal(res.device_outputs, res.reference_outputs)
