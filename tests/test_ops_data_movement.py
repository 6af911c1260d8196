"""Multi-op models with the data-movement ops and tensors of rank 1 to 5, as converters write
them: a rank-1 RESHAPE between dense layers, a Conv1D (EXPAND_DIMS -> CONV_2D -> RESHAPE)
with a rank-3 residual ADD and a rank-3 MEAN, a rank-5 TRANSPOSE and ADD, and a chain of
RESIZE_NEAREST_NEIGHBOR, STRIDED_SLICE, TRANSPOSE, SPLIT, SPLIT_V, CONCATENATION,
EXPAND_DIMS and MEAN. The numpy reference equals TFLite Micro on each (layer by layer
where TFLM keeps the tensors), and the generated C equals the reference on QEMU (Cortex-M4
and M55)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import prereq
from tflite_builder import ModelBuilder

def fc(b, rng, x, cin, cout, name, in_scale, out_shape, out_scale=0.1, out_zp=0):
    w = b.add_constant(name + "_w", rng.integers(-127, 128, (cout, cin)).astype(np.int8), scale=np.float32(0.01))
    bb = b.add_constant(name + "_b", rng.integers(-500, 500, cout).astype(np.int32), scale=np.float32(in_scale * 0.01))
    y = b.add_tensor(name, out_shape, scale=out_scale, zero_point=out_zp)
    b.add_operator("FULLY_CONNECTED", [x, w, bb], [y])
    return y

def dense_rank1(seed=0):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.add_input("x", (1, 12), scale=0.05, zero_point=1)
    h = fc(b, rng, x, 12, 8, "h", 0.05, (1, 8))
    v = b.add_tensor("v", (8,), scale=0.1, zero_point=0)
    b.add_operator("RESHAPE", [h], [v], {"new_shape": [8]})
    y = fc(b, rng, v, 8, 4, "y", 0.1, (1, 4), 0.2, 3)
    b.mark_output(y)
    return b.build()

def conv1d_mean(seed=0, L=10, cin=3, cout=4):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.add_input("x", (1, L, cin), scale=0.05, zero_point=-3)
    ax = b.add_constant("ax", np.array([1], np.int32))
    e = b.add_tensor("e", (1, 1, L, cin), scale=0.05, zero_point=-3)
    b.add_operator("EXPAND_DIMS", [x, ax], [e])
    ws = rng.uniform(0.005, 0.02, cout).astype(np.float32)
    w = b.add_constant("w", rng.integers(-127, 128, (cout, 1, 3, cin)).astype(np.int8), scale=ws, quantized_dimension=0)
    bias = b.add_constant("b", rng.integers(-2000, 2000, cout).astype(np.int32), scale=np.float32(0.05) * ws, quantized_dimension=0)
    c = b.add_tensor("c", (1, 1, L, cout), scale=0.06, zero_point=5)
    b.add_operator("CONV_2D", [e, w, bias], [c], {"padding": "SAME", "stride_w": 1, "stride_h": 1, "fused_activation_function": "RELU"})
    s = b.add_tensor("s", (1, L, cout), scale=0.06, zero_point=5)
    b.add_operator("RESHAPE", [c], [s], {"new_shape": [1, L, cout]})
    r = b.add_tensor("r", (1, L, cout), scale=0.08, zero_point=-2)
    b.add_operator("ADD", [s, s], [r], {"fused_activation_function": "NONE"})
    m = b.add_tensor("m", (1, cout), scale=0.05, zero_point=-10)
    mx = b.add_constant("max", np.array([1], np.int32))
    b.add_operator("MEAN", [r, mx], [m], {"keep_dims": False})
    y = fc(b, rng, m, cout, 3, "y", 0.05, (1, 3), 0.2, 3)
    b.mark_output(y)
    return b.build()

def rank5(seed=0):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.add_input("x", (1, 2, 3, 2, 4), scale=0.05, zero_point=2)
    p = b.add_constant("perm", np.array([0, 2, 1, 4, 3], np.int32))
    t = b.add_tensor("t", (1, 3, 2, 4, 2), scale=0.05, zero_point=2)
    b.add_operator("TRANSPOSE", [x, p], [t])
    r = b.add_tensor("r", (1, 3, 2, 4, 2), scale=0.09, zero_point=-1)
    b.add_operator("ADD", [t, t], [r], {"fused_activation_function": "NONE"})
    f = b.add_tensor("f", (1, 48), scale=0.09, zero_point=-1)
    b.add_operator("RESHAPE", [r], [f], {"new_shape": [1, 48]})
    y = fc(b, rng, f, 48, 5, "y", 0.09, (1, 5), 0.3, 1)
    b.mark_output(y)
    return b.build()


def data_movement(seed=0):
    """RESIZE_NEAREST_NEIGHBOR -> STRIDED_SLICE (negative strides, shrink) -> TRANSPOSE ->
    SPLIT -> SPLIT_V -> CONCATENATION -> EXPAND_DIMS -> MEAN -> FULLY_CONNECTED."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    q = dict(scale=0.04, zero_point=-5)
    x = b.add_input("x", (1, 5, 4, 6), **q)
    size = b.add_constant("size", np.array([9, 7], np.int32))
    r = b.add_tensor("r", (1, 9, 7, 6), **q)
    b.add_operator("RESIZE_NEAREST_NEIGHBOR", [x, size], [r], {"align_corners": False, "half_pixel_centers": True},
                   options_type="ResizeNearestNeighborOptions")
    # [:, 7:0:-2, ::-1, 1:5] -> (1, 4, 7, 4)
    bb = b.add_constant("b", np.array([0, 7, 0, 1], np.int32))
    e = b.add_constant("e", np.array([1, 0, 0, 5], np.int32))
    st = b.add_constant("st", np.array([1, -2, -1, 1], np.int32))
    s = b.add_tensor("s", (1, 4, 7, 4), **q)
    b.add_operator("STRIDED_SLICE", [r, bb, e, st], [s], {"begin_mask": 0b0101, "end_mask": 0b0100})
    perm = b.add_constant("perm", np.array([0, 3, 1, 2], np.int32))
    t = b.add_tensor("t", (1, 4, 4, 7), **q)
    b.add_operator("TRANSPOSE", [s, perm], [t])
    ax = b.add_constant("ax", np.array([1], np.int32))
    parts = [b.add_tensor(f"p{k}", (1, 2, 4, 7), **q) for k in range(2)]
    b.add_operator("SPLIT", [ax, t], parts, {"num_splits": 2}, options_type="SplitOptions")
    ax3 = b.add_constant("ax3", np.array([3], np.int32))
    sv = b.add_constant("sv", np.array([2, -1, 1], np.int32))
    vparts = [b.add_tensor(f"v{k}", (1, 2, 4, n), **q) for k, n in enumerate([2, 4, 1])]
    b.add_operator("SPLIT_V", [parts[1], sv, ax3], vparts, {"num_splits": 3}, options_type="SplitVOptions")
    c = b.add_tensor("c", (1, 2, 4, 10), **q)
    b.add_operator("CONCATENATION", [vparts[2], parts[0], vparts[0]], [c], {"axis": 3})
    sq = b.add_tensor("sq", (1, 8, 10), **q)
    b.add_operator("RESHAPE", [c], [sq], {"new_shape": [1, 8, 10]})
    ax2 = b.add_constant("ax2", np.array([2], np.int32))
    ed = b.add_tensor("ed", (1, 8, 1, 10), **q)
    b.add_operator("EXPAND_DIMS", [sq, ax2], [ed])
    m = b.add_tensor("m", (1, 1, 1, 10), scale=0.03, zero_point=4)
    max_ = b.add_constant("max", np.array([1, 2], np.int32))
    b.add_operator("MEAN", [ed, max_], [m], {"keep_dims": True})
    f = b.add_tensor("f", (10,), scale=0.03, zero_point=4)
    b.add_operator("RESHAPE", [m], [f], {"new_shape": [10]})
    y = fc(b, rng, f, 10, 4, "y", 0.03, (1, 4), 0.1, 0)
    b.mark_output(y)
    return b.build()


