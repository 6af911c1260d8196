"""Boards, cross-build and QEMU runner, with the fake model in tests/fixtures/target."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuqp.errors import BudgetError, McuqpError, ToolchainError
from mcuqp.target import build, qemu
from mcuqp.target.boards import DEFAULT_BOARD, Board, list_boards, load_board

FIXTURE = Path(__file__).parent / "fixtures" / "target"
BOARDS = ["mps2-an386", "mps2-an385", "mps2-an500", "mps3-an547"]
IN_SIZE, OUT_SIZE = 16, 8
BIAS = np.array([5, -3, 100, -100, 0, 7, 1000, -1000], dtype=np.int32)
WEIGHT = np.array([1, 2, -3, 4, -5, 6, 7, -8], dtype=np.int32)


def expected(x: np.ndarray, table: bool = False, bss: bool = False) -> np.ndarray:
    """The fake model (fixtures/target/model.c) in numpy."""
    xi = x.astype(np.int32)
    acc = 3 * xi[:, 0::2] - xi[:, 1::2] + BIAS
    v = (acc * WEIGHT) >> 4
    if table:
        v += np.where(xi[:, :8] & 1, 0, 5)
    if bss:
        v += np.arange(8, dtype=np.int32)
    return np.clip(v, -128, 127).astype(np.int8)


def inputs(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-128, 128, size=(n, IN_SIZE), dtype=np.int8)
    x[:, 15] = np.where(x[:, 15] == -128, -127, x[:, 15])  # never the model's failure trigger
    if n >= 3:  # the extremes
        x[-1] = 127
        x[-2] = -128
        x[-2, 15] = -127
    return x


def symbol(fw: build.Firmware, name: str) -> tuple[int, int]:
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(fw.elf)], capture_output=True, text=True).stdout
    addr, size = next(ln.split()[:2] for ln in out.splitlines() if ln.endswith(" " + name))
    return int(addr, 16) & ~1, int(size, 16)


def fw_build(board: str, out: Path, **kw) -> build.Firmware:
    return build.build_firmware([FIXTURE / "model.c", *build.platform_sources(board)], [FIXTURE], board, out, **kw)


@pytest.fixture(scope="module")
def firmwares(tmp_path_factory) -> dict[str, build.Firmware]:
    root = tmp_path_factory.mktemp("fw")
    return {b: fw_build(b, root / b) for b in BOARDS}


# --- boards -----------------------------------------------------------------------------

def test_boards_are_data_files():
    boards = {b.name: b for b in list_boards()}
    assert set(BOARDS) <= set(boards)
    assert DEFAULT_BOARD == "mps2-an386" and load_board(DEFAULT_BOARD) == boards[DEFAULT_BOARD]
    assert (boards["mps2-an385"].cpu, boards["mps2-an386"].cpu) == ("cortex-m3", "cortex-m4")
    assert (boards["mps2-an500"].cpu, boards["mps3-an547"].cpu) == ("cortex-m7", "cortex-m55")
    assert boards["mps3-an547"].has("mve") and not boards["mps2-an386"].has("mve")
    assert boards["mps2-an386"].has("dsp") and not boards["mps2-an385"].has("dsp")
    assert not boards["mps2-an385"].hard_float and boards["mps2-an386"].hard_float
    for b in boards.values():
        assert b.flash_size > 0 and b.ram_size > 0
        stand_in = boards[b.verified_on]
        assert stand_in.stand_in is None and stand_in.qemu_machine == stand_in.name == b.qemu_machine


def test_unknown_board_lists_known_ones():
    with pytest.raises(McuqpError, match=r"unknown board 'stm32-nope'; known boards: .*mps2-an386.*mps3-an547"):
        load_board("stm32-nope")


def test_board_from_explicit_toml(tmp_path):
    src = (build.RUNTIME_DIR.parent / "boards" / "mps2-an385.toml").read_text()
    p = tmp_path / "custom.toml"
    p.write_text(src.replace('name = "mps2-an385"', 'name = "custom"'))
    assert isinstance(load_board(str(p)), Board) and load_board(str(p)).cpu == "cortex-m3"
    p.write_text("name = 3")
    with pytest.raises(McuqpError, match="malformed"):
        load_board(str(p))


def _elf_footprint(elf: Path) -> tuple[int, int]:
    """(bytes of the sections the image loads into flash, bytes of .data + .bss in RAM),
    read from the ELF with pyelftools. The loadable segments hold the same bytes plus at
    most a few bytes of alignment between sections."""
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    with elf.open("rb") as f:
        e = ELFFile(f)
        alloc = [s for s in e.iter_sections() if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s.name != ".stack"]
        flash = sum(s["sh_size"] for s in alloc if s["sh_type"] != "SHT_NOBITS")
        loaded = sum(seg["p_filesz"] for seg in e.iter_segments() if seg["p_type"] == "PT_LOAD")
        assert 0 <= loaded - flash < 16 * len(alloc), (loaded, flash)
        sym = {s.name: s["st_value"] for s in e.get_section_by_name(".symtab").iter_symbols()}
    return flash, sym["__bss_end"] - sym["__data_start"]


# --- build + run on every board ---------------------------------------------------------

@pytest.mark.qemu
@pytest.mark.parametrize("board", BOARDS)
def test_outputs_bit_exact_and_counts_consistent(firmwares, board):
    fw = firmwares[board]
    x = inputs(7)
    r1 = qemu.run_firmware(fw, board, x, OUT_SIZE)
    r2 = qemu.run_firmware(fw, board, x, OUT_SIZE)
    assert r1.outputs.dtype == np.int8 and np.array_equal(r1.outputs, expected(x))
    # deterministic: same ELF and inputs give the same counts, instruction for instruction
    assert r1.instructions == r2.instructions and r1.layer_instructions == r2.layer_instructions
    assert r1.total_instructions == r2.total_instructions
    assert len(r1.instructions) == 7 and all(len(layers) == 3 for layers in r1.layer_instructions)
    for total, layers, tail in zip(r1.instructions, r1.layer_instructions, r1.epilogue_instructions):
        assert sum(layers) + tail == total and min(layers) > 0 and tail > 0
    assert sum(r1.instructions) < r1.total_instructions
    assert 0 < r1.stack_bytes < fw.stack_bytes
    flash, ram = _elf_footprint(fw.elf)  # measured independently of `size`, from the ELF itself
    assert fw.flash_bytes == flash and fw.static_ram_bytes == ram
    assert fw.elf.is_file() and fw.map.is_file() and fw.stack_usage["model_invoke"] > 0


@pytest.mark.qemu
@pytest.mark.parametrize("board", BOARDS)
def test_instruction_count_is_exact(firmwares, board):
    # Only in[0] differs; layer 1 spins in[0]+1 times through a 2-instruction loop.
    x = np.tile(inputs(1, seed=3)[:1], (4, 1))
    x[:, 0] = [0, 1, 50, 127]
    r = qemu.run_firmware(firmwares[board], board, x, OUT_SIZE)
    layer0, layer1, layer2 = zip(*r.layer_instructions)
    assert len(set(layer0)) == 1 and len(set(layer2)) == 1 and len(set(r.epilogue_instructions)) == 1
    assert [b - layer1[0] for b in layer1] == [0, 2, 100, 254]
    assert [t - r.instructions[0] for t in r.instructions] == [0, 2, 100, 254]


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an385", "mps3-an547"])
def test_counts_do_not_depend_on_translation_blocks(firmwares, board):
    # -singlestep makes every instruction its own translation block
    x = inputs(3)
    r = qemu.run_firmware(firmwares[board], board, x, OUT_SIZE)
    one = qemu.run_firmware(firmwares[board], board, x, OUT_SIZE, qemu_args=["-singlestep"])
    assert one.layer_instructions == r.layer_instructions and one.instructions == r.instructions
    assert one.total_instructions == r.total_instructions and np.array_equal(one.outputs, r.outputs)


@pytest.mark.qemu
def test_without_plugin_and_without_hooks(tmp_path):
    fw = fw_build(DEFAULT_BOARD, tmp_path, profile=False)
    x = inputs(3)
    r = qemu.run_firmware(fw, DEFAULT_BOARD, x, OUT_SIZE, count_instructions=False)
    assert np.array_equal(r.outputs, expected(x)) and r.instructions == [] and r.total_instructions is None
    r = qemu.run_firmware(fw, DEFAULT_BOARD, x, OUT_SIZE)
    assert r.layer_instructions == [[], [], []] and r.epilogue_instructions == r.instructions


@pytest.mark.qemu
@pytest.mark.parametrize("board", BOARDS)
def test_whole_memory_map_is_usable(firmwares, board, tmp_path):
    """A constant table reaching the end of the board's flash and a RAM array reaching the
    end of its RAM are read back correctly: the TOML memory maps are QEMU's real ones."""
    b, base = load_board(board), firmwares[board]
    table = b.flash_size - base.flash_bytes - 1024
    bss = b.ram_size - base.stack_bytes - base.static_ram_bytes - 1024
    fw = fw_build(board, tmp_path, defines=[f"FAKE_BIG_TABLE_BYTES={table}", f"FAKE_BIG_BSS_BYTES={bss}"])
    assert b.flash_size - 2048 < fw.flash_bytes <= b.flash_size
    assert b.ram_size - 2048 < fw.static_ram_bytes + fw.stack_bytes <= b.ram_size
    x = inputs(3)
    r = qemu.run_firmware(fw, board, x, OUT_SIZE, count_instructions=False)
    assert np.array_equal(r.outputs, expected(x, table=True, bss=True))


