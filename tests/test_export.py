"""`mcuqp export`: the integer graph as a dense int8 .tflite that TFLite Micro (the oracle of
record) runs to exactly the numpy reference's outputs, for models compressed here on digits
(85 % magnitude-pruned, int4, ternary) and an uncompressed int8 one; re-importing the
.tflite gives the same integer graph; binary SIGN activations are refused (exit 2, nothing
written). Single-op models cover the exporters the digits models do not reach."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import prereq

prereq.require_module("tflite_micro", module_level=True)

import mcuqp  # noqa: E402
from mcuqp import api  # noqa: E402
from mcuqp.cli import main  # noqa: E402
from mcuqp.compress.binary_act import BinaryActivation  # noqa: E402
from mcuqp.compress.train import FitConfig, fit  # noqa: E402
from mcuqp.datasets import load_dataset  # noqa: E402
from mcuqp.export.graph import ExportError, same_attrs, to_tflite  # noqa: E402
from mcuqp.frontends.tflite import graph_from_bytes, load_tflite  # noqa: E402
from mcuqp.ir import Graph  # noqa: E402
from mcuqp.models import DigitsCNN  # noqa: E402
from mcuqp.oracle import tflm_run  # noqa: E402
from mcuqp.reference.interpreter import run  # noqa: E402
from tflite_builder import ModelBuilder, run_tflm  # noqa: E402

COMPRESSIONS = {
    "sparse": {"prune": "magnitude:0.85", "quant": "int8"},
    "int4": {"quant": "int4"},
    "ternary": {"quant": "ternary"},
}


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> tuple[nn.Module, Path]:
    d = load_dataset("digits")
    model = fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=3, lr=3e-3, seed=0))
    path = tmp_path_factory.mktemp("float") / "digits.pt"
    torch.save(model, path)
    return model, path


@pytest.fixture(scope="module")
def compressed(float_model, tmp_path_factory) -> dict[str, Path]:
    model, _ = float_model
    folder = tmp_path_factory.mktemp("compressed")
    return {name: api.compress(model, "digits", finetune_epochs=1, out=folder / f"{name}.pt", **kw).output
            for name, kw in COMPRESSIONS.items()}


def _same_graph(a: Graph, b: Graph) -> None:
    """Same ops (kind, integer attrs) and the same constants, by output tensor name."""
    twins = b.producers()
    for op in a.ops:
        twin = twins[op.outputs[0]]
        assert twin.kind == op.kind and same_attrs(op.attrs, twin.attrs), op.name
        for mine, theirs in zip(op.inputs[1:], twin.inputs[1:]):
            ta, tb = a.tensors[mine], b.tensors[theirs]
            if ta.is_const:
                np.testing.assert_array_equal(ta.data, tb.data)
                np.testing.assert_array_equal(ta.quant.scale, tb.quant.scale)


def _check_exported(loaded: api.LoadedModel, path: Path) -> None:
    x = loaded.verify_inputs
    ref = run(loaded.graph, x).reshape(len(x), -1)
    assert len(np.unique(ref, axis=0)) > len(x) // 4, "the model's outputs barely vary: a weak check"
    np.testing.assert_array_equal(tflm_run(path, x).reshape(len(x), -1), ref)
    back = load_tflite(path)
    _same_graph(loaded.graph, back)
    np.testing.assert_array_equal(run(back, x).reshape(len(x), -1), ref)


@pytest.mark.parametrize("kind", list(COMPRESSIONS))
def test_compressed_model_exports_bit_exact_for_tflm(kind, compressed, tmp_path):
    src = compressed[kind]
    out = tmp_path / f"{kind}.tflite"
    r = CliRunner().invoke(main, ["export", str(src), "--calib", "digits", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert list(info) == api.ExportResult.json_fields()
    assert info["path"] == str(out) and info["bytes"] == out.stat().st_size
    assert info["ops"] == {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 2, "ADD": 1, "MAX_POOL_2D": 1, "AVERAGE_POOL_2D": 1,
                           "RESHAPE": 1, "FULLY_CONNECTED": 1}
    loaded = api.load(src, calib="digits")
    # the .tflite holds the compressed weights: pruned zeros, 15 int4 / 3 ternary levels
    back = load_tflite(out)
    for name in ("block_pointwise_0.weight", "mix_2.weight"):
        w = back.tensors[name].data.reshape(back.tensors[name].shape[0], -1)
        if kind == "sparse":
            assert np.mean(w == 0) >= 0.8
        else:
            assert max(len(np.unique(row)) for row in w) <= (15 if kind == "int4" else 3)
    _check_exported(loaded, out)
    # exporting the exported model writes the same bytes
    again = tmp_path / "again.tflite"
    assert mcuqp.export(out, again).bytes == info["bytes"] and again.read_bytes() == out.read_bytes()


def test_uncompressed_int8_module_via_python_api(float_model, tmp_path):
    model, _ = float_model
    loaded = mcuqp.load(model, calib="digits")
    res = mcuqp.export(loaded, tmp_path / "sub" / "int8.tflite")
    assert res.path.exists() and res.layers == len(loaded.graph.ops)
    assert set(res.to_dict()) >= {"path", "bytes", "ops"}
    _check_exported(loaded, res.path)


def test_conv_padding_tflite_cannot_name_becomes_a_pad(tmp_path):
    """torch pads a stride-2 conv 1 / 1, TFLite's SAME 0 / 1: a PAD with the input zero
    point goes in front of a VALID conv. Also hard swish, leaky relu and softmax."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.Hardswish(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.LeakyReLU(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
                        nn.Softmax(dim=1)).eval()
    loaded = mcuqp.load(net, calib="digits")
    loaded.verify_inputs = loaded.verify_inputs[:64]
    res = mcuqp.export(loaded, tmp_path / "ops.tflite")
    assert res.ops["PAD"] == 1 and {"HARD_SWISH", "LEAKY_RELU", "SOFTMAX"} <= set(res.ops)
    x = loaded.verify_inputs
    np.testing.assert_array_equal(tflm_run(res.path, x).reshape(len(x), -1), run(loaded.graph, x).reshape(len(x), -1))


