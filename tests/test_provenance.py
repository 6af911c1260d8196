"""Generated sources are reproducible and say where they come from; `mcuqp verify --sources`
checks an existing folder against its model on QEMU, and catches a single changed weight."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hostile.corpus import base_model
from mcuqp import api
from mcuqp.cli import main
from mcuqp.codegen.provenance import file_sha256, mcuqp_version, read_provenance
from mcuqp.models import DigitsCNN


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _tflite(tmp_path: Path) -> Path:
    path = tmp_path / "model.tflite"
    path.write_bytes(base_model())
    return path


def test_same_model_and_options_give_byte_identical_sources(tmp_path):
    path = _tflite(tmp_path)
    torch.manual_seed(3)
    pt = tmp_path / "net.pt"
    torch.save(DigitsCNN().eval(), pt)
    for model, extra in ((path, []), (pt, ["--calib", "digits"])):
        outs = []
        for k in range(2):
            out = tmp_path / f"{model.stem}-{k}"
            r = CliRunner().invoke(main, ["compile", str(model), *extra, "--no-inplace", "-o", str(out)])
            assert r.exit_code == 0, r.output
            outs.append(_files(out))
        assert outs[0] == outs[1]
        assert len(outs[0]) >= 5
    # a different option changes the recorded options (and only what it should)
    r = CliRunner().invoke(main, ["compile", str(path), "--plan", "smallest", "-o", str(tmp_path / "inplace")])
    assert r.exit_code == 0, r.output
    assert _files(tmp_path / "inplace")["model.h"] != _files(tmp_path / "model-0")["model.h"]


def test_header_records_version_sha256_and_options(tmp_path):
    path = _tflite(tmp_path)
    api.compile(api.load(path, rounding="single"), tmp_path / "lib", board="mps3-an547", rounding="single", inplace=False)
    header = (tmp_path / "lib" / "model.h").read_text()
    digest = file_sha256(path)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert f'#define MODEL_MODEL_SHA256 "{digest}"' in header
    assert f'#define MODEL_GENERATOR_VERSION "{mcuqp_version()}"' in header and mcuqp_version() != "unknown"
    assert f"from model.tflite (sha256 {digest})" in header
    prov = read_provenance(tmp_path / "lib")
    assert prov.model_sha256 == digest
    assert prov.options["board"] == "mps3-an547" and prov.options["rounding"] == "single"
    assert prov.options["plan"] == "fastest" and prov.options["stack"] == "16384"


@pytest.mark.qemu
def test_verify_sources_passes_then_catches_one_changed_weight(tmp_path):
    path = _tflite(tmp_path)
    lib = tmp_path / "lib"
    assert CliRunner().invoke(main, ["compile", str(path), "-o", str(lib)]).exit_code == 0
    args = ["verify", str(path), "--sources", str(lib), "--inputs", "20", "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["bit_exact"] is True

    # One weight of the fully connected layer, +100 (wrapped to int8), in the generated C.
    c = (lib / "model.c").read_text()
    m = re.search(r"static const int8_t (l\d+_weights)\[640\][^{]*\{\s*(-?\d+),", c)
    assert m, "no 10x64 weight array in model.c"
    old = int(m.group(2))
    new = (old + 100 + 128) % 256 - 128
    (lib / "model.c").write_text(c[:m.start(2)] + str(new) + c[m.end(2):])
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["bit_exact"] is False and 0 < out["mismatches"] <= 20 and out["compared"] == 20

    r = CliRunner().invoke(main, args[:-1])  # the text report names the count
    assert r.exit_code == 1 and f"MISMATCH: {out['mismatches']} of 20 outputs differ" in r.output


def test_verify_sources_refuses_a_folder_of_another_model(tmp_path):
    path = _tflite(tmp_path)
    api.compile(api.load(path), tmp_path / "lib")
    other = tmp_path / "other.tflite"
    other.write_bytes(path.read_bytes() + b"\0")  # same graph, another file: another sha256
    r = CliRunner().invoke(main, ["verify", str(other), "--sources", str(tmp_path / "lib")])
    assert r.exit_code == 2
    assert "generated from another model" in r.output and len(r.output.strip().splitlines()) == 1
    np.testing.assert_equal(read_provenance(tmp_path / "lib").model_sha256, file_sha256(path))
