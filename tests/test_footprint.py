"""Footprint prediction (before the build) against what the build and QEMU measure, and
budget checks (one-line BudgetError naming the overrun and the largest layers)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mcuqp import api
from mcuqp.compress.train import FitConfig, fit
from mcuqp.datasets import load_dataset
from mcuqp.errors import BudgetError
from mcuqp.models import DigitsCNN
from mcuqp.api import predict_footprint
from mcuqp.target.footprint import Footprint, LayerFlash, check_budget
from mcuqp.target.boards import load_board
from mcuqp.target.build import build_firmware, platform_include_dirs, platform_sources, verify_defines
import prereq

FLASH_TOLERANCE = 0.02  # the targets: predicted flash within 2 %, RAM within 5 %
RAM_TOLERANCE = 0.05

needs_gcc = pytest.mark.tools("arm-none-eabi-gcc")  # prediction compiles the sources for the board


def _shared(rel: str) -> Path:
    return prereq.shared_model(rel)


@pytest.fixture(scope="module")
def digits_cnn():
    d = load_dataset("digits")
    model = fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=2, lr=3e-3, seed=0))
    return api.load(model, calib="digits")


def _predict(loaded, board: str, tmp_path: Path, **kw) -> tuple[Footprint, api.CompileResult]:
    lib = api.compile(loaded, tmp_path / f"lib-{board}", board=board)
    return predict_footprint(loaded.graph, lib.plan, lib.generated, board, **kw), lib


def _assert_close(fp: Footprint, res: api.VerifyResult) -> None:
    flash_err = abs(fp.flash_bytes - res.flash_bytes) / res.flash_bytes
    ram_err = abs(fp.ram_bytes - res.ram_bytes) / res.ram_bytes
    detail = (f"flash {fp.flash_bytes} predicted / {res.flash_bytes} measured, RAM {fp.ram_bytes} / "
              f"{res.ram_bytes} (stack {fp.stack_bytes} / {res.stack_bytes})")
    assert flash_err <= FLASH_TOLERANCE, detail
    assert ram_err <= RAM_TOLERANCE, detail
    assert fp.stack_bytes >= res.stack_bytes, f"the call-graph stack bound is below the measured high-water: {detail}"
    assert fp.arena_bytes == res.arena_bytes


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_digits_cnn_prediction_matches_verify(digits_cnn, board, tmp_path):
    fp, _ = _predict(digits_cnn, board, tmp_path)
    _assert_close(fp, api.verify(digits_cnn, board=board, n_inputs=3))


@pytest.mark.qemu
@pytest.mark.parametrize("rel,board", [
    ("fixtures/digits_int8.tflite", "mps2-an386"),
    ("mlperf_tiny/kws_ref_model.tflite", "mps3-an547"),
])
def test_tflite_prediction_matches_verify(rel, board, tmp_path):
    loaded = api.load(_shared(rel), n_random=2)
    fp, _ = _predict(loaded, board, tmp_path)
    _assert_close(fp, api.verify(loaded, board=board, n_inputs=2))


@needs_gcc
def test_breakdown_adds_up_and_layers_carry_the_constants(digits_cnn, tmp_path):
    fp, lib = _predict(digits_cnn, "mps2-an386", tmp_path)
    board = load_board("mps2-an386")
    fw = build_firmware([f for f in lib.files if f.suffix == ".c"] + platform_sources(board),
                        [lib.out_dir, *platform_include_dirs()], board, tmp_path / "build",
                        defines=["MCUQP_PROFILE", *verify_defines(lib.name)])
    # The prediction is the real link: its sections equal the built image's, byte for byte.
    assert (fp.text, fp.rodata, fp.data, fp.bss) == (fw.text, fw.rodata, fw.data, fw.bss)
    # flash.alignment is the remainder of the attributed parts: it must stay padding-sized
    # (at most 1 % of the image; 14 to 66 B on the digits models).
    assert 0 <= fp.breakdown["flash.alignment"] <= fp.flash_bytes // 100, fp.breakdown
    assert fp.breakdown["ram.other_bss"] == fw.bss - lib.plan.arena_bytes >= 0
    assert all(v >= 0 for v in fp.breakdown.values())
    # Weights and biases are the model's constant tensors, byte for byte (each array padded to 4).
    const_bytes = sum(-(-t.nbytes // 4) * 4 for t in digits_cnn.graph.tensors.values() if t.is_const)
    assert fp.breakdown["flash.weights"] == sum(la.weight_bytes for la in fp.layers) == const_bytes
    assert sum(la.param_bytes for la in fp.layers) == fp.breakdown["flash.params"]
    assert {la.name for la in fp.layers} <= {op.name for op in digits_cnn.graph.ops}
    assert fp.breakdown["ram.arena"] == lib.plan.arena_bytes
    assert fp.stack_path[:3] == ["Reset_Handler", "main", "model_invoke"]


@needs_gcc
def test_library_footprint_is_the_model_alone(digits_cnn, tmp_path):
    full, _ = _predict(digits_cnn, "mps2-an386", tmp_path)
    lib, _ = _predict(digits_cnn, "mps2-an386", tmp_path, firmware="library")
    assert lib.breakdown["flash.platform"] == 0 and lib.breakdown["ram.other_bss"] == 0
    assert lib.breakdown["flash.weights"] == full.breakdown["flash.weights"]
    assert lib.flash_bytes < full.flash_bytes and lib.bss == lib.arena_bytes
    assert lib.stack_path[0] == "model_invoke" and lib.stack_bytes < full.stack_bytes


@needs_gcc
def test_linked_spans_are_the_smallest_budgets_the_linker_accepts(tmp_path):
    """Budgets equal to the predicted region spans link; 8 bytes less overflows by exactly 8."""
    loaded = api.load(_shared("fixtures/digits_int8.tflite"), n_random=2)
    board = load_board("mps2-an386")
    fp, lib = _predict(loaded, board.name, tmp_path, stack_bytes_reserved=2048)
    srcs = [f for f in lib.files if f.suffix == ".c"] + platform_sources(board)

    def link(**budget) -> None:
        build_firmware(srcs, [lib.out_dir, *platform_include_dirs()], board, tmp_path / "build",
                       defines=["MCUQP_PROFILE", *verify_defines(lib.name)], stack_bytes=2048, **budget)

    link(flash_bytes=fp.linked_flash_bytes, ram_bytes=fp.linked_ram_bytes)
    with pytest.raises(BudgetError, match="FLASH overflowed by 8 bytes"):
        link(flash_bytes=fp.linked_flash_bytes - 8)
    with pytest.raises(BudgetError, match="RAM overflowed by 8 bytes"):
        link(ram_bytes=fp.linked_ram_bytes - 8)
    check_budget(fp, board, flash_bytes=fp.linked_flash_bytes, ram_bytes=fp.linked_ram_bytes)


@needs_gcc
def test_check_budget_names_the_overrun_and_the_largest_layers(digits_cnn, tmp_path):
    fp, _ = _predict(digits_cnn, "mps2-an386", tmp_path)
    check_budget(fp, "mps2-an386")  # the board's 4 MiB memories
    budget = fp.linked_flash_bytes - 1000
    with pytest.raises(BudgetError) as e:
        check_budget(fp, "mps2-an386", flash_bytes=budget)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"needs {fp.linked_flash_bytes:,} B of flash, 1,000 B over the {budget:,} B budget (--flash)" in msg
    top = fp.largest_layers(3)
    assert top[0].total_bytes >= top[1].total_bytes >= top[2].total_bytes
    assert f"largest layers: {top[0].name} {top[0].total_bytes:,} B, {top[1].name}" in msg

    with pytest.raises(BudgetError, match=r"B of RAM, 1 B over the .* \(--ram\); largest: arena"):
        check_budget(fp, "mps2-an386", ram_bytes=fp.linked_ram_bytes - 1)


def _footprint(**kw) -> Footprint:
    base = dict(
        board="mps2-an386", firmware="verify", flash_bytes=312_000, ram_bytes=60_000, stack_bytes=600, text=20_000,
        rodata=291_796, data=204, bss=59_196, arena_bytes=55_296, stack_reserved_bytes=16_384,
        linked_flash_bytes=312_400, linked_ram_bytes=75_800, breakdown={},
        layers=[LayerFlash(0, "conv_1", "conv2d", 4_000, 300), LayerFlash(3, "conv_3", "conv2d", 117_000, 1_000),
                LayerFlash(5, "fc_1", "fully_connected", 63_000, 1_000), LayerFlash(7, "fc_2", "fully_connected", 640, 60)],
        arena_peak="conv_2: 2 live tensors, 55,296 B",
    )
    return Footprint(**{**base, **kw})


def test_check_budget_message_without_toolchain():
    fp = _footprint()
    with pytest.raises(BudgetError) as e:
        check_budget(fp, "mps2-an386", flash_bytes=300_000)
    assert str(e.value).startswith(
        "model needs 312,400 B of flash, 12,400 B over the 300,000 B budget (--flash); "
        "largest layers: conv_3 118,000 B, fc_1 64,000 B, conv_1 4,300 B")
    with pytest.raises(BudgetError, match="75,800 B of RAM, 11,800 B over the 64,000 B budget"):
        check_budget(fp, "mps2-an386", ram_bytes=64_000)
    check_budget(fp, "mps2-an386", flash_bytes=312_400, ram_bytes=75_800)  # exactly fits


def test_check_budget_refuses_a_stack_reserve_below_the_bound():
    fp = _footprint(stack_bytes=20_000, stack_path=["Reset_Handler", "main", "model_invoke", "deep"])
    with pytest.raises(BudgetError, match="20,000 B of stack, 3,616 B over the 16,384 B reserved.*-> deep"):
        check_budget(fp, "mps2-an386")
