"""`mcuqp compress` then `mcuqp verify`: the compressed model keeps its QAT ranges and runs
bit-exactly on QEMU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mcuqp import api
from mcuqp.cli import main
from mcuqp.compress.train import FitConfig, fit
from mcuqp.datasets import load_dataset
from mcuqp.models import DigitsCNN


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    d = load_dataset("digits")
    path = tmp_path_factory.mktemp("float") / "digits.pt"
    torch.save(fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=8, lr=3e-3, seed=2)), path)
    return path


@pytest.fixture(scope="module")
def compressed(float_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("comp") / "small.pt"
    r = CliRunner().invoke(main, [
        "compress", str(float_model), "--data", "digits", "--prune", "magnitude:0.5", "--quant", "ternary",
        "--per-layer", "fc=int8", "--finetune-epochs", "2", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return out, json.loads(r.output)


def test_compress_summary_and_weights(compressed):
    out, info = compressed
    assert info["prune"] == "magnitude:0.5" and info["quant"] == "ternary"
    layers = {row["name"]: row for row in info["layers"]}
    assert layers["fc"]["bits"] == 8
    assert layers["mix.0"]["bits"] == 2 and layers["mix.0"]["nonzeros"] <= layers["mix.0"]["params"] // 2
    module = torch.load(out, weights_only=False)
    w = module.get_submodule("mix.0").weight.detach().numpy()
    for c in range(w.shape[0]):  # ternary: {-a, 0, +a} per output channel
        assert len(np.unique(np.abs(w[c]))) <= 2 and 0.0 in np.unique(w[c])


def test_compressed_graph_uses_the_qat_ranges(compressed):
    """Every range learnt in QAT (saved on the module) sets its tensor's scale and zero
    point exactly, and they differ from what plain calibration would choose."""
    from mcuqp.compress.pipeline import RANGES_ATTR
    from mcuqp.quant.ptq import activation_qparams, quantize_module
    from mcuqp.reference.interpreter import run

    out, info = compressed
    loaded = api.load(out, calib="digits")
    ranges = getattr(torch.load(out, weights_only=False), RANGES_ATTR)
    assert ranges, "the compressed module carries no QAT ranges"
    g = loaded.graph
    checked = [name for name in ranges if name in g.tensors and g.tensors[name].quant is not None]
    assert g.input.name in checked and len(checked) >= 3, (checked, list(ranges))
    for name in checked:
        scale, zp = activation_qparams(*ranges[name])
        q = g.tensors[name].quant
        assert (np.float32(q.s), q.zp) == (scale, zp), name
    calibrated = quantize_module(loaded.float_module, load_dataset("digits").x_train[:512])
    assert any(np.float32(calibrated.tensors[n].quant.s) != np.float32(g.tensors[n].quant.s) for n in checked)
    x, y = loaded.verify_inputs, loaded.labels
    acc = float((run(g, x).reshape(len(x), -1).argmax(1) == y).mean())
    assert abs(acc - info["accuracy_after"]) <= 0.01  # the int8 graph reproduces the QAT simulation


@pytest.mark.qemu
def test_compressed_model_bit_exact_on_qemu(compressed):
    out, _ = compressed
    r = CliRunner().invoke(main, ["verify", str(out), "--calib", "digits", "--inputs", "30", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["bit_exact"] is True


@pytest.mark.parametrize("args,needle", [
    (["--prune", "magic:0.5"], "magic"),
    (["--prune", "magnitude:abc"], "magnitude"),
    (["--per-layer", "fc"], "LAYER=KIND"),
    (["--per-layer", "nosuchlayer=int8"], "nosuchlayer"),
])
def test_compress_bad_arguments_one_line(float_model, tmp_path, args, needle):
    r = CliRunner().invoke(main, ["compress", str(float_model), "--data", "digits", "--finetune-epochs", "0",
                                  "-o", str(tmp_path / "o.pt"), *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert needle in r.output
    assert not (tmp_path / "o.pt").exists()