def vector_slice(seed=0):
    """Dense -> RESHAPE to a rank-1 (8,) (shape given as a tensor) -> backward STRIDED_SLICE of
    the vector -> SPLIT_V of the vector -> dense on a rank-1 part."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.add_input("x", (1, 12), scale=0.05, zero_point=1)
    h = fc(b, rng, x, 12, 8, "h", 0.05, (1, 8))
    v = b.add_tensor("v", (8,), scale=0.1, zero_point=0)
    b.add_operator("RESHAPE", [h, b.add_constant("shape", np.array([8], np.int32))], [v])
    s = b.add_tensor("s", (4,), scale=0.1, zero_point=0)
    consts = [b.add_constant(n, np.array([c], np.int32)) for n, c in (("b", 7), ("e", 0), ("st", -2))]
    b.add_operator("STRIDED_SLICE", [v, *consts], [s])
    parts = [b.add_tensor(f"p{k}", (n,), scale=0.1, zero_point=0) for k, n in enumerate([1, 3])]
    b.add_operator("SPLIT_V", [s, b.add_constant("sv", np.array([1, 3], np.int32)),
                               b.add_constant("ax", np.array([0], np.int32))], parts, {"num_splits": 2},
                   options_type="SplitVOptions")
    y = fc(b, rng, parts[1], 3, 4, "y", 0.1, (1, 4), 0.2, 3)
    b.mark_output(y)
    return b.build()


MODELS = {"vector_slice": vector_slice, "dense_rank1": dense_rank1, "conv1d_mean": conv1d_mean, "rank5": rank5, "data_movement": data_movement}


def _write(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(MODELS[name]())
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_matches_tflm(name: str, tmp_path: Path) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp import api
    from mcuqp.oracle import tflm_run
    from mcuqp.reference.interpreter import run as reference_run

    path = _write(name, tmp_path)
    loaded = api.load(path, n_random=16, seed=3)
    assert api.oracle_first_mismatch(loaded, 16) is None
    xs = loaded.verify_inputs[:16]
    ref = reference_run(loaded.graph, xs)
    np.testing.assert_array_equal(ref.reshape(16, -1), tflm_run(path, xs).reshape(16, -1))


def test_imported_graphs() -> None:
    from mcuqp.frontends.tflite import parse_tflite, _lower  # noqa: PLC2701 - the import without a file
    from mcuqp.ir import OpKind

    kinds = {n: [op.kind for op in _lower(parse_tflite(MODELS[n]()), n, n).graph.ops] for n in MODELS}
    assert kinds["dense_rank1"] == [OpKind.FULLY_CONNECTED, OpKind.RESHAPE, OpKind.FULLY_CONNECTED]
    assert OpKind.MEAN in kinds["conv1d_mean"] and OpKind.ADD in kinds["conv1d_mean"]
    assert kinds["rank5"][0] == OpKind.TRANSPOSE
    dm = kinds["data_movement"]
    assert dm.count(OpKind.STRIDED_SLICE) == 6  # one slice, two SPLIT parts, three SPLIT_V parts
    assert {OpKind.RESIZE_NEAREST_NEIGHBOR, OpKind.TRANSPOSE, OpKind.CONCATENATION} <= set(dm)


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
@pytest.mark.parametrize("name", list(MODELS))
def test_bit_exact_on_qemu(name: str, board: str, tmp_path: Path) -> None:
    from mcuqp import api

    loaded = api.load(_write(name, tmp_path), n_random=10, seed=5)
    res = api.verify(loaded, board=board, n_inputs=10)
    assert res.compared == 10
    assert res.mismatches == 0, f"{res.mismatched_elements} elements differ"
    assert np.array_equal(res.device_outputs, res.reference_outputs)


# ---- from torch ------------------------------------------------------------------------


def _torch_nets():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Conv1dNet(nn.Module):
        """Conv1d + BatchNorm1d + ReLU, a depthwise Conv1d residual, mean over the length."""

        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv1d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm1d(8)
            self.c2 = nn.Conv1d(8, 8, 3, padding=1, groups=8)
            self.fc = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.bn(self.c1(x)))
            h = h + torch.relu(self.c2(h))
            return self.fc(h.mean(dim=-1))

    class MoveNet(nn.Module):
        """torch.split, F.interpolate / nn.Upsample (nearest), slicing with steps, permute,
        unsqueeze / squeeze (a rank-5 view), transpose, torch.chunk."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 6, 3, padding=1)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.fc = nn.Linear(4 * 4 * 5, 5)
            self.fc2 = nn.Linear(2 * 4 * 2, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = torch.split(torch.relu(self.conv(x)), [4, 2], dim=1)
            a = F.interpolate(a, scale_factor=2, mode="nearest")[:, :, 1:6, ::2]
            a = a.permute(0, 3, 1, 2).unsqueeze(2).squeeze(2)
            c = torch.chunk(self.up(b.transpose(2, 3))[:, :, ::2, ::2], 2, dim=3)
            return self.fc(torch.flatten(a, 1)) + self.fc2(torch.flatten(c[1], 1))

    torch.manual_seed(0)
    net1, net2 = Conv1dNet().eval(), MoveNet().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net1.bn.running_mean.uniform_(-0.5, 0.5)
        net1.bn.running_var.uniform_(0.5, 2.0)
    return {"conv1d": (net1, (3, 12)), "movement": (net2, (2, 4, 4))}


@pytest.mark.parametrize("name", ["conv1d", "movement"])
def test_torch_imports_and_runs_like_torch(name: str) -> None:
    import torch

    from mcuqp.frontends.torch_fx import import_torch
    from mcuqp.ir import OpKind
    from mcuqp.quant.ptq import quantize

    net, shape = _torch_nets()[name]
    x = torch.randn(64, *shape)
    fg = import_torch(net, x[:1])
    np.testing.assert_allclose(fg.run(x.numpy()), net(x).detach().numpy(), rtol=1e-4, atol=1e-4)
    kinds = {op.kind for op in quantize(fg, x.numpy()).ops}
    if name == "conv1d":
        assert {OpKind.CONV2D, OpKind.DEPTHWISE_CONV2D, OpKind.ADD, OpKind.AVG_POOL2D} <= kinds
    else:
        assert {OpKind.STRIDED_SLICE, OpKind.TRANSPOSE, OpKind.RESIZE_NEAREST_NEIGHBOR} <= kinds


def test_torch_refuses_what_it_cannot_map() -> None:
    import torch
    from torch import nn

    from mcuqp.errors import UnsupportedModelError
    from mcuqp.frontends.torch_fx import import_torch

    class IntIndex(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0]

    class BatchPermute(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.permute(1, 0, 2, 3) + x.permute(1, 0, 2, 3)

    for net, why in ((IntIndex(), "slices only"), (BatchPermute(), "batch dimension first")):
        with pytest.raises(UnsupportedModelError, match=why):
            import_torch(net, torch.zeros(1, 1, 3, 3))


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
@pytest.mark.parametrize("name", ["conv1d", "movement"])
def test_torch_bit_exact_on_qemu(name: str, board: str, tmp_path: Path) -> None:
    import torch

    from mcuqp import api

    net, shape = _torch_nets()[name]
    calib = tmp_path / "calib.npy"
    np.save(calib, torch.randn(64, *shape).numpy())
    loaded = api.load(net, calib=str(calib))
    res = api.verify(loaded, board=board, n_inputs=10)
    assert res.compared == 10 and res.mismatches == 0
    assert np.array_equal(res.device_outputs, res.reference_outputs)


@pytest.mark.parametrize("name", list(MODELS) + ["torch-conv1d", "torch-movement"])
def test_export_round_trips_and_runs_on_tflm(name: str, tmp_path: Path) -> None:
    """`mcuqp export` writes every data-movement op (and a rank-3 MEAN) back as a TFLite
    operator that re-imports with the same integers and runs on TFLite Micro like the reference."""
    prereq.require_module("tflite_micro")
    import torch

    from mcuqp import api
    from mcuqp.export.graph import to_tflite
    from mcuqp.oracle import tflm_run
    from mcuqp.reference.interpreter import run as reference_run

    if name.startswith("torch-"):
        net, shape = _torch_nets()[name[6:]]
        calib = tmp_path / "calib.npy"
        np.save(calib, torch.randn(64, *shape).numpy())
        loaded = api.load(net, calib=str(calib))
    else:
        loaded = api.load(_write(name, tmp_path), n_random=8, seed=3)
    path = tmp_path / "exported.tflite"
    path.write_bytes(to_tflite(loaded.graph).data)
    xs = loaded.verify_inputs[:8]
    np.testing.assert_array_equal(tflm_run(path, xs).reshape(8, -1), reference_run(loaded.graph, xs).reshape(8, -1))
