"""The Python API: mcuqp.load / plan / compile / verify / compress return dataclasses whose
to_dict() is exactly what the matching command prints with --json, and never print."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mcuqp
from mcuqp import api
from mcuqp.cli import main
from mcuqp.errors import McuqpError
from mcuqp.models import DigitsCNN


@pytest.fixture(scope="module")
def module() -> torch.nn.Module:
    torch.manual_seed(0)
    return DigitsCNN().eval()


@pytest.fixture(scope="module")
def saved(module, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("api") / "net.pt"
    torch.save(module, path)
    return path


def _cli_json(*args: str) -> dict:
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_version_and_lazy_exports():
    assert mcuqp.__version__ == "0.1.0"
    assert mcuqp.compile is api.compile and mcuqp.load is api.load and mcuqp.report is api.report
    with pytest.raises(AttributeError):
        mcuqp.no_such_function
    # mcuqp.plan, mcuqp.compress and mcuqp.export are subpackages too: both uses work
    importlib.import_module("mcuqp.compress.pipeline")
    importlib.import_module("mcuqp.plan.memory")
    importlib.import_module("mcuqp.export.graph")
    assert callable(mcuqp.plan) and callable(mcuqp.compress) and callable(mcuqp.export)
    assert mcuqp.export.graph.to_tflite
    assert mcuqp.plan.memory.plan_memory and mcuqp.compress.pipeline.compress


def test_load_accepts_a_module_directly(module, capsys):
    loaded = mcuqp.load(module, calib="digits")
    assert loaded.graph.ops and loaded.verify_inputs.dtype == np.int8
    assert loaded.labels is not None and loaded.float_logits is not None
    assert capsys.readouterr() == ("", "")


def test_plan_result_matches_plan_json(module, saved, tmp_path, capsys):
    res = mcuqp.plan(module, calib="digits", board="mps3-an547", plot=tmp_path / "arena.png")
    assert capsys.readouterr() == ("", "")
    assert res.board == "mps3-an547" and res.board_ram_bytes == 524_288
    assert res.arena_fraction_of_ram == pytest.approx(res.arena_bytes / 524_288)
    assert (tmp_path / "arena.png").stat().st_size > 1000
    cli = _cli_json("plan", str(saved), "--calib", "digits", "--board", "mps3-an547", "--plot", str(tmp_path / "arena.png"))
    assert cli == res.to_dict()
    assert list(cli) == type(res).json_fields()


def test_compile_result_matches_compile_json(module, saved, tmp_path, capsys):
    # an in-memory module is named `model` by default; the CLI names the library after net.pt
    res = mcuqp.compile(module, tmp_path / "lib", calib="digits", board="mps2-an386", name="net")
    assert capsys.readouterr() == ("", "")
    assert res.name == "net" and {f.name for f in res.files} >= {"net.c", "net.h"} and all(f.is_file() for f in res.files)
    assert res.layers == len(res.plan.order) and res.arena_bytes == res.plan.arena_bytes
    cli = _cli_json("compile", str(saved), "--calib", "digits", "-o", str(tmp_path / "lib"))
    assert cli == res.to_dict()
    assert set(cli) == set(type(res).json_fields()) and "plan" not in cli and "generated" not in cli


def test_compile_refuses_a_model_loaded_for_the_other_rounding(module, tmp_path):
    loaded = mcuqp.load(module, calib="digits")
    with pytest.raises(McuqpError, match="rounding"):
        mcuqp.compile(loaded, tmp_path / "lib", rounding="single")
    assert not (tmp_path / "lib").exists()


@pytest.mark.qemu
def test_verify_result_matches_verify_json(module, saved, capsys):
    res = mcuqp.verify(module, calib="digits", n_inputs=4)
    assert capsys.readouterr() == ("", "")
    assert res.bit_exact and res.ok and res.compared == 4
    assert set(res.accuracy) == {"float", "reference", "device"}
    cli = _cli_json("verify", str(saved), "--calib", "digits", "--inputs", "4")
    assert cli == res.to_dict()
    assert "inputs" not in cli and "device_outputs" not in cli


def test_compress_result_matches_compress_json(module, saved, tmp_path, capsys):
    res = mcuqp.compress(module, "digits", prune="magnitude:0.5", quant="int8", finetune_epochs=0,
                         out=tmp_path / "small.pt")
    assert capsys.readouterr() == ("", "")
    assert res.output == str(tmp_path / "small.pt") and (tmp_path / "small.pt").is_file()
    assert res.params_after == sum(layer.params for layer in res.layers)
    assert all(layer.sparsity >= 0.49 for layer in res.layers)
    cli = _cli_json("compress", str(saved), "--data", "digits", "--prune", "magnitude:0.5", "--finetune-epochs", "0",
                    "-o", str(tmp_path / "small_cli.pt"))
    mine = res.to_dict()
    assert set(cli) == set(mine)
    assert {k: v for k, v in cli.items() if k != "output"} == {k: v for k, v in mine.items() if k != "output"}
    assert isinstance(mcuqp.load(tmp_path / "small.pt", calib="digits"), api.LoadedModel)


def test_api_errors_are_one_line_mcuqp_errors(tmp_path):
    with pytest.raises(McuqpError, match="does not exist"):
        mcuqp.load(tmp_path / "missing.tflite")
    with pytest.raises(McuqpError, match="calibration"):
        mcuqp.compile(DigitsCNN(), tmp_path / "lib")
    with pytest.raises(McuqpError, match="unknown board"):
        mcuqp.plan(DigitsCNN(), calib="digits", board="no-such-board")
