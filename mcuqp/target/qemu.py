"""Run verification firmware on qemu-system-arm and count its instructions.

The firmware (runtime_c/platform/verify_main.c) reads its inputs from a semihosting
file in QEMU's working directory and writes outputs and stats back. Instruction counts
come from the project's own TCG plugin (runtime_c/platform/qemu_plugin/), compiled for
the host on first use and cached by content.

Determinism: the plugin counts each instruction the CPU reaches, so the counts do not
depend on how QEMU splits code into blocks or on host timing. The firmware enables no
interrupt and touches no timer or device, so a run is a pure function of the ELF and
the inputs. -icount is not used: it adds nothing here and would re-execute
instructions after device accesses.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mcuqp.errors import McuqpError, ToolchainError
from mcuqp.target.boards import Board, load_board
from mcuqp.target.build import PLATFORM_DIR, Firmware

PLUGIN_DIR = PLATFORM_DIR / "qemu_plugin"
PLUGIN_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-fvisibility=hidden"]
QEMU = "qemu-system-arm"
MARKERS = ("mcuqp_profile_begin", "mcuqp_profile_mark", "mcuqp_profile_end")
INPUT_FILE, OUTPUT_FILE, STATS_FILE, PROFILE_FILE = (
    "mcuqp_input.bin", "mcuqp_output.bin", "mcuqp_stats.txt", "mcuqp_profile.txt")
GUEST_PREFIX = "mcuqp-guest: "
DEFAULT_TIMEOUT = 120.0

# Mirrors MCUQP_EXIT_* in runtime_c/platform/mcuqp_platform.h.
GUEST_EXIT_CODES = {
    2: "semihosting I/O error",
    3: "bad input file",
    4: "model returned an error",
    5: "stack exhausted",
    10: "NMI",
    11: "HardFault",
    12: "MemManage fault",
    13: "BusFault",
    14: "UsageFault",
    15: "SecureFault",
    16: "unexpected exception",
}


FAULT_EXIT_CODES = range(10, 17)
_FAULT_FIELDS = re.compile(r"\b(pc)=0x([0-9a-fA-F]{8})")


@dataclass
class RunResult:
    outputs: np.ndarray  # (N, output_size) int8
    instructions: list[int]  # per inference: from entering mcuqp_profile_begin to entering _end
    layer_instructions: list[list[int]]  # per inference: begin->mark 0, mark 0->mark 1, ...
    epilogue_instructions: list[int]  # per inference: last mark (or begin) -> end
    stack_bytes: int  # stack high-water mark of the whole run (painted-stack method)
    total_instructions: int | None = None  # the whole run, boot and file I/O included
    console: str = field(default="", repr=False)
    # With count_classes: per inference, per layer, the counters of cycles.CLASSES (the
    # epilogue is the last entry of each layer list).
    layer_classes: list[list[list[int]]] = field(default_factory=list)


def run_firmware(
    firmware: Firmware,
    board: Board | str | None,
    inputs: np.ndarray,
    output_size: int,
    *,
    count_instructions: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    qemu_args: Sequence[str] = (),
    layer_names: Sequence[str] = (),
    count_classes: bool = False,
) -> RunResult:
    """Run `firmware` on `inputs` ((N, input_size) int8) and return its outputs and counts.

    sum(layer_instructions[k]) + epilogue_instructions[k] == instructions[k] for every k.
    qemu_args are appended to the command line (debugging, e.g. ["-d", "int"]).
    A guest fault is reported with its PC, the function holding it and (when counting
    instructions) the layer that was running, named from `layer_names`.
    count_classes also counts instructions by class (cycles.CLASSES) per layer.
    """
    b = load_board(board or firmware.board) if not isinstance(board, Board) else board
    if b.name != firmware.board:
        raise McuqpError(f"firmware was built for {firmware.board}, not {b.name}; rebuild it for {b.name}")
    x = _check_inputs(inputs)
    n = x.shape[0]

    with tempfile.TemporaryDirectory(prefix="mcuqp-qemu-") as tmp:
        work = Path(tmp)
        (work / INPUT_FILE).write_bytes(x.tobytes())
        cmd = [_qemu(), "-machine", b.qemu_machine, "-nographic", "-semihosting-config",
               "enable=on,target=native", "-kernel", str(firmware.elf)]
        if count_instructions:
            addr = marker_addresses(firmware.elf)
            opts = ",".join(f"{k}=0x{addr[s]:x}" for k, s in zip(("begin", "mark", "end"), MARKERS))
            classes = ",classes=on" if count_classes else ""
            cmd += ["-plugin", f"{str(build_plugin()).replace(',', ',,')},{opts},out={PROFILE_FILE}{classes}"]
        cmd += list(qemu_args)
        try:
            r = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise McuqpError(f"firmware did not finish within {timeout:g} s on {b.name} "
                             "(hung, or too slow); check the model or raise --timeout") from None
        console = r.stdout + r.stderr
        if r.returncode in FAULT_EXIT_CODES:
            where = _where(work / PROFILE_FILE, layer_names) if count_instructions else ""
            raise McuqpError(_fault_message(r.returncode, console, firmware.elf, b.name, where))
        _check_exit(r.returncode, console, b.name)

        stats = _read_stats(work / STATS_FILE)
        if stats.get("input_size") != x.shape[1] or stats.get("inferences") != n:
            raise McuqpError(f"firmware expects {stats.get('input_size')}-byte inputs but got {x.shape[1]}-byte "
                             f"rows ({n} of them); pass inputs of the model's input size")
        if stats.get("output_size") != output_size:
            raise McuqpError(f"firmware writes {stats.get('output_size')}-byte outputs, not {output_size}; "
                             "pass the model's output size")
        raw = (work / OUTPUT_FILE).read_bytes()
        if len(raw) != n * output_size:
            raise McuqpError(f"firmware wrote {len(raw)} output bytes instead of {n * output_size}")
        outputs = np.frombuffer(raw, dtype=np.int8).reshape(n, output_size).copy()

        result = RunResult(outputs=outputs, instructions=[], layer_instructions=[], epilogue_instructions=[],
                           stack_bytes=stats["stack_used"], console=console)
        if count_instructions:
            _parse_profile((work / PROFILE_FILE).read_text(), n, result)
        return result


def marker_addresses(elf: Path) -> dict[str, int]:
    """Entry addresses (Thumb bit cleared) of the three profiling marker functions."""
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        raise ToolchainError("arm-none-eabi-nm not found; install it with: "
                             "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")
    r = subprocess.run([nm, "--defined-only", str(elf)], capture_output=True, text=True, check=True)
    found: dict[str, int] = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in MARKERS:
            found[parts[2]] = int(parts[0], 16) & ~1
    missing = [m for m in MARKERS if m not in found]
    if missing:
        raise McuqpError(f"{elf.name} lacks {', '.join(missing)}; build it with build.platform_sources(board)")
    if len(set(found.values())) != len(MARKERS):
        raise McuqpError(f"{elf.name}: the profiling markers share an address; compile profile.c unmodified")
    return found


def build_plugin(cc: str = "gcc") -> Path:
    """Compile the instruction-count plugin for the host, cached by content hash."""
    srcs = sorted(PLUGIN_DIR.glob("*.c"))
    h = hashlib.sha256()
    for p in srcs + sorted(PLUGIN_DIR.glob("*.h")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    h.update(" ".join([cc, *PLUGIN_CFLAGS]).encode())
    cache = Path(os.environ.get("MCUQP_CACHE", Path(tempfile.gettempdir()) / "mcuqp-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"mcuqp-icount-{h.hexdigest()[:16]}.so"
    if not out.exists():
        if shutil.which(cc) is None:
            raise ToolchainError(f"{cc} not found (needed for the QEMU plugin); install it with: "
                                 "sudo apt-get install gcc")
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run([cc, *PLUGIN_CFLAGS, "-I", str(PLUGIN_DIR), *map(str, srcs), "-o", str(tmp)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            first = next((ln for ln in r.stderr.splitlines() if "error:" in ln), r.stderr.strip()[:300])
            raise McuqpError(f"compiling the QEMU plugin failed: {first.strip()}")
        os.replace(tmp, out)
    return out


@functools.lru_cache(maxsize=None)
def _qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise ToolchainError(f"{QEMU} not found; install it with: sudo apt-get install qemu-system-arm")
    return path


def _check_inputs(inputs: np.ndarray) -> np.ndarray:
    x = np.asarray(inputs)
    if x.dtype != np.int8 or x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise McuqpError(f"inputs must be an int8 array of shape (N, input_size), got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x)


def _check_exit(rc: int, console: str, board: str) -> None:
    if rc == 0:
        return
    guest = [ln[len(GUEST_PREFIX):].strip() for ln in console.splitlines() if ln.startswith(GUEST_PREFIX)]
    if rc in GUEST_EXIT_CODES:
        detail = guest[-1] if guest else "no message"
        raise McuqpError(f"firmware failed on {board} with exit code {rc} ({GUEST_EXIT_CODES[rc]}): {detail}")
    lines = [ln.strip() for ln in console.splitlines() if ln.strip()]
    detail = guest[-1] if guest else (lines[0] if lines else "no output")
    raise McuqpError(f"{QEMU} exited with code {rc} on {board}: {detail}")


def _fault_message(rc: int, console: str, elf: Path, board: str, where: str) -> str:
    """One line: the fault, its PC as function+offset, the layer, the guest's fault registers."""
    guest = [ln[len(GUEST_PREFIX):].strip() for ln in console.splitlines() if ln.startswith(GUEST_PREFIX)]
    detail = guest[-1] if guest else f"{GUEST_EXIT_CODES[rc]} (no report)"
    regs = dict(_FAULT_FIELDS.findall(detail))
    parts = [f"firmware failed on {board} with exit code {rc} ({GUEST_EXIT_CODES[rc]}): {detail};"]
    if "pc" in regs:
        parts.append(f"the pc is in {_symbolize(_function_symbols(elf), int(regs['pc'], 16))}")
    if where:
        parts.append(where)
    return " ".join(parts) + "; a kernel read or wrote outside its buffers, or the stack overflowed"


