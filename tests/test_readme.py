"""Every command the README shows runs, in README order, in one scratch folder.

The ```sh and ```python blocks are extracted and executed with `mcuqp` and `python` bound to
this checkout. `model.tflite`, which the README takes as the user's own file, is a small
conv -> reshape -> fully connected -> softmax model written here. `make` lines install
toolchains and rerun this suite, so they are checked with `make -n` (the target exists and
its recipe expands) instead of being run. The five-minute tour is timed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tflite_builder import ModelBuilder

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TOUR = "## A five-minute tour"
TOUR_LIMIT_S = 300


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(section heading, language, code) of every ```sh and ```python block."""
    out: list[tuple[str, str, str]] = []
    section, lang, code = "", None, []
    for line in text.splitlines():
        if lang is None and line.startswith("```"):
            lang, code = line[3:].strip(), []
        elif lang is not None and line.startswith("```"):
            if lang in ("sh", "python"):
                out.append((section, lang, "\n".join(code) + "\n"))
            lang = None
        elif lang is not None:
            code.append(line)
        elif re.match(r"#{2,3} ", line):
            section = line.strip()
    return out


def _model_tflite(path: Path) -> Path:
    rng = np.random.default_rng(3)
    b = ModelBuilder()
    x = b.add_input("x", (1, 8, 8, 1), scale=1 / 255, zero_point=-128)
    wscale = rng.uniform(0.005, 0.02, 4).astype(np.float32)
    w = b.add_constant("conv_w", rng.integers(-127, 128, (4, 3, 3, 1)).astype(np.int8), scale=wscale)
    bias = b.add_constant("conv_b", rng.integers(-500, 500, 4).astype(np.int32), scale=np.float32(1 / 255) * wscale)
    c = b.add_tensor("conv", (1, 8, 8, 4), scale=0.02, zero_point=-128)
    b.add_operator("CONV_2D", [x, w, bias], [c], {"padding": "SAME", "stride_w": 1, "stride_h": 1,
                                                  "fused_activation_function": "RELU"})
    shape = b.add_constant("shape", np.array([1, 256], np.int32))
    f = b.add_tensor("flat", (1, 256), scale=0.02, zero_point=-128)
    b.add_operator("RESHAPE", [c, shape], [f], {"new_shape": [1, 256]})
    fw = b.add_constant("fc_w", rng.integers(-127, 128, (10, 256)).astype(np.int8), scale=np.float32(0.01))
    fb = b.add_constant("fc_b", rng.integers(-500, 500, 10).astype(np.int32), scale=np.float32(0.02 * 0.01))
    logits = b.add_tensor("logits", (1, 10), scale=0.25, zero_point=0)
    b.add_operator("FULLY_CONNECTED", [f, fw, fb], [logits], {"fused_activation_function": "NONE"})
    y = b.add_tensor("probs", (1, 10), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [logits], [y], {"beta": 1.0})
    b.mark_output(y)
    path.write_bytes(b.build())
    return path


def _shims(bindir: Path) -> None:
    """`mcuqp` and `python` as the README means them: this checkout on the test's interpreter."""
    bindir.mkdir()
    for name, args in (("mcuqp", '-m mcuqp.cli "$@"'), ("python", '"$@"')):
        p = bindir / name
        p.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args}\n')
        p.chmod(0o755)


def _make_dry_run(code: str) -> str:
    """`make TARGET ...` lines become `make -n -C REPO TARGET ...`."""
    return re.sub(r"(?m)^make ", f"make -n -C '{REPO}' ", code)


def test_readme_blocks_are_found_and_captions_are_not_repeated():
    text = README.read_text()
    found = blocks(text)
    sections = {s for s, _, _ in found}
    assert {"## Install", "## The two commands", TOUR, "## Python API", "## Command line"} <= sections
    tour = "\n".join(code for s, _, code in found if s == TOUR)
    for step in ("mcuqp compress", "mcuqp compile", "mcuqp verify", "mcuqp report"):
        assert step in tour
    assert text.count("Bytes. RAM =") == 1
    assert "shared/" not in text and "../" not in text, "the README refers to files outside the repository"


@pytest.mark.slow
@pytest.mark.qemu
def test_every_readme_command_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _model_tflite(work / "model.tflite")
    _shims(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    tour_seconds = 0.0
    for section, lang, code in blocks(README.read_text()):
        if lang == "sh":
            cmd = ["bash", "-euo", "pipefail", "-c", _make_dry_run(code)]
        else:
            cmd = [sys.executable, "-c", code]
        start = time.monotonic()
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        if section == TOUR:
            tour_seconds += time.monotonic() - start
        assert r.returncode == 0, f"README block in {section!r} failed:\n{code}\n--- stdout\n{r.stdout[-3000:]}" \
                                  f"\n--- stderr\n{r.stderr[-3000:]}"
    for made in ("net.pt", "small.pt", "out/net.c", "kws/kws.c", "kws/kws.h", "report.html", "io/io.json", "arena.png",
                 "model.html", "small4.pt", "small.tflite", "small4.tflite"):
        assert (work / made).exists(), made
    assert "BIT-EXACT" in (work / "report.html").read_text()
    assert tour_seconds < TOUR_LIMIT_S, f"the five-minute tour took {tour_seconds:.0f} s"