@pytest.mark.qemu
def test_stack_high_water_tracks_stack_use(firmwares, tmp_path):
    base = qemu.run_firmware(firmwares[DEFAULT_BOARD], DEFAULT_BOARD, inputs(2), OUT_SIZE, count_instructions=False)
    fw = fw_build(DEFAULT_BOARD, tmp_path, defines=["FAKE_STACK_BYTES=3000"])
    deep = qemu.run_firmware(fw, DEFAULT_BOARD, inputs(2), OUT_SIZE, count_instructions=False)
    # the painted measurement covers the static frames of the deepest call chain
    chain = sum(fw.stack_usage[f] for f in ("Reset_Handler", "main", "model_invoke", "use_stack"))
    assert fw.stack_usage["use_stack"] >= 3000 and deep.stack_bytes > base.stack_bytes
    assert chain <= deep.stack_bytes < chain + 64


# --- failures ---------------------------------------------------------------------------

@pytest.mark.qemu
def test_oversized_constant_fails_at_link_time(firmwares, tmp_path):
    def overflow(table_bytes: int) -> int:
        with pytest.raises(BudgetError) as e:
            fw_build(DEFAULT_BOARD, tmp_path, defines=[f"FAKE_BIG_TABLE_BYTES={table_bytes}"])
        m = re.fullmatch(r"firmware does not fit mps2-an386: region FLASH overflowed by (\d+) bytes "
                         r"\(flash budget 4194304 B\); shrink the model or raise --flash", str(e.value))
        assert m, str(e.value)
        return int(m.group(1))

    over = overflow(5_000_000)
    assert over > 5_000_000 - (4 << 20) + firmwares[DEFAULT_BOARD].flash_bytes
    assert overflow(5_000_016) == over + 16  # the excess is reported byte for byte


