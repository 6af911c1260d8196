"""`mcuqp search` (Optuna study over compression choices, budgets as constraints), real boards
and their QEMU stand-ins, and the CMake firmware folder `compile` writes.

The search tests use a tiny DigitsCNN trained for a few epochs, one or two trials and no or
one fine-tuning epoch: they check the machinery (budgets, resume, workers, storages), not
the accuracy, which benchmarks/search.py measures.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([PYTHON, "-m", "mcuqp.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory) -> Path:
    import torch

    from mcuqp.compress.train import FitConfig, fit
    from mcuqp.datasets import load_dataset
    from mcuqp.models import DigitsCNN

    d = load_dataset("digits")
    torch.manual_seed(0)
    model = fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=3, lr=3e-3, seed=0))
    path = tmp_path_factory.mktemp("search") / "digits.pt"
    torch.save(model, path)
    return path


def _options(model: Path, out: Path, **kw):
    from mcuqp.search.study import SearchOptions

    base = dict(model=str(model), dataset="digits", board="mps2-an386", out_dir=str(out), flash_bytes=60_000,
                ram_bytes=60_000, trials=1, epochs=0, progress=False)
    return SearchOptions(**{**base, **kw})


def _study(opts):
    import optuna

    from mcuqp.search.study import open_storage

    return optuna.load_study(study_name=opts.study, storage=open_storage(opts.storage_url))


def _states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# --- boards -----------------------------------------------------------------------------------

def test_boards_lists_real_boards_with_their_stand_in():
    r = _cli("boards")
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()}
    expected = {"nucleo-l4r5zi": "mps2-an386", "stm32f746g-disco": "mps2-an500", "nrf52840-dk": "mps2-an386",
                "nucleo-u575zi-q": "mps2-an505", "corstone300-an552": "mps3-an547", "rpi-pico": "mps2-an385"}
    for board, stand_in in expected.items():
        assert f"stand-in {stand_in}" in lines[board]
    assert "QEMU mps2-an386" in lines["mps2-an386"]


def test_real_board_links_at_its_stand_ins_addresses():
    from mcuqp.target.boards import load_board

    pico = load_board("rpi-pico")
    assert (pico.cpu, pico.flash_origin, pico.flash_size, pico.ram_size) == ("cortex-m0plus", 0x10000000, 2 << 20, 264 << 10)
    emulated = pico.emulated()
    assert (emulated.flash_origin, emulated.ram_origin, emulated.qemu_machine) == (0x0, 0x20000000, "mps2-an385")
    assert emulated.cpu == "cortex-m0plus" and emulated.flash_size == pico.flash_size
    u5 = load_board("nucleo-u575zi-q")
    assert u5.emulated().flash_origin == 0x10000000 and u5.flash_origin == 0x08000000


def test_board_file_whose_memories_exceed_its_stand_in_is_refused(tmp_path):
    from mcuqp.errors import McuqpError
    from mcuqp.target.boards import load_board

    src = (ROOT / "boards" / "corstone300-an552.toml").read_text()
    p = tmp_path / "big.toml"
    p.write_text(src.replace('name = "corstone300-an552"', 'name = "big"').replace("size = 0x00080000", "size = 0x01000000"))
    with pytest.raises(McuqpError, match="exceed those of its stand-in mps3-an547"):
        load_board(str(p))


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["rpi-pico", "nucleo-u575zi-q"])
def test_real_board_verifies_bit_exact_on_its_stand_in(digits_model, board):
    from mcuqp import api

    res = api.verify(api.load(digits_model, calib="digits"), board=board, n_inputs=5)
    assert res.bit_exact and res.board == board and res.instructions_per_inference > 0


# --- the CMake firmware folder ----------------------------------------------------------------

@pytest.mark.qemu
@pytest.mark.parametrize("board", ["nucleo-l4r5zi", "rpi-pico"])
def test_compile_folder_builds_with_cmake_and_runs_on_the_stand_in(digits_model, tmp_path, board):
    from mcuqp.target.boards import load_board

    cmake = shutil.which("cmake")
    if cmake is None:
        if os.environ.get("CI"):
            pytest.fail("cmake is missing (apt-get install cmake; `make toolchain` installs it)")
        pytest.skip("cmake not installed")
    out = tmp_path / "fw"
    r = _cli("compile", str(digits_model), "--calib", "digits", "--board", board, "-o", str(out))
    assert r.returncode == 0, r.stderr
    b = load_board(board)
    readme = (out / "README.md").read_text()
    assert f"-mcpu={b.cpu}" in readme and "arena" in readme and "stack of `digits_invoke`" in readme
    build = tmp_path / "build"
    from mcuqp.target.build import WARNINGS

    env = {**os.environ, "CFLAGS": " ".join(WARNINGS)}  # the warnings mcuqp's own builds use
    for cmd in ([cmake, "-S", str(out), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={out / 'arm-none-eabi.cmake'}",
                 "-DMCUQP_EXAMPLE=ON"], [cmake, "--build", str(build)]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    lib = next(build.glob("libmcuqp_*.a"))
    assert lib.stat().st_size > 0
    elf = build / "mcuqp_example.elf"
    r = subprocess.run(["qemu-system-arm", "-machine", b.qemu_machine, "-nographic", "-semihosting-config",
                        "enable=on,target=native", "-kernel", str(elf)], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"example exited with {r.returncode}: {r.stdout} {r.stderr}"
    # The check in main.c can fail: a corrupted expected output makes the example return 2.
    io_h = out / "example_io.h"
    text = io_h.read_text()
    head, sep, tail = text.partition("mcuqp_example_expected[DIGITS_OUTPUT_SIZE] = {\n    ")
    first, rest = tail.split(",", 1)
    io_h.write_text(head + sep + str(-128 if int(first) != -128 else 127) + "," + rest)
    subprocess.run([cmake, "--build", str(build)], check=True, capture_output=True, env=env)
    r = subprocess.run(["qemu-system-arm", "-machine", b.qemu_machine, "-nographic", "-semihosting-config",
                        "enable=on,target=native", "-kernel", str(elf)], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2


# --- search -----------------------------------------------------------------------------------

@pytest.mark.qemu
@pytest.mark.slow
def test_infeasible_budget_exits_2_with_one_line(digits_model, tmp_path):
    out = tmp_path / "out"
    r = _cli("search", str(digits_model), "--data", "digits", "--flash", "4000", "--ram", "4000", "--trials", "1",
             "--epochs", "0", "-o", str(out))
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("mcuqp: error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr and r.stdout == ""
    assert "no model fits flash 4,000 B, RAM 4,000 B" in errors[0] and "the smallest seen takes flash" in errors[0]
    summary = json.loads((out / "search.json").read_text())
    assert summary["best"] is None and len(summary["trials"]) == 1 and not summary["trials"][0]["feasible"]
    t = summary["trials"][0]
    # Measured after linking and reported as measured: never clipped to the budget.
    assert t["flash_bytes"] > 4000 and t["measured"] and t["instructions_per_inference"] > 0
    assert f"flash {t['flash_bytes']:,} B" in errors[0]
    assert not (out / "best.pt").exists() and not (out / "firmware").exists()


def test_bad_input_is_one_line(digits_model, tmp_path):
    r = _cli("search", str(tmp_path / "missing.pt"), "--data", "digits", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "give an existing float model" in r.stderr
    r = _cli("search", str(digits_model), "--data", "digits", "--flash", str(1 << 30), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "exceeds mps2-an386" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.qemu
@pytest.mark.slow
def test_search_writes_outputs_and_resumes_from_the_study_file(digits_model, tmp_path):
    from mcuqp import api
    from mcuqp.errors import McuqpError
    from mcuqp.search.run import search

    out = tmp_path / "out"
    first = search(_options(digits_model, out, trials=1)).summary
    assert [t["number"] for t in first["trials"]] == [0]
    for name in ("study.db", "search.json", "pareto.png", "best.pt", "firmware/digits.c", "firmware/CMakeLists.txt",
                 "firmware/verification.json"):
        assert (out / name).exists(), name
    best = first["best"]
    assert best["feasible"] and best["firmware"]["bit_exact"] and best["firmware"]["flash_bytes"] <= 60_000
    assert set(first["trials"][0]) >= {"params", "accuracy", "flash_bytes", "ram_bytes",
                                       "instructions_per_inference", "feasible"}
    # best.pt is what compile / verify take with --calib.
    res = api.verify(api.load(out / "best.pt", calib="digits"), n_inputs=3)
    assert res.bit_exact

    second = search(_options(digits_model, out, trials=2)).summary
    assert [t["number"] for t in second["trials"]] == [0, 1]
    assert second["trials"][0] == first["trials"][0]  # resumed, not rerun
    states = _states(_study(_options(digits_model, out)))
    assert states["COMPLETE"] == 2 and "RUNNING" not in states  # (the third uniform trial still waits)

    with pytest.raises(McuqpError, match="was run with other settings: flash_bytes 60000 \\(now 50000\\)"):
        search(_options(digits_model, out, trials=3, flash_bytes=50_000))


@pytest.mark.qemu
@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(digits_model, tmp_path):
    from mcuqp.search.run import search

    opts = _options(digits_model, tmp_path / "out", trials=2, workers=2)
    summary = search(opts).summary
    assert len(summary["trials"]) == 2
    study = _study(opts)
    assert _states(study).get("COMPLETE") == 2
    assert {t.user_attrs["worker"] for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"} == {0, 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on a loopback port, run as the `postgres` user."""
    missing = not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None or os.geteuid() != 0
    if missing:
        why = "PostgreSQL 15 (Debian postgresql) and root (to run it as the postgres user) are needed"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    pytest.importorskip("psycopg") if not os.environ.get("CI") else __import__("psycopg")
    data = Path(tempfile.mkdtemp(prefix="mcuqp-pg-"))
    shutil.chown(data, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    pgdata = data / "db"
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-o", opts, "-l", str(data / "log"), "-w",
                    "start"], check=True, capture_output=True, timeout=60)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.qemu
