"""The whole path: torch module -> int8 graph -> generated C -> host and QEMU, compared
with the numpy reference using equality."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from mcuqp import api
from mcuqp.cli import main
from mcuqp.compress.train import FitConfig, fit
from mcuqp.datasets import load_dataset
from mcuqp.errors import McuqpError
from mcuqp.models import DigitsCNN
from mcuqp.reference.interpreter import run as reference_run
from hostlib import HostModel


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    return fit(DigitsCNN(), digits.x_train, digits.y_train, FitConfig(epochs=8, lr=3e-3, seed=1))


@pytest.fixture(scope="module")
def loaded(trained):
    return api.load(trained, calib="digits")


@pytest.fixture(scope="module")
def saved_model(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.pt"
    torch.save(trained, path)
    return path


def test_generated_library_on_host_equals_reference(loaded, tmp_path):
    res = api.compile(loaded, tmp_path / "lib")
    names = {f.name for f in res.files}
    assert {"model.c", "model.h", "mcuqp_nn.h", "mcuqp_fixedpoint.h", "conv2d_s8.c"} <= names
    g = loaded.graph
    host = HostModel(res.out_dir, g.input.size, g.output.size)
    x = loaded.verify_inputs
    ref = reference_run(g, x).reshape(len(x), -1)
    assert np.array_equal(host(x), ref)


def test_single_rounding_library_equals_single_rounding_reference(trained, tmp_path):
    loaded = api.load(trained, calib="digits", rounding="single")
    res = api.compile(loaded, tmp_path / "lib", rounding="single")
    g = loaded.graph
    host = HostModel(res.out_dir, g.input.size, g.output.size, defines=("MCUQP_SINGLE_ROUNDING=1",))
    x = loaded.verify_inputs[:100]
    assert np.array_equal(host(x), reference_run(g, x, rounding="single").reshape(len(x), -1))


def test_generated_model_refuses_the_wrong_rounding_build(trained, tmp_path):
    loaded = api.load(trained, calib="digits", rounding="single")
    res = api.compile(loaded, tmp_path / "lib", rounding="single")
    with pytest.raises(Exception, match="MCUQP_SINGLE_ROUNDING"):
        HostModel(res.out_dir, loaded.graph.input.size, loaded.graph.output.size)


def test_int8_accuracy_close_to_float(loaded):
    x, y = loaded.verify_inputs, loaded.labels
    ref_acc = (reference_run(loaded.graph, x).reshape(len(x), -1).argmax(1) == y).mean()
    float_acc = (loaded.float_logits.argmax(1) == y).mean()
    assert float_acc > 0.85
    assert abs(ref_acc - float_acc) <= 0.02


def test_compile_replaces_output_atomically(loaded, tmp_path):
    out = tmp_path / "lib"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    api.compile(loaded, out)
    assert not (out / "stale.txt").exists()
    assert (out / "model.c").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547", "mps2-an385", "mps2-an500"])
def test_verify_on_qemu_bit_exact(loaded, board, tmp_path):
    res = api.verify(loaded, board=board, n_inputs=40, save_io=tmp_path / "io")
    assert res.compared == 40
    assert res.mismatches == 0 and res.bit_exact
    assert np.array_equal(res.device_outputs, res.reference_outputs)
    assert res.instructions_min > 1000 and res.instructions_max >= res.instructions_min
    assert sum(layer.instructions for layer in res.layers) <= res.instructions_max
    assert 0 < res.stack_bytes < 16384
    assert res.flash_bytes > loaded.graph.tensors[loaded.graph.ops[0].inputs[1]].nbytes
    assert res.ram_bytes >= res.arena_bytes + res.stack_bytes
    io = json.loads((tmp_path / "io" / "io.json").read_text())
    assert set(io) >= {"input_scale", "input_zero_point", "output_scale", "output_zero_point"}
    inputs = np.load(tmp_path / "io" / "inputs.npy")
    assert inputs.dtype == np.int8 and inputs.shape == (40, 8, 8, 1)
    assert np.array_equal(np.load(tmp_path / "io" / "outputs_device.npy"), res.device_outputs)


@pytest.mark.qemu
def test_cli_verify_json(saved_model):
    r = CliRunner().invoke(main, ["verify", str(saved_model), "--calib", "digits", "--inputs", "12", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["bit_exact"] is True and out["mismatches"] == 0 and out["compared"] == 12
    for key in ("flash_bytes", "ram_bytes", "instructions_per_inference"):
        assert out[key] > 0


def test_cli_compile(saved_model, tmp_path):
    r = CliRunner().invoke(main, ["compile", str(saved_model), "--calib", "digits", "-o", str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["arena_bytes"] > 0 and info["weight_bytes"] > 0
    assert (tmp_path / "c" / "digits.c").exists() and (tmp_path / "c" / "digits.h").exists()  # named after digits.pt


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("mcuqp: error: ")
    return lines[0]


def test_cli_errors_are_one_line(tmp_path, saved_model):
    runner = CliRunner()
    assert "does not exist" in _one_line_error(runner.invoke(main, ["compile", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "o")]))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    assert "cannot load" in _one_line_error(runner.invoke(main, ["compile", str(bad), "--calib", "digits", "-o", str(tmp_path / "o")]))
    assert "--calib" in _one_line_error(runner.invoke(main, ["compile", str(saved_model), "-o", str(tmp_path / "o")]))
    assert "unknown board" in _one_line_error(
        runner.invoke(main, ["compile", str(saved_model), "--calib", "digits", "--board", "nope", "-o", str(tmp_path / "o")])
    ).lower()
    corrupt = tmp_path / "bad.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    _one_line_error(runner.invoke(main, ["compile", str(corrupt), "-o", str(tmp_path / "o")]))
    assert not (tmp_path / "o").exists()


class _Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.conv(x)).flatten(1)


def test_cli_unsupported_layer_names_it(tmp_path):
    path = tmp_path / "gelu.pt"
    torch.save(_Gelu(), path)
    line = _one_line_error(CliRunner().invoke(main, ["compile", str(path), "--calib", "digits", "-o", str(tmp_path / "o")]))
    assert "GELU" in line and "act" in line
    assert not (tmp_path / "o").exists()


def test_npy_calibration_first_samples_are_the_verification_inputs(trained, digits, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, digits.x_test[:50])
    loaded = api.load(trained, calib=str(calib))
    from mcuqp.quant.ptq import quantize_input

    assert np.array_equal(loaded.verify_inputs, quantize_input(loaded.graph, digits.x_test[:50]))
    assert loaded.labels is None


def test_bad_npy_calibration_is_a_clear_error(trained, tmp_path):
    bad = tmp_path / "labels.npy"
    np.save(bad, np.arange(10))
    with pytest.raises(McuqpError, match="float array"):
        api.load(trained, calib=str(bad))
    with pytest.raises(McuqpError, match="digits"):
        api.load(trained, calib="cifar")


def test_cli_boards_lists_all_four():
    r = CliRunner().invoke(main, ["boards"])
    assert r.exit_code == 0
    for name in ("mps2-an386", "mps2-an385", "mps2-an500", "mps3-an547"):
        assert name in r.output


def test_generated_makefile_fragment_builds_the_library(loaded, tmp_path):
    import subprocess

    res = api.compile(loaded, tmp_path / "lib")
    (tmp_path / "Makefile").write_text(
        "MODEL_DIR := lib\ninclude lib/model.mk\n"
        "OBJS := $(patsubst lib/%.c,build/%.o,$(MODEL_SRCS))\n"
        "libmodel.a: $(OBJS)\n\tar rcs $@ $^\n"
        "build/%.o: lib/%.c\n\t@mkdir -p build\n\tgcc -std=c99 -O2 -Wall -Wextra -Werror $(MODEL_CFLAGS) -c $< -o $@\n"
    )
    r = subprocess.run(["make", "-s", "libmodel.a"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "libmodel.a").stat().st_size > 0
    assert "CMakeLists.txt" in {f.name for f in res.files}


@pytest.mark.qemu
def test_budget_too_small_fails_before_writing_and_a_fitting_budget_builds(saved_model, tmp_path):
    runner = CliRunner()
    line = _one_line_error(runner.invoke(main, ["compile", str(saved_model), "--calib", "digits", "--flash", "4000",
                                                "-o", str(tmp_path / "o")]))
    assert "over the 4,000 B budget (--flash)" in line and "largest layers" in line
    assert not (tmp_path / "o").exists()
    line = _one_line_error(runner.invoke(main, ["compile", str(saved_model), "--calib", "digits", "--ram", "6000",
                                                "-o", str(tmp_path / "o")]))
    assert "(--ram)" in line and "arena" in line
    r = runner.invoke(main, ["compile", str(saved_model), "--calib", "digits", "--json", "-o", str(tmp_path / "o")])
    info = json.loads(r.output)
    flash, ram = info["predicted_flash_bytes"], info["predicted_ram_bytes"]
    r = runner.invoke(main, ["verify", str(saved_model), "--calib", "digits", "--inputs", "5", "--json",
                             "--flash", str(flash + 64), "--ram", str(ram + 16384)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["bit_exact"] and out["flash_bytes"] == flash == out["predicted_flash_bytes"]
