"""Generated models with packed layers: compressed digits models (weights set in the test to
sparse, int4, ternary and binary patterns, and a fully binary one after a SIGN activation)
go through PTQ, the per-layer weight-format choice and the code generator, and the C equals
the numpy reference exactly on the host and on QEMU (Cortex-M4 and M55)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import prereq
from hostlib import HostModel
from mcuqp import api
from mcuqp.cli import main
from mcuqp.compress.binary_act import BinaryActivation
from mcuqp.errors import McuqpError
from mcuqp.models import DigitsCNN
from mcuqp.plan import formats as F
from mcuqp.quant.ptq import quantize_weights, weight_levels
from mcuqp.reference.interpreter import run as reference_run

PATTERNS = ("sparse", "int4", "ternary", "binary")


def _pattern(shape: tuple[int, ...], kind: str, rng: np.random.Generator) -> np.ndarray:
    """Float weights (out channel first) a compressed model would hold: per-channel alpha
    times the pattern's levels."""
    alpha = rng.uniform(0.05, 0.5, size=(shape[0],) + (1,) * (len(shape) - 1))
    if kind == "sparse":  # int8-grid values, 90 % zeros
        w = rng.normal(0.0, 0.3, size=shape) * (rng.random(shape) < 0.1)
        return w.astype(np.float32)
    levels = {"int4": np.arange(-7, 8), "ternary": np.array([-1, 0, 1]), "binary": np.array([-1, 1])}[kind]
    w = rng.choice(levels, size=shape)
    w.reshape(shape[0], -1)[:, 0] = levels[-1]  # every channel reaches its largest level
    scale = alpha / (7.0 if kind == "int4" else 1.0)
    return (w * scale).astype(np.float32)


def _set_weights(model: nn.Module, kind: str, seed: int = 0) -> nn.Module:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data = torch.from_numpy(_pattern(tuple(m.weight.shape), kind, rng))
            if m.bias is not None:
                m.bias.data = torch.from_numpy(rng.normal(0, 0.1, size=m.bias.shape).astype(np.float32))
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.data = torch.from_numpy(rng.normal(0, 0.2, size=m.running_mean.shape).astype(np.float32))
            m.running_var.data = torch.from_numpy(rng.uniform(0.5, 2, size=m.running_var.shape).astype(np.float32))
    return model.eval()