@pytest.mark.qemu
def test_budgets_shrink_the_regions(tmp_path):
    with pytest.raises(BudgetError, match=r"region FLASH overflowed by \d+ bytes \(flash budget 2048 B\)"):
        fw_build(DEFAULT_BOARD, tmp_path, flash_bytes=2048)
    with pytest.raises(BudgetError, match=r"region RAM overflowed .*RAM budget 8192 B including a 8000 B stack"):
        fw_build(DEFAULT_BOARD, tmp_path, ram_bytes=8192, stack_bytes=8000)
    with pytest.raises(BudgetError, match="outside 1..524288 B, the flash of mps3-an547"):
        fw_build("mps3-an547", tmp_path, flash_bytes=1 << 20)
    fw = fw_build(DEFAULT_BOARD, tmp_path, flash_bytes=8192, ram_bytes=4096, stack_bytes=2048)
    assert (fw.flash_budget, fw.ram_budget, fw.stack_bytes) == (8192, 4096, 2048)


@pytest.mark.qemu
def test_compile_error_reports_first_error(tmp_path):
    bad = tmp_path / "model.c"
    bad.write_text('#include "model.h"\nint model_invoke(void) { return model_input() + 1; }\n')
    with pytest.raises(McuqpError, match=r"compiling model\.c for mps2-an386 failed: .*model\.c:2:.*error"):
        build.build_firmware([bad, *build.platform_sources(DEFAULT_BOARD)], [FIXTURE], DEFAULT_BOARD, tmp_path)


