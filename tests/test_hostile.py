"""Hostile inputs (tests/hostile/corpus.py) through the real command line: every case exits
with status 2, prints exactly one line on stderr naming the problem, never a traceback, and
leaves nothing behind in its folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostile.corpus import CASES, Case

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # s per case; the QEMU cases pass their own, much shorter, guest timeout


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    e.pop("CI", None)  # the CLI does not care; keeps the subprocess identical locally and in CI
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "mcuqp.cli", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=TIMEOUT)


def _tree(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*")}


def _params() -> list:
    return [pytest.param(c, id=c.name, marks=[pytest.mark.qemu] if c.qemu else []) for c in CASES]


def test_corpus_is_large_and_named_uniquely():
    names = [c.name for c in CASES]
    assert len(names) >= 50 and len(set(names)) == len(names)


@pytest.mark.slow
@pytest.mark.parametrize("case", _params())
def test_hostile_input_one_line_exit_2(case: Case, tmp_path: Path):
    args = case.setup(tmp_path)
    before = _tree(tmp_path)
    r = run_cli(args, tmp_path, case.env)
    lines = r.stderr.strip().splitlines()
    detail = f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr + r.stdout, detail
    assert r.returncode == 2, detail
    assert len(lines) == 1 and lines[0].startswith("mcuqp: error: "), detail
    assert case.expect.lower() in lines[0].lower(), detail
    assert _tree(tmp_path) == before, "the failed command left files behind"


def test_fault_report_names_the_fault_pc_and_layer(tmp_path: Path):
    """The one-line report of a guest fault, from the guest's console line and the markers the
    instruction-count plugin wrote before it (here: inference 1 stopped inside layer 2)."""
    from mcuqp.target import qemu

    profile = tmp_path / "profile.txt"
    profile.write_text("b 10\nm 20\nm 30\nm 40\ne 50\nb 60\nm 70\nm 80\n")
    where = qemu._where(profile, ["conv", "pool", "fc"])
    assert where == "in layer 2 (fc) of inference 1"
    console = "mcuqp-guest: HardFault pc=0x00001234 lr=0xfffffff9 cfsr=0x00000000 hfsr=0x40000000\n"
    msg = qemu._fault_message(11, console, tmp_path / "missing.elf", "mps2-an386", where)
    assert msg.startswith("firmware failed on mps2-an386 with exit code 11 (HardFault): HardFault pc=0x00001234 ")
    assert msg.count("in layer 2 (fc) of inference 1") == 1 and "\n" not in msg
    assert qemu._symbolize([(0x1000, "mcuqp_fc"), (0x2000, "main")], 0x1235) == "mcuqp_fc+0x234"
    profile.write_text("b 10\nm 20\ne 30\n")
    assert qemu._where(profile, ["conv"]) == "outside the model, after 1 inferences"