class SignMlp(nn.Module):
    """64 -> 64 -> BN -> SIGN -> 48 -> 10: the middle layer is fully binary."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.bn = nn.BatchNorm1d(64)
        self.sign = BinaryActivation()
        self.fc2 = nn.Linear(64, 48)
        self.fc3 = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(self.sign(self.bn(self.fc1(x.flatten(1)))))))


@pytest.fixture(scope="module")
def cnns() -> dict[str, api.LoadedModel]:
    """DigitsCNN (conv 3x3, depthwise 3x3, 1x1 convs, FC) with every weight in one pattern."""
    return {k: api.load(_set_weights(DigitsCNN(), k, seed=i), calib="digits") for i, k in enumerate(PATTERNS)}


@pytest.fixture(scope="module")
def sign_mlp() -> api.LoadedModel:
    return api.load(_set_weights(SignMlp(), "binary", seed=7), calib="digits")


def _everywhere(loaded: api.LoadedModel, fmt: str) -> dict[str, str]:
    g = loaded.graph
    return {op.name: fmt for op in g.ops if fmt in F.allowed(g, op)}


CASES = [("cnn", f) for f in PATTERNS] + [("sign_mlp", "xnor")]


def _model(request, which: str, fmt: str) -> api.LoadedModel:
    return request.getfixturevalue("cnns")[fmt] if which == "cnn" else request.getfixturevalue("sign_mlp")


def test_ptq_keeps_low_bit_levels(cnns, sign_mlp) -> None:
    """A ternary / binary weight becomes int8 -1 / 0 / +1 with its channel's scale, int4 k in
    [-7, 7]; each format is detected on every conv, depthwise and FC layer."""
    want = {"sparse": "sparse", "int4": "int4", "ternary": "ternary", "binary": "binary"}
    for kind, loaded in cnns.items():
        g = loaded.graph
        layers = [op for op in g.ops if F.op_family(op)]
        assert {op.kind.value for op in layers} == {"conv2d", "depthwise_conv2d", "fully_connected"}
        for op in layers:
            w = F.weights(g, op)
            assert want[kind] in F.allowed(g, op), (kind, op.name)
            if kind in ("ternary", "binary"):
                assert set(np.unique(w)) <= {-1, 0, 1}
            if kind == "int4":
                assert w.min() >= -7 and w.max() == 7
    g = sign_mlp.graph
    sign = next(op for op in g.ops if op.kind.value == "sign")
    after = [op for op in g.ops if F.op_family(op) and op.inputs[0] == sign.outputs[0]]
    assert len(after) == 1 and "xnor" in F.allowed(g, after[0])
    assert [op.name for op in g.ops if "xnor" in F.allowed(g, op)] == [after[0].name]
    assert not any("xnor" in F.allowed(cnns["binary"].graph, op) for op in cnns["binary"].graph.ops)


def test_ptq_of_ordinary_weights_is_unchanged() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 3, 3, 8)).astype(np.float32)
    assert weight_levels(w, 0) == 127
    q_old, s_old = quantize_weights(w, 0)
    assert np.abs(q_old).max() == 127
    t = (np.sign(w) * (np.abs(w) > 0.5) * 0.25).astype(np.float32)
    assert weight_levels(t, 0) == 1
    q, s = quantize_weights(t, 0, qmax=1)
    assert set(np.unique(q)) <= {-1, 0, 1} and np.allclose(s, 0.25)
    assert weight_levels(np.full((4, 2), 0.3, np.float32), 0) == 127  # rows too short to tell


@pytest.mark.parametrize("which,fmt", CASES, ids=[f"{w}-{f}" for w, f in CASES])
def test_packed_library_on_host_equals_reference(request, which, fmt, tmp_path) -> None:
    loaded = _model(request, which, fmt)
    g = loaded.graph
    res = api.compile(loaded, tmp_path / "lib", formats=_everywhere(loaded, fmt), project=False)
    chosen = {w["layer"]: w for w in res.weight_formats}
    assert {w["format"] for w in res.weight_formats} >= {fmt}
    for name, w in chosen.items():
        op = next(o for o in g.ops if o.name == name)
        lf = F.layer_format(g, op, w["format"])
        assert (w["weight_bytes"], w["index_bytes"]) == (lf.weight_bytes, lf.index_bytes)
    src = (res.out_dir / f"{res.name}.c").read_text()
    kernel = {"sparse": "_sparse_s8(", "xnor": "_xnor_s8("}.get(fmt, "_lowbit_s8(")
    assert kernel in src
    host = HostModel(res.out_dir, g.input.size, g.output.size)
    x = loaded.verify_inputs[:200]
    assert np.array_equal(host(x), reference_run(g, x).reshape(len(x), -1))


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
@pytest.mark.parametrize("which,fmt", CASES, ids=[f"{w}-{f}" for w, f in CASES])
def test_packed_model_bit_exact_on_qemu(request, which, fmt, board) -> None:
    prereq.require_tools(*prereq.QEMU_TOOLS)
    loaded = _model(request, which, fmt)
    res = api.verify(loaded, board=board, n_inputs=20, formats=_everywhere(loaded, fmt))
    assert res.compared == 20 and res.bit_exact, res.summary()


def _dense_weights_model(density: float) -> api.LoadedModel:
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    for m in model:
        if isinstance(m, nn.Linear):
            w = rng.normal(0, 0.3, size=m.weight.shape) * (rng.random(m.weight.shape) < density)
            m.weight.data = torch.from_numpy(w.astype(np.float32))
    return api.load(model.eval(), calib="digits")


def test_sparse_below_the_break_even_density_dense_above() -> None:
    for density, want in ((0.1, "sparse"), (0.9, "int8")):
        g = _dense_weights_model(density).graph
        chosen = F.choose_formats(g)
        assert set(chosen.values()) == {want}, (density, chosen)
    # on Helium the dense kernels are faster than the (scalar / SMLAD) sparse ones even at 10 %
    assert set(F.choose_formats(_dense_weights_model(0.1).graph, features=frozenset({"dsp", "mve"})).values()) == {"int8"}


def test_fastest_format_by_default_then_smaller_ones_to_fit_the_flash_budget(tmp_path) -> None:
    """A ternary MLP runs fastest dense; a budget below the dense image moves its large
    layers to 2-bit weights, and the image fits."""
    prereq.require_tools(*prereq.ARM_TOOLS)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    loaded = api.load(_set_weights(model, "ternary", seed=2), calib="digits")
    fast = api.compile(loaded, tmp_path / "fast", project=False)
    assert {w["format"] for w in fast.weight_formats} == {"int8"}
    budget = fast.predicted_flash_bytes - 40_000
    small = api.compile(loaded, tmp_path / "small", flash_bytes=budget, project=False)
    assert small.predicted_flash_bytes <= budget
    assert "ternary" in {w["format"] for w in small.weight_formats}
    with pytest.raises(McuqpError, match="flash"):
        api.compile(loaded, tmp_path / "none", flash_bytes=2_000, project=False)
    assert not (tmp_path / "none").exists()


def test_format_overrides_and_their_errors(cnns, tmp_path) -> None:
    loaded = cnns["ternary"]
    g = loaded.graph
    first = next(op.name for op in g.ops if F.op_family(op))
    chosen = F.choose_formats(g, overrides={"*": "ternary", first: "int8"})
    assert chosen[F.layer_names(g)[first]] == "int8"
    assert sum(f == "ternary" for f in chosen.values()) == len(chosen) - 1
    for bad, msg in (({"nope": "int8"}, "no layer named 'nope'"), ({first: "int3"}, "unknown format"),
                     ({first: "xnor"}, "allow")):
        with pytest.raises(McuqpError, match=msg):
            F.choose_formats(g, overrides=bad)


def _cli_model(tmp_path) -> str:
    path = tmp_path / "ternary.pt"
    torch.save(_set_weights(DigitsCNN(), "ternary", seed=2), path)
    return str(path)


def test_cli_format_option_compile_json_and_plan(tmp_path) -> None:
    model = _cli_model(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["compile", model, "--calib", "digits", "-o", str(tmp_path / "out"), "--json",
                             "--format", "mix_2=ternary", "--format", "fc=sparse"])
    assert r.exit_code == 0, r.output
    listed = {w["layer"]: w for w in json.loads(r.output)["weight_formats"]}
    assert listed["mix_2"]["format"] == "ternary" and listed["mix_2"]["weight_bytes"] == 256
    assert listed["fc"]["format"] == "sparse" and listed["fc"]["index_bytes"] > 0
    r = runner.invoke(main, ["plan", model, "--calib", "digits", "--json", "--format", "*=ternary"])
    assert r.exit_code == 0, r.output
    layers = {ly["op"]: ly for ly in json.loads(r.output)["layers"]}
    assert layers["mix_2"]["format"] == "ternary" and layers["mix_2"]["scratch_bytes"] > 0
    assert {ly["format"] for ly in layers.values() if ly["format"]} == {"ternary"}
    assert layers["stem_2"]["weight_bytes"] == 16 * 4 and layers["stem_2"]["index_bytes"] == 0  # 9 taps: 1 word
    r = runner.invoke(main, ["plan", model, "--calib", "digits", "--format", "*=ternary"])
    assert r.exit_code == 0 and "mix_2" in r.output and "ternary" in r.output and "index B" in r.output
    for args, msg in ((["--format", "nope=int8"], "no layer named 'nope'"),
                      (["--format", "fc=int3"], "unknown format"),
                      (["--format", "fc"], "not LAYER=FORMAT"),
                      (["--format", "fc=xnor"], "allow")):
        r = runner.invoke(main, ["compile", model, "--calib", "digits", "-o", str(tmp_path / "bad"), *args])
        assert r.exit_code == 2, r.output
        assert msg in r.output and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
        assert not (tmp_path / "bad").exists()


def test_cost_table_follows_the_measured_kernels() -> None:
    """The instruction estimates against benchmarks/results/packed.json (M4): every row
    within 40 %, and the fastest format of each layer and density is the measured fastest."""
    from pathlib import Path

    rows = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/packed.json").read_text())
    rows = [r for r in rows if r["board"] == "mps2-an386"]
    fam = {"fc": "fc", "conv": "conv2d", "depthwise": "depthwise"}
    for r in rows:
        f = fam[r["layer"].split()[0]]
        fmt = {"dense": "int8"}.get(r["format"], r["format"])
        if fmt == "sparse":
            per_mac, per_nz = F.SPARSE_COST[f]
            est = r["macs"] * (per_mac + per_nz * r["density"])
        else:
            est = r["macs"] * F.COST_PER_MAC[f][fmt]
        assert abs(est / r["instructions"] - 1) < 0.4, r