@pytest.mark.qemu
def test_guest_failures_propagate(firmwares, tmp_path):
    fw = firmwares["mps3-an547"]
    x = inputs(4)
    x[2, 14] = x[2, 15] = -128
    with pytest.raises(McuqpError, match=r"exit code 4 \(model returned an error\): "
                                         r"model_invoke returned -7 on input 2$"):
        qemu.run_firmware(fw, "mps3-an547", x, OUT_SIZE)
    with pytest.raises(McuqpError, match=r"exit code 3 \(bad input file\): input file length 24 is not"):
        qemu.run_firmware(fw, "mps3-an547", np.zeros((3, 8), np.int8), OUT_SIZE)
    with pytest.raises(McuqpError, match="firmware expects 16-byte inputs but got 8-byte rows"):
        qemu.run_firmware(fw, "mps3-an547", np.zeros((4, 8), np.int8), OUT_SIZE)
    with pytest.raises(McuqpError, match="built for mps3-an547, not mps2-an386"):
        qemu.run_firmware(fw, "mps2-an386", inputs(1), OUT_SIZE)
    with pytest.raises(McuqpError, match="inputs must be an int8 array"):
        qemu.run_firmware(fw, None, inputs(1).astype(np.int16), OUT_SIZE)



@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an385", "mps3-an547"])
def test_fault_reports_the_faulting_instruction(board, tmp_path):
    fw = fw_build(board, tmp_path, defines=["FAKE_DIVIDE_BY_INPUT"])
    x = inputs(3)
    x[1, 15] = 0  # integer division by zero traps (CCR.DIV_0_TRP)
    with pytest.raises(McuqpError, match=r"exit code 14 \(UsageFault\): UsageFault pc=0x") as e:
        qemu.run_firmware(fw, None, x, OUT_SIZE)
    pc = int(re.search(r"pc=(0x[0-9a-f]+)", str(e.value)).group(1), 16)
    cfsr = int(re.search(r"cfsr=(0x[0-9a-f]+)", str(e.value)).group(1), 16)
    start, size = symbol(fw, "model_invoke")
    assert start <= pc < start + size and cfsr == 1 << 25  # UFSR.DIVBYZERO


@pytest.mark.qemu
@pytest.mark.parametrize("board, message", [
    ("mps2-an386", r"exit code 5 \(stack exhausted\): stack exhausted: all 2048 bytes used"),
    ("mps3-an547", r"exit code 14 \(UsageFault\): UsageFault .*cfsr=0x00100000"),  # v8-M MSPLIM: STKOF
])
def test_stack_overflow_is_caught(board, message, tmp_path):
    fw = fw_build(board, tmp_path, defines=["FAKE_STACK_BYTES=3000"], stack_bytes=2048)
    with pytest.raises(McuqpError, match=message):
        qemu.run_firmware(fw, None, inputs(2), OUT_SIZE)


@pytest.mark.qemu
def test_timeout(tmp_path):
    fw = fw_build(DEFAULT_BOARD, tmp_path, defines=["FAKE_HANG"])
    x = inputs(2)
    x[1, 1] = 99
    with pytest.raises(McuqpError, match="did not finish within 1 s on mps2-an386"):
        qemu.run_firmware(fw, None, x, OUT_SIZE, timeout=1.0)


def test_missing_tools_name_apt_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    build._tool.cache_clear()
    qemu._qemu.cache_clear()
    try:
        with pytest.raises(ToolchainError, match="gcc-arm-none-eabi libnewlib-arm-none-eabi"):
            fw_build(DEFAULT_BOARD, tmp_path)
        with pytest.raises(ToolchainError, match="apt-get install qemu-system-arm"):
            qemu._qemu()
    finally:
        build._tool.cache_clear()
        qemu._qemu.cache_clear()
