"""CLI conventions: an example in every --help, --json / --quiet / --verbose on every command
that reports, documented exit codes (0 ok, 1 mismatch, 2 usage or input error), and
--rounding reaching the .tflite loader."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mcuqp import api
from mcuqp.cli import EXIT_MISMATCH, EXIT_USER_ERROR, main
from mcuqp.ops.softmax import softmax_attrs
from tflite_builder import ModelBuilder

COMMANDS = sorted(main.commands)  # every command, including ones added later, must follow the conventions


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_the_documented_commands_exist():
    assert {"boards", "compile", "plan", "compress", "export", "verify", "report", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_an_example_and_the_exit_codes(name):
    r = _invoke(name, "--help")
    assert r.exit_code == 0
    examples = r.output.split("Examples:", 1)[1]
    assert f"mcuqp {name}" in examples
    assert "Exit status: 0 ok; 1 an output differs" in " ".join(r.output.split())
    for flag in ("--json", "--quiet", "--verbose"):
        assert flag in r.output


def test_version():
    import mcuqp

    r = _invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"mcuqp, version {mcuqp.__version__}"


def test_top_level_help_documents_exit_codes():
    r = _invoke("--help")
    assert r.exit_code == 0 and "Examples:" in r.output and "2 usage or input error" in " ".join(r.output.split())


def _tiny_tflite(path: Path, softmax_input_scale: float = 40.0) -> Path:
    """FC (per-channel) -> softmax. A softmax input scale this large makes beta * scale * 2^26
    exceed both rounding modes' largest multiplier, so the two modes give different parameters."""
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = b.add_input("x", (1, 8), scale=0.05, zero_point=3)
    w = b.add_constant("w", rng.integers(-127, 128, (4, 8)).astype(np.int8), scale=[0.01, 0.02, 0.015, 0.03],
                       zero_point=0, quantized_dimension=0)
    bias = b.add_constant("b", rng.integers(-500, 500, 4).astype(np.int32), scale=[5e-4, 1e-3, 7.5e-4, 1.5e-3])
    h = b.add_tensor("h", (1, 4), scale=softmax_input_scale, zero_point=-2)
    b.add_operator("FULLY_CONNECTED", [x, w, bias], [h])
    y = b.add_tensor("y", (1, 4), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [h], [y], {"beta": 1.0})
    b.mark_output(y)
    path.write_bytes(b.build())
    return path


def test_rounding_reaches_the_tflite_softmax_parameters(tmp_path):
    model = _tiny_tflite(tmp_path / "m.tflite")
    single, double = softmax_attrs(40.0, 1.0, "single"), softmax_attrs(40.0, 1.0, "double")
    assert single != double
    for rounding, expected in (("single", single), ("double", double)):
        softmax = api.load(model, rounding=rounding).graph.ops[-1]
        assert softmax.attrs == expected
    # and through the CLI: the generated C differs between the two modes
    for rounding in ("single", "double"):
        r = _invoke("compile", str(model), "--rounding", rounding, "-o", str(tmp_path / rounding), "--quiet")
        assert r.exit_code == 0, r.output
        assert r.output == ""
    assert (tmp_path / "single" / "m.c").read_text() != (tmp_path / "double" / "m.c").read_text()


def test_quiet_prints_nothing_and_verbose_prints_more(tmp_path):
    model = _tiny_tflite(tmp_path / "m.tflite")
    normal = _invoke("compile", str(model), "-o", str(tmp_path / "a"))
    verbose = _invoke("compile", str(model), "-o", str(tmp_path / "b"), "--verbose")
    assert normal.exit_code == verbose.exit_code == 0
    assert "m.c" not in normal.output and "m.c" in verbose.output
    assert set(normal.output.splitlines()) < set(verbose.output.splitlines()) | {
        line for line in normal.output.splitlines() if str(tmp_path / "a") in line}
    assert _invoke("plan", str(model), "-q").output == ""
    assert _invoke("compile", str(model), "-o", str(tmp_path / "c"), "-q", "-v").exit_code == EXIT_USER_ERROR


def test_plan_uses_the_board(tmp_path):
    model = _tiny_tflite(tmp_path / "m.tflite")
    small = json.loads(_invoke("plan", str(model), "--board", "mps3-an547", "--json").output)
    big = json.loads(_invoke("plan", str(model), "--board", "mps2-an386", "--json").output)
    assert small["board_ram_bytes"] == 524_288 and big["board_ram_bytes"] == 4_194_304
    assert small["arena_fraction_of_ram"] == pytest.approx(8 * big["arena_fraction_of_ram"])
    assert "of mps3-an547's 524,288 B of RAM" in _invoke("plan", str(model), "--board", "mps3-an547").output


@pytest.mark.parametrize("args", [
    ("compile", "missing.tflite", "-o", "out"),  # input error
    ("export", "missing.pt", "--calib", "digits", "-o", "out"),
    ("verify", "model.onnx"),  # unsupported file (checked before existence)
    ("plan", "x.tflite", "--board", "nope"),
    ("compile", "x.tflite"),  # usage: -o missing
    ("verify", "x.tflite", "--inputs", "0"),  # usage: out of range
    ("no-such-command",),
])
def test_usage_and_input_errors_exit_2_with_one_line(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if args[0] == "verify" and args[1] == "model.onnx":
        (tmp_path / "model.onnx").write_bytes(b"\0")
    r = _invoke(*args)
    assert r.exit_code == EXIT_USER_ERROR, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, r.output
    assert not (tmp_path / "out").exists()


def test_a_mismatch_exits_1(tmp_path, monkeypatch):
    """The CLI maps a VerifyResult that is not bit-exact to exit status 1 (in text and --json)."""
    model = _tiny_tflite(tmp_path / "m.tflite")
    res = api.VerifyResult(
        board="mps2-an386", bit_exact=False, compared=3, mismatches=1, mismatched_elements=2, flash_bytes=1,
        model_flash_bytes=1, ram_bytes=1, model_ram_bytes=1, static_ram_bytes=1, stack_bytes=1, arena_bytes=1,
        instructions_per_inference=1, instructions_min=1, instructions_max=1, predicted_flash_bytes=None,
        predicted_ram_bytes=None, layers=[])
    monkeypatch.setattr(api, "verify", lambda *a, **k: res)
    r = _invoke("verify", str(model), "--json")
    assert r.exit_code == EXIT_MISMATCH
    assert json.loads(r.output)["mismatches"] == 1
    r = _invoke("verify", str(model))
    assert r.exit_code == EXIT_MISMATCH and "MISMATCH: 1 of 3" in r.output
