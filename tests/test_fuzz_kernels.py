"""Every C kernel, fuzzed with hypothesis under AddressSanitizer + UndefinedBehaviorSanitizer
against its numpy twin (tests/fuzz_kernels.py, run in two processes with the ASan runtime
preloaded): at least 10,000 cases per run, 0 mismatches, 0 sanitizer reports. The canaries
prove that a sanitizer report does fail the run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import prereq

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "fuzz_kernels.py"
MIN_CASES = 10_000
SHARDS = 2  # the CI machine has two cores
REPORTS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "UndefinedBehaviorSanitizer")


def _env() -> dict[str, str]:
    prereq.require_tools("gcc")
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not Path(libasan).is_file():
        prereq.missing("gcc's AddressSanitizer runtime (libasan) is not installed (apt-get install libasan8)")
    env = dict(os.environ)
    env.update(LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kind", ["asan", "ubsan"])
def test_a_sanitizer_report_fails_the_run(kind):
    p = _spawn(["--canary", kind], _env())
    out, err = p.communicate(timeout=300)
    assert p.returncode != 0 and "canary survived" not in out, (out, err[-2000:])
    assert ("heap-buffer-overflow" if kind == "asan" else "signed integer overflow") in err, err[-2000:]


@pytest.mark.slow
def test_kernels_fuzzed_under_sanitizers():
    env = _env()
    procs = [_spawn(["--shard", f"{i}/{SHARDS}"], env) for i in range(SHARDS)]
    counts: dict[str, int] = {}
    for p in procs:
        out, err = p.communicate(timeout=900)
        tail = err[-6000:]
        assert p.returncode == 0, f"fuzzing failed (exit {p.returncode}):\n{tail}"
        assert not any(r in err for r in REPORTS), f"sanitizer report:\n{tail}"
        counts.update(json.loads(out.strip().splitlines()[-1])["kernels"])
    total = sum(counts.values())
    print(f"\nfuzzed {total:,} kernel cases under ASan+UBSan, 0 mismatches, 0 sanitizer reports "
          f"({len(counts)} kernel/rounding/variant combinations)")
    assert total >= MIN_CASES, counts
    kernels = {k.split("[")[0].removeprefix("dsp/") for k in counts}
    c_kernels = {p.stem for p in (ROOT / "runtime_c" / "src").glob("*.c")}
    assert c_kernels <= kernels, f"kernels never fuzzed: {sorted(c_kernels - kernels)}"
    assert {k for k in counts if k.startswith("dsp/")}, "the DSP variants were not fuzzed"