def _single(op: str, options: dict | None = None, *, const: np.ndarray | None = None, shape=(1, 4, 4, 3),
            out_shape=None, out_q=(0.05, -3), extra: list | None = None) -> bytes:
    b = ModelBuilder()
    x = b.add_input("x", shape, scale=0.04, zero_point=5)
    ins = [x]
    if const is not None:
        ins.append(b.add_constant("k", const, scale=0.02, zero_point=1))
    for name, data in extra or []:
        ins.append(b.add_constant(name, data))
    y = b.add_tensor("y", out_shape or shape, scale=out_q[0], zero_point=out_q[1])
    b.add_operator(op, ins, [y], options)
    b.mark_output(y)
    return b.build()


SINGLE_OPS = {
    "mul_const": lambda rng: _single("MUL", {"fused_activation_function": "RELU"},
                                     const=rng.integers(-128, 128, (1, 1, 1, 3)).astype(np.int8)),
    "pad": lambda rng: _single("PAD", shape=(1, 3, 3, 2), out_shape=(1, 5, 4, 2), out_q=(0.04, 5),
                               extra=[("p", np.array([[0, 0], [1, 1], [0, 1], [0, 0]], np.int32))]),
    "mean": lambda rng: _single("MEAN", {"keep_dims": True}, out_shape=(1, 1, 1, 3),
                                extra=[("axes", np.array([1, 2], np.int32))]),
    "concatenation": lambda rng: _concat(),
    "quantize": lambda rng: _single("QUANTIZE"),
    "relu": lambda rng: _single("RELU"),
    "relu6": lambda rng: _single("RELU6", out_q=(0.04, 5)),
    "logistic": lambda rng: _single("LOGISTIC", out_q=(1 / 256, -128)),
}


def _concat() -> bytes:
    b = ModelBuilder()
    x1 = b.add_input("x1", (1, 2, 2, 3), scale=0.04, zero_point=5)
    x2 = b.add_tensor("x2", (1, 2, 2, 3), scale=0.04, zero_point=5)  # mcuqp graphs have one input
    b.add_operator("RELU", [x1], [x2])
    y = b.add_tensor("y", (1, 2, 2, 6), scale=0.04, zero_point=5)
    b.add_operator("CONCATENATION", [x1, x2], [y], {"axis": 3})
    b.mark_output(y)
    return b.build()


@pytest.mark.parametrize("case", list(SINGLE_OPS))
def test_single_op_round_trip(case, tmp_path):
    rng = np.random.default_rng(len(case))
    src = tmp_path / "src.tflite"
    src.write_bytes(SINGLE_OPS[case](rng))
    graph = load_tflite(src)
    exported = to_tflite(graph)
    _same_graph(graph, graph_from_bytes(exported.data))
    x = rng.integers(-128, 128, (8, *graph.input.shape[1:])).astype(np.int8)
    ref = run(graph, x)
    for i in range(len(x)):
        (theirs,) = run_tflm(exported.data, [x[i:i + 1]])
        np.testing.assert_array_equal(theirs, ref[i:i + 1])


@pytest.mark.parametrize("rel", ["mlperf_tiny/kws_ref_model.tflite", "mlperf_tiny/pretrainedResnet_quant.tflite"])
def test_imported_tflite_models_export_exactly(rel, tmp_path):
    loaded = mcuqp.load(prereq.shared_model(rel), n_random=3)
    res = mcuqp.export(loaded, tmp_path / "m.tflite")
    _check_exported(loaded, res.path)


class _SignNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.sign, self.fc2 = nn.Linear(6, 8), BinaryActivation(), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.sign(self.fc1(x)))


def test_binary_activation_is_refused_and_nothing_written(tmp_path):
    torch.manual_seed(0)
    model_path, calib = tmp_path / "sign.pt", tmp_path / "x.npy"
    torch.save(_SignNet().eval(), model_path)
    np.save(calib, np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32))
    out = tmp_path / "out" / "sign.tflite"
    r = CliRunner().invoke(main, ["export", str(model_path), "--calib", str(calib), "-o", str(out)])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "SIGN" in lines[0] and lines[0].startswith("mcuqp: error:"), r.output
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))  # no temp file either
    with pytest.raises(ExportError, match="SIGN"):
        mcuqp.export(str(model_path), out, calib=str(calib))


def test_single_rounding_graph_is_refused(tmp_path):
    src = tmp_path / "q.tflite"
    src.write_bytes(SINGLE_OPS["quantize"](None))
    with pytest.raises(ExportError, match="single rounding"):
        mcuqp.export(src, tmp_path / "out.tflite", rounding="single")
    assert not (tmp_path / "out.tflite").exists()


def test_integers_tflite_would_not_derive_are_refused(tmp_path):
    """The re-import check: a graph whose multiplier is not what its scales give cannot be
    written as a .tflite (TFLite Micro would compute other outputs than the C)."""
    graph = graph_from_bytes(SINGLE_OPS["quantize"](None))
    graph.ops[0].attrs.multiplier += 1
    with pytest.raises(ExportError, match=r"other integers .*\(multiplier\)"):
        to_tflite(graph)