def _function_symbols(elf: Path) -> list[tuple[int, str]]:
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        return []
    r = subprocess.run([nm, "--defined-only", str(elf)], capture_output=True, text=True)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            out.append((int(parts[0], 16) & ~1, parts[2]))
    return sorted(out)


def _symbolize(symbols: list[tuple[int, str]], addr: int) -> str:
    addr &= ~1
    best = None
    for a, name in symbols:
        if a > addr:
            break
        best = (a, name)
    return f"{best[1]}+0x{addr - best[0]:x}" if best else "unknown function"


def _where(profile: Path, layer_names: Sequence[str]) -> str:
    """'in layer K (name) of inference I' from the markers the plugin saw before the fault."""
    if not profile.exists():
        return ""
    inference, layer = 0, None
    for line in profile.read_text().splitlines():
        tag = line[:1]
        if tag == "b":
            layer = 0
        elif tag == "m" and layer is not None:
            layer += 1
        elif tag == "e":
            inference, layer = inference + 1, None
    if layer is None:
        return f"outside the model, after {inference} inferences"
    name = f" ({layer_names[layer]})" if layer < len(layer_names) else ""
    return f"in layer {layer}{name} of inference {inference}"


def _read_stats(path: Path) -> dict[str, int]:
    if not path.exists():
        raise McuqpError("firmware exited 0 without writing its stats file; is it the mcuqp verification firmware?")
    stats: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stats[key] = int(value)
    return stats


def _parse_profile(text: str, n: int, result: RunResult) -> None:
    begin: int | None = None
    last = 0
    layers: list[int] = []
    last_k: list[int] = []
    layer_k: list[list[int]] = []
    for line in text.splitlines():
        tag, *values = line.split()
        count = int(values[0])
        k = [int(v) for v in values[1:]]
        if tag == "b" and begin is None:
            begin = last = count
            layers, last_k, layer_k = [], k, []
        elif tag == "m" and begin is not None:
            layers.append(count - last)
            layer_k.append([a - b for a, b in zip(k, last_k)])
            last, last_k = count, k
        elif tag == "e" and begin is not None:
            result.instructions.append(count - begin)
            result.layer_instructions.append(layers)
            result.epilogue_instructions.append(count - last)
            if k:
                result.layer_classes.append(layer_k + [[a - b for a, b in zip(k, last_k)]])
            begin = None
        elif tag == "t":
            result.total_instructions = count
        else:
            raise McuqpError(f"profile markers out of order ({line!r}); do not call mcuqp_profile_* from the model")
    if len(result.instructions) != n or result.total_instructions is None:
        raise McuqpError(f"instruction profile covers {len(result.instructions)} of {n} inferences; "
                         "the plugin output is incomplete")
