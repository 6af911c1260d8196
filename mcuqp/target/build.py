"""Cross-build firmware for a board with arm-none-eabi-gcc.

`build_firmware` compiles C sources (generated model, runtime kernels, platform,
verification main) with the board's flags, links them with a linker script rendered
from runtime_c/platform/link.ld.in (flash/RAM budgets and stack size), and reports the
section sizes. Objects are cached by content, like tests/hostlib.py does for the host build.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Iterable, Sequence

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from mcuqp.errors import BudgetError, McuqpError, ToolchainError
from mcuqp.resources import RUNTIME_DIR
from mcuqp.target.boards import Board, load_board

INCLUDE_DIR = RUNTIME_DIR / "include"
PLATFORM_DIR = RUNTIME_DIR / "platform"
LINKER_TEMPLATE = PLATFORM_DIR / "link.ld.in"
VERIFY_MAIN = PLATFORM_DIR / "verify_main.c"

DEFAULT_STACK_BYTES = 16 * 1024
CC = "arm-none-eabi-gcc"
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
CODEGEN_FLAGS = ["-std=c99", "-ffunction-sections", "-fdata-sections", "-fstack-usage"]
APT_HINT = "install it with: sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"

_ERROR = re.compile(r"\b(fatal )?error:")
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes?")


@dataclass(frozen=True)
class Firmware:
    elf: Path
    map: Path
    board: str
    text: int  # code, vector table, unwind tables
    rodata: int
    data: int  # initialised RAM: counted in flash (its initial image) and in RAM
    bss: int
    flash_bytes: int  # text + rodata + data of the whole linked image
    static_ram_bytes: int  # data + bss
    stack_bytes: int  # reserved for the stack (not part of static_ram_bytes)
    flash_budget: int
    ram_budget: int
    stack_usage: dict[str, int] = field(default_factory=dict)  # function -> frame bytes (-fstack-usage)


def platform_include_dirs() -> list[Path]:
    """runtime_c/include (kernel API, mcuqp_profile.h) and runtime_c/platform."""
    return [INCLUDE_DIR, PLATFORM_DIR]


def platform_sources(board: Board | str, *, verify_main: bool = True) -> list[Path]:
    """Startup, semihosting and profiling markers, plus the verification main by default.

    The board does not change the file set today (the CPU-specific parts are selected by
    the compiler's own feature macros); it is taken so that a future board can.
    """
    _ = _as_board(board)
    srcs = [PLATFORM_DIR / "startup.c", PLATFORM_DIR / "semihost.c", PLATFORM_DIR / "profile.c"]
    return srcs + ([VERIFY_MAIN] if verify_main else [])


def verify_defines(name: str) -> list[str]:
    """Defines that point verify_main.c at model `name` (NAME.h, NAME_input, NAME_INPUT_SIZE...)."""
    return [f"MCUQP_VERIFY_MODEL={name}", f"MCUQP_VERIFY_MODEL_UPPER={name.upper()}", f'MCUQP_VERIFY_HEADER="{name}.h"']


def build_firmware(
    sources: Sequence[Path | str],
    include_dirs: Sequence[Path | str],
    board: Board | str,
    out_dir: Path | str,
    *,
    defines: Iterable[str] = (),
    flash_bytes: int | None = None,
    ram_bytes: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    opt: str = "-O2",
    profile: bool = True,
) -> Firmware:
    """Compile and link `sources` into out_dir/firmware.elf for `board`.

    flash_bytes / ram_bytes are budgets (default: the board's whole memories); the stack
    is reserved inside the RAM budget. profile=True defines MCUQP_PROFILE, so that
    MCUQP_LAYER_HOOK(i) calls the per-layer marker. The verification main runs the model
    named by `verify_defines(name)` among `defines` (default: `model`).
    """
    b = _as_board(board)
    _tool(CC)
    out = Path(out_dir)
    (out / "obj").mkdir(parents=True, exist_ok=True)
    flash_len, ram_len, stack = _budgets(b, flash_bytes, ram_bytes, stack_bytes)

    defs = [*defines, *(["MCUQP_PROFILE"] if profile else [])]
    objs = compile_objects(sources, include_dirs, b, out / "obj", defines=defs, opt=opt)
    elf, map_path = link_objects(objs, b, out, flash_len, ram_len, stack, opt=opt)
    sizes = section_sizes(elf)
    return Firmware(
        elf=elf, map=map_path, board=b.name,
        text=sizes["text"], rodata=sizes["rodata"], data=sizes["data"], bss=sizes["bss"],
        flash_bytes=sizes["text"] + sizes["rodata"] + sizes["data"],
        static_ram_bytes=sizes["data"] + sizes["bss"],
        stack_bytes=sizes["stack"], flash_budget=flash_len, ram_budget=ram_len,
        stack_usage=_stack_usage(out / "obj"),
    )


def link_objects(objs: Sequence[Path], board: Board, out: Path, flash_len: int, ram_len: int, stack: int, *,
                 opt: str = "-O2", ldflags: Sequence[str] = ()) -> tuple[Path, Path]:
    """Link `objs` into out/firmware.elf (and its map) with the linker script rendered for
    these region lengths; every mcuqp image, verified or predicted, is linked here."""
    ld = out / "link.ld"
    ld.write_text(Template(LINKER_TEMPLATE.read_text()).substitute(
        flash_origin=f"0x{board.flash_origin:08X}", flash_length=f"0x{flash_len:X}",
        ram_origin=f"0x{board.ram_origin:08X}", ram_length=f"0x{ram_len:X}", stack_bytes=f"0x{stack:X}"))
    elf, map_path = out / "firmware.elf", out / "firmware.map"
    cmd = [_tool(CC), *board.gcc_flags, opt, "-nostartfiles", "-Wl,--gc-sections", f"-Wl,-Map={map_path}",
           *ldflags, "-T", str(ld), *map(str, objs), "-o", str(elf)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise _link_error(r.stderr, board, flash_len, ram_len, stack)
    (out / "link.stdout").write_text(r.stdout)
    return elf, map_path


def compile_objects(
    sources: Sequence[Path | str],
    include_dirs: Sequence[Path | str],
    board: Board | str,
    obj_dir: Path,
    *,
    defines: Iterable[str] = (),
    opt: str = "-O2",
) -> list[Path]:
    """Compile `sources` for `board` into obj_dir (cached by content) with the flags every
    mcuqp firmware uses; the platform include folders are always on the path."""
    b = _as_board(board)
    incs = _unique([Path(d).resolve() for d in include_dirs] + platform_include_dirs())
    cflags = [*b.gcc_flags, opt, *WARNINGS, *CODEGEN_FLAGS, *[f"-D{d}" for d in defines],
              *[f"-I{d}" for d in incs]]
    srcs = [Path(s).resolve() for s in sources]
    for s in srcs:
        if not s.is_file():
            raise McuqpError(f"source file {s} does not exist; check the list passed to build_firmware")
    return _compile_all(srcs, incs, cflags, obj_dir, b.name)


def _as_board(board: Board | str) -> Board:
    return board if isinstance(board, Board) else load_board(board)


def _unique(paths: list[Path]) -> list[Path]:
    seen: dict[Path, None] = {}
    for p in paths:
        seen.setdefault(p.resolve(), None)
    return list(seen)


def _budgets(b: Board, flash: int | None, ram: int | None, stack: int) -> tuple[int, int, int]:
    flash_len = b.flash_size if flash is None else int(flash)
    ram_len = b.ram_size if ram is None else int(ram)
    if not 0 < flash_len <= b.flash_size:
        raise BudgetError(f"flash budget {flash_len} B is outside 1..{b.flash_size} B, the flash of {b.name}; "
                          "pick a budget the board can hold")
    if not 0 < ram_len <= b.ram_size:
        raise BudgetError(f"RAM budget {ram_len} B is outside 1..{b.ram_size} B, the RAM of {b.name}; "
                          "pick a budget the board can hold")
    stack = (int(stack) + 7) // 8 * 8
    if not 0 < stack < ram_len:
        raise BudgetError(f"stack of {stack} B does not fit the RAM budget of {ram_len} B; lower the stack size")
    return flash_len, ram_len, stack


@functools.lru_cache(maxsize=None)
def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name} not found; {APT_HINT}")
    return path


@functools.lru_cache(maxsize=None)
def _compiler_id() -> str:
    r = subprocess.run([_tool(CC), "--version"], capture_output=True, text=True)
    return _tool(CC) + "\n" + r.stdout.splitlines()[0] if r.stdout else _tool(CC)


def _cache_dir() -> Path:
    d = Path(os.environ.get("MCUQP_CACHE", Path(tempfile.gettempdir()) / "mcuqp-cache")) / "arm-obj"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _headers_digest(dirs: Iterable[Path]) -> bytes:
    h = hashlib.sha256()
    for d in dirs:
        for p in sorted(d.rglob("*.h")) if d.is_dir() else []:
            h.update(str(p).encode())
            h.update(p.read_bytes())
    return h.digest()


def _compile_all(srcs: list[Path], incs: list[Path], cflags: list[str], obj_dir: Path, board: str) -> list[Path]:
    names: dict[str, int] = {}
    jobs = []
    for s in srcs:
        n = names[s.stem] = names.get(s.stem, 0) + 1
        stem = s.stem if n == 1 else f"{s.stem}_{n}"
        # A source may include headers from its own directory as well as the -I dirs.
        digest = _headers_digest(_unique([*incs, s.parent]))
        jobs.append((s, obj_dir / f"{stem}.o", digest))
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda j: _compile(j[0], j[1], j[2], cflags, board), jobs))


def _compile(src: Path, obj: Path, headers: bytes, cflags: list[str], board: str) -> Path:
    h = hashlib.sha256()
    for part in (_compiler_id(), " ".join(cflags), str(src)):
        h.update(part.encode() + b"\0")
    h.update(src.read_bytes())
    h.update(headers)
    key = h.hexdigest()[:24]
    cached_o, cached_su = _cache_dir() / f"{key}.o", _cache_dir() / f"{key}.su"
    if not (cached_o.exists() and cached_su.exists()):
        tmp_o = cached_o.with_suffix(f".{os.getpid()}.{id(obj)}.tmp.o")
        r = subprocess.run([_tool(CC), *cflags, "-c", str(src), "-o", str(tmp_o)], capture_output=True,
                           text=True, cwd=tmp_o.parent)
        if r.returncode != 0:
            tmp_o.unlink(missing_ok=True)
            first = next((ln for ln in r.stderr.splitlines() if _ERROR.search(ln)), r.stderr.strip()[:300])
            raise McuqpError(f"compiling {src.name} for {board} failed: {first.strip()}")
        tmp_su = tmp_o.with_suffix(".su")
        if not tmp_su.exists():
            tmp_su.write_text("")
        os.replace(tmp_su, cached_su)  # .su first: a cached .o implies its .su is complete
        os.replace(tmp_o, cached_o)
    shutil.copyfile(cached_o, obj)
    shutil.copyfile(cached_su, obj.with_suffix(".su"))
    return obj


def _link_error(stderr: str, b: Board, flash_len: int, ram_len: int, stack: int) -> McuqpError:
    overflow: dict[str, int] = {}
    for region, n in _OVERFLOW.findall(stderr):
        overflow[region] = max(overflow.get(region, 0), int(n))
    if "FLASH" in overflow:
        return BudgetError(f"firmware does not fit {b.name}: region FLASH overflowed by {overflow['FLASH']} bytes "
                           f"(flash budget {flash_len} B); shrink the model or raise --flash")
    if "RAM" in overflow:
        return BudgetError(f"firmware does not fit {b.name}: region RAM overflowed by {overflow['RAM']} bytes "
                           f"(RAM budget {ram_len} B including a {stack} B stack); "
                           "shrink the model, lower the stack or raise --ram")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    first = next((ln for ln in lines if "undefined reference" in ln or _ERROR.search(ln)),
                 lines[0] if lines else "unknown error")
    return McuqpError(f"linking the firmware for {b.name} failed: {first.strip()}")


def section_sizes(elf: Path) -> dict[str, int]:
    """Bytes of the image's allocated sections by kind: text (code, vectors, unwind
    tables), rodata, data, bss, and the reserved stack."""
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0, "stack": 0}
    with open(elf, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            if sec["sh_flags"] & SH_FLAGS.SHF_ALLOC:
                kind = {".rodata": "rodata", ".data": "data", ".bss": "bss", ".stack": "stack"}.get(sec.name, "text")
                sizes[kind] += sec["sh_size"]
    return sizes


def _stack_usage(obj_dir: Path) -> dict[str, int]:
    usage: dict[str, int] = {}
    for su in sorted(obj_dir.glob("*.su")):
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].isdigit():
                fn = parts[0].rsplit(":", 1)[-1]
                usage[fn] = max(usage.get(fn, 0), int(parts[1]))
    return usage


def linker_script(board: Board | str, *, flash_bytes: int | None = None, ram_bytes: int | None = None,
                  stack_bytes: int = DEFAULT_STACK_BYTES) -> str:
    """The linker script `build_firmware` uses for `board` and these budgets, as text."""
    b = _as_board(board)
    flash_len, ram_len, stack = _budgets(b, flash_bytes, ram_bytes, stack_bytes)
    return Template(LINKER_TEMPLATE.read_text()).substitute(
        flash_origin=f"0x{b.flash_origin:08X}", flash_length=f"0x{flash_len:X}",
        ram_origin=f"0x{b.ram_origin:08X}", ram_length=f"0x{ram_len:X}", stack_bytes=f"0x{stack:X}")
