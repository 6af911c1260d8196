"""The default plan (`--plan auto`): the fastest plan when it fits the RAM budget, the smallest
only when the fastest does not fit or when asked; `--inplace` / `--no-inplace` stay aliases."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mcuqp import api
from mcuqp.cli import main
from mcuqp.codegen.provenance import read_provenance
from mcuqp.errors import McuqpError
from mcuqp.frontends.tflite import load_tflite
from mcuqp.plan.choice import choose_plan, plan_of_kind, resolve_mode
import prereq

BOARD = "mps2-an386"


@pytest.fixture(scope="module")
def kws():
    return prereq.shared_model("mlperf_tiny/kws_ref_model.tflite")


def test_resolve_mode_and_the_older_flag():
    assert resolve_mode("auto") == "auto" and resolve_mode("fastest") == "fastest"
    assert resolve_mode("auto", inplace=True) == "smallest" and resolve_mode("smallest", inplace=False) == "fastest"
    with pytest.raises(McuqpError, match="unknown plan 'tiny'"):
        resolve_mode("tiny")


def test_auto_takes_the_fastest_unless_it_does_not_fit(kws):
    g = load_tflite(kws)
    fastest, smallest = plan_of_kind(g, "fastest"), plan_of_kind(g, "smallest")
    assert not fastest.inplace_conv and not fastest.inplace_depthwise
    assert smallest.inplace_conv and smallest.arena_bytes < fastest.arena_bytes
    seen = []

    def fits(kind, p):
        seen.append(kind)
        return p.arena_bytes <= budget

    budget = fastest.arena_bytes
    kind, p = choose_plan(g, "auto", fits)
    assert (kind, p.arena_bytes, seen) == ("fastest", fastest.arena_bytes, ["fastest"])
    budget = fastest.arena_bytes - 1
    kind, p = choose_plan(g, "auto", fits)
    assert (kind, p.arena_bytes) == ("smallest", smallest.arena_bytes)
    # forced plans never ask
    seen.clear()
    assert choose_plan(g, "smallest", fits)[0] == "smallest" and choose_plan(g, "fastest", fits)[0] == "fastest"
    assert seen == []


def test_plan_command_ram_budget_forces_the_smallest(kws):
    g = load_tflite(kws)
    fastest = plan_of_kind(g, "fastest").arena_bytes
    stack = 4096

    def run(*extra):
        r = CliRunner().invoke(main, ["plan", str(kws), "--board", BOARD, "--json", "--stack", str(stack), *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    assert run()["plan"] == "fastest"  # the board's 4 MiB
    assert run("--ram", str(fastest + stack))["plan"] == "fastest"
    small = run("--ram", str(fastest + stack - 1))
    assert small["plan"] == "smallest" and small["arena_bytes"] < fastest
    assert run("--plan", "smallest")["plan"] == "smallest" and run("--inplace")["plan"] == "smallest"
    assert run("--no-inplace", "--ram", "1000")["plan"] == "fastest"


def test_compile_auto_uses_the_linked_ram_and_records_the_choice(kws, tmp_path):
    prereq.require_tools("arm-none-eabi-gcc")
    loaded = api.load(kws)
    fast = api.compile(loaded, tmp_path / "fast", board=BOARD, project=False)
    assert fast.plan_kind == "fastest" and read_provenance(tmp_path / "fast").options["plan"] == "fastest"
    linked = fast.footprint.linked_ram_bytes
    # one byte less than the fastest plan's linked RAM: auto falls back to the smallest plan
    small = api.compile(loaded, tmp_path / "small", board=BOARD, ram_bytes=linked - 1, project=False)
    assert small.plan_kind == "smallest" and small.arena_bytes < fast.arena_bytes
    assert small.footprint.linked_ram_bytes <= linked - 1
    assert read_provenance(tmp_path / "small").options["plan"] == "smallest"
    assert "mcuqp_conv2d_1x1_s8_inplace(" in (tmp_path / "small" / f"{small.name}.c").read_text()
    assert "mcuqp_conv2d_1x1_s8_inplace(" not in (tmp_path / "fast" / f"{fast.name}.c").read_text()
    # asking for the fastest plan under the same budget is refused with the real figures
    r = CliRunner().invoke(main, ["compile", str(kws), "--board", BOARD, "--plan", "fastest",
                                  "--ram", str(linked - 1), "-o", str(tmp_path / "refused")])
    assert r.exit_code == 2 and "over the" in r.output and "--ram" in r.output
    assert not (tmp_path / "refused").exists()