@pytest.mark.slow
def test_two_processes_join_one_postgresql_study(digits_model, tmp_path, postgres_url):
    """Two `mcuqp search` processes (as on two machines: separate output folders) share a study."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["search", str(digits_model), "--data", "digits", "--flash", "60000", "--ram", "60000", "--trials", "2",
            "--epochs", "0", "--storage", postgres_url, "--study", "shared", "--json"]
    procs = []
    for name in ("a", "b"):
        procs.append(subprocess.Popen([PYTHON, "-m", "mcuqp.cli", *args, "-o", str(tmp_path / name)], env=env,
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(10)  # the first process creates the study; the second joins it
    results = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    summaries = [json.loads(out) for out, _ in results]
    for s in summaries:
        assert [t["number"] for t in s["trials"]] == [0, 1]
        assert s["storage"].startswith("postgresql://postgres@127.0.0.1") and s["best"]["firmware"]["bit_exact"]
    import optuna

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    assert len(done) == 2
    # Every trial ran once, in one of the two processes (which one depends on timing); the
    # other process summarised the shared study, retraining the best model if it ran elsewhere.
    assert sum(len(list((tmp_path / n / "trials").glob("*.pt"))) for n in ("a", "b")) == 2
    assert all((tmp_path / n / "best.pt").is_file() for n in ("a", "b"))


@pytest.mark.qemu
def test_low_bit_trial_measures_less_flash_than_its_int8_twin():
    """The formats a trial trains are the formats its firmware stores: the same network with
    every layer int4, or ternary between int4 ends, links smaller than in int8 (measured after
    linking on QEMU). MnistStridedCNN (31k weights): on a network of a few thousand weights
    the packed kernels' code outweighs what they save. Weight values do not change sizes, so
    the network is not trained."""
    import torch

    from mcuqp import api
    from mcuqp.models import MnistStridedCNN
    from mcuqp.search.space import Config, Space
    from mcuqp.search.study import search_data
    from mcuqp.search.trial import lowbit_formats, measure, train

    torch.manual_seed(0)
    module = MnistStridedCNN()
    data = search_data("mnist5k")
    space = Space.of(module, torch.as_tensor(data.x_train[:1], dtype=torch.float32))
    ends = (space.layers[0], space.layers[-1])
    flash = {}
    for fmt, end in (("int8", "int8"), ("int4", "int4"), ("ternary", "int4")):
        want = {n: end if n in ends else fmt for n in space.layers}
        config = Config(want, {n: 0.0 for n in space.layers}, {k: 0.5 for k in space.channel_spaces})
        trained = train(module, config, data, epochs=0, seed=0)
        stored = lowbit_formats(api.load(trained, calib="mnist5k").graph)
        assert sorted(stored.values()) == sorted(f for f in want.values() if f != "int8"), stored
        m = measure(trained, config, data, "mnist5k", "mps2-an386")
        assert m.measured and m.bit_exact
        flash[fmt] = m.flash_bytes
    assert flash["ternary"] < flash["int4"] < flash["int8"], flash
