"""Predict a model's flash and RAM on a board before its firmware is verified, and check budgets.

`predict_footprint` measures the same quantities as `mcuqp verify`:

- flash = text + rodata + data of the whole linked image (vector table, generated invoke
  code, weights, biases, requantization arrays and parameter structs, the kernels used,
  startup / semihosting / verification main, and the libc and libgcc members the link
  pulls in);
- RAM = data + bss (the arena; the verification firmware has no I/O buffers: it reads and
  writes the model's tensors in the arena) + the stack high-water.

How: the sources are compiled with exactly the flags `build_firmware` uses (same object
cache) and linked for real, in a temporary folder, with the board's linker script whose
regions are widened so that an over-budget model still links. Sizes come from the ELF
(pyelftools), the region spans from ld's own `--print-memory-usage`, the per-object and
per-layer parts from the map file. The stack is a call-graph bound on the linked image:
frames from -fstack-usage (.su files) of the compiled sources and from the prologue
(push / sub sp / vpush) of library functions, edges from the branches in its disassembly
(a branch that is not a call is a tail call: it replaces the caller's frame). For the
verification firmware it is the depth of Reset_Handler -> main -> NAME_invoke ->
kernels -> helpers (and main's semihosting calls), which the painted-stack measurement
sees: write_stats runs after the measurement and is left out.
"""
from __future__ import annotations

import bisect
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from elftools.elf.elffile import ELFFile

from mcuqp.errors import BudgetError, McuqpError, ToolchainError
from mcuqp.target import build
from mcuqp.target.boards import Board, load_board
from mcuqp.target.mapfile import InputSection, input_sections

FirmwareKind = Literal["verify", "library"]

ENTRY = "Reset_Handler"
# Called by main after the stack high-water is measured (see verify_main.c).
AFTER_MEASUREMENT = frozenset({"write_stats"})
_WIDE_REGION = 0x1000_0000  # 256 MiB: an over-budget model still links, and the overrun is reported


@dataclass(frozen=True)
class LayerFlash:
    index: int  # position in the execution order (the generated `l<index>_` symbols)
    name: str
    kind: str
    weight_bytes: int  # weights, biases, constant operands
    param_bytes: int  # requantization arrays, parameter structs, dims

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.param_bytes


@dataclass(frozen=True)
class Footprint:
    board: str
    firmware: str  # "verify" (the verification firmware) or "library" (model + kernels only)
    flash_bytes: int  # text + rodata + data of the linked image
    ram_bytes: int  # data + bss + stack_bytes
    stack_bytes: int  # call-graph bound of the stack high-water
    text: int  # code, vector table, unwind tables
    rodata: int
    data: int
    bss: int
    arena_bytes: int
    stack_reserved_bytes: int  # the stack the linker script reserves inside the RAM budget
    linked_flash_bytes: int  # FLASH region span: flash_bytes plus alignment gaps between sections
    linked_ram_bytes: int  # RAM region span: reserved stack, data, bss and the gaps between them
    breakdown: dict[str, int]  # "flash.*" parts sum to flash_bytes, "ram.*" parts to ram_bytes
    layers: list[LayerFlash]  # in execution order; layers without constants are left out
    stack_path: list[str] = field(default_factory=list)  # the deepest call chain
    arena_peak: str = ""  # the step where the arena is fullest, and its largest live tensors
    invoke_stack_bytes: int = 0  # call-graph bound of mcuqp_model_invoke's own stack (what an application adds)

    @property
    def static_ram_bytes(self) -> int:
        return self.data + self.bss

    def largest_layers(self, n: int = 3) -> list[LayerFlash]:
        return sorted(self.layers, key=lambda la: (-la.total_bytes, la.index))[:n]

    def summary(self) -> dict:
        """A JSON-ready dict."""
        d = {k: v for k, v in vars(self).items() if k != "layers"}
        d["layers"] = [{**vars(la), "total_bytes": la.total_bytes} for la in self.layers]
        return d


@dataclass(frozen=True)
class ModelSources:
    """What the code generator produced, as the footprint needs it."""

    model_c: str
    model_h: str
    kernels: Sequence[Path]  # runtime_c kernel sources the model calls
    layers: Sequence[tuple[str, str]] = ()  # (name, kind) of each layer in execution order
    arena_peak: str = ""
    name: str = "model"  # the model's C prefix: NAME.c, NAME.h, NAME_invoke

    @property
    def entry(self) -> str:
        """The library's entry point (the stack of a library-only build starts here)."""
        return f"{self.name}_invoke"


_ROUNDING = re.compile(r"#if MCUQP_SINGLE_ROUNDING != (\d)")
_LAYER_SYMBOL = re.compile(r"^l(\d+)_(\w+)$")
_WEIGHT_SUFFIX = re.compile(r"^(weights|bias|in\d+)$")
_USAGE = re.compile(r"^\s*(FLASH|RAM):\s+(\d+)\s+(B|KB|MB|GB)\s")
_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def predict_footprint(
    model: ModelSources,
    board: Board | str,
    *,
    firmware: FirmwareKind = "verify",
    stack_bytes_reserved: int = build.DEFAULT_STACK_BYTES,
) -> Footprint:
    """Flash and RAM of the generated model linked for `board`.

    firmware="verify": the image `mcuqp verify` builds (model, kernels, platform and
    verification main; flash and RAM as verify reports them). firmware="library": what the
    model adds to an application (model.c, kernels and the libc members they need, no
    profiling hooks); its stack is that of NAME_invoke alone.
    """
    b = board if isinstance(board, Board) else load_board(board)
    if firmware not in ("verify", "library"):
        raise McuqpError(f"firmware {firmware!r}: give 'verify' or 'library'")
    verify = firmware == "verify"
    model_dir = _model_dir(model)
    srcs = [model_dir / f"{model.name}.c", *map(Path, model.kernels), *(build.platform_sources(b) if verify else [])]
    stack = (int(stack_bytes_reserved) + 7) // 8 * 8
    region = max(_WIDE_REGION, b.flash_size, b.ram_size)
    with tempfile.TemporaryDirectory(prefix="mcuqp-footprint-") as tmp:
        work = Path(tmp)
        (work / "obj").mkdir()
        objs = build.compile_objects(srcs, [model_dir], b, work / "obj", defines=_defines(model, profile=verify))
        ldflags = ["-Wl,--print-memory-usage", *([] if verify else [f"-Wl,--entry={model.entry}"])]
        elf, map_path = build.link_objects(objs, b, work, region, region, stack, ldflags=ldflags)
        sizes = build.section_sizes(elf)
        spans = _region_usage((work / "link.stdout").read_text())
        rows = input_sections(map_path)
        graph = call_graph(elf, rows, {o.name: read_stack_usage(o.with_suffix(".su")) for o in objs})
    if verify:
        # Reset_Handler's own frame is not painted; what it calls before main is painted over.
        depth, path = graph.depth("main", exclude=AFTER_MEASUREMENT)
        stack_bound, stack_path = graph.frame(ENTRY) + depth, [ENTRY, *path]
    else:
        stack_bound, stack_path = graph.depth(model.entry)

    text, rodata, data, bss = sizes["text"], sizes["rodata"], sizes["data"], sizes["bss"]
    flash = text + rodata + data
    kernel_objs = {o.name for o in objs[1:1 + len(model.kernels)]}
    breakdown, layers, arena = _attribute(rows, objs[0].name, kernel_objs, model.layers, f"{model.name}_arena_storage")
    breakdown["flash.alignment"] = flash - sum(v for k, v in breakdown.items() if k.startswith("flash."))
    breakdown.update({"ram.arena": arena, "ram.data": data, "ram.other_bss": bss - arena, "ram.stack": stack_bound})
    return Footprint(
        board=b.name, firmware=firmware, flash_bytes=flash, ram_bytes=data + bss + stack_bound,
        stack_bytes=stack_bound, text=text, rodata=rodata, data=data, bss=bss, arena_bytes=arena,
        stack_reserved_bytes=int(stack_bytes_reserved), linked_flash_bytes=spans["FLASH"],
        linked_ram_bytes=spans["RAM"], breakdown=breakdown, layers=layers, stack_path=stack_path,
        arena_peak=model.arena_peak, invoke_stack_bytes=graph.depth(model.entry)[0],
    )


def _model_dir(model: ModelSources) -> Path:
    """NAME.c / NAME.h in a content-addressed folder (stable path: the object cache hits)."""
    h = hashlib.sha256(model.name.encode() + b"\0" + model.model_c.encode() + b"\0" +
                       model.model_h.encode()).hexdigest()[:24]
    root = build._cache_dir().parent / "footprint-src"
    final = root / h
    if not (final / f"{model.name}.c").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{h}.", dir=root))
        (tmp / f"{model.name}.h").write_text(model.model_h)
        (tmp / f"{model.name}.c").write_text(model.model_c)
        try:
            os.replace(tmp, final)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _defines(model: ModelSources, profile: bool) -> list[str]:
    m = _ROUNDING.search(model.model_c)
    if m is None:
        raise McuqpError("generated model.c lacks its rounding guard; regenerate it with mcuqp.codegen.emit.generate")
    return ((["MCUQP_PROFILE", *build.verify_defines(model.name)] if profile else []) +
            (["MCUQP_SINGLE_ROUNDING=1"] if m.group(1) == "1" else []))


def _region_usage(ld_stdout: str) -> dict[str, int]:
    """Bytes of each memory region the link used, as ld reports (and checks) them."""
    used = {m.group(1): int(m.group(2)) * _UNITS[m.group(3)]
            for m in map(_USAGE.match, ld_stdout.splitlines()) if m}
    if set(used) != {"FLASH", "RAM"}:
        raise ToolchainError("the linker did not report its memory usage (--print-memory-usage); "
                             f"use binutils 2.26 or newer; {build.APT_HINT}")
    return used


def read_stack_usage(path: Path) -> dict[str, int]:
    frames: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1].isdigit():
                if "dynamic" in parts[2] and "bounded" not in parts[2]:
                    raise McuqpError(f"{parts[0]} has a stack frame of unbounded size (alloca or a variable-length "
                                     "array); the stack bound needs fixed frames")
                frames[parts[0].rsplit(":", 1)[-1]] = int(parts[1])
    return frames


def _attribute(rows: list[InputSection], model_obj: str, kernel_objs: set[str],
               names: Sequence[tuple[str, str]], arena_symbol: str) -> tuple[dict[str, int], list[LayerFlash], int]:
    """Flash parts (weights, params, code by origin), per-layer constant bytes, arena bytes."""
    weights: dict[int, int] = {}
    params: dict[int, int] = {}
    parts = {"flash.weights": 0, "flash.params": 0, "flash.invoke_code": 0, "flash.kernels": 0,
             "flash.platform": 0, "flash.libc": 0, "flash.data": 0}
    arena = 0
    for r in rows:
        if r.output not in _FLASH_OUTPUTS:
            if r.output == ".bss" and r.obj == model_obj and r.name.endswith(arena_symbol):
                arena += r.size
            continue
        if r.output == ".data":
            parts["flash.data"] += r.size
        elif r.obj == model_obj:
            m = _LAYER_SYMBOL.match(r.name.split(".")[-1])
            if m and r.output == ".rodata":
                i = int(m.group(1))
                bucket = weights if _WEIGHT_SUFFIX.match(m.group(2)) else params
                bucket[i] = bucket.get(i, 0) + r.size
                parts["flash.weights" if bucket is weights else "flash.params"] += r.size
            else:
                parts["flash.invoke_code"] += r.size
        elif r.obj in kernel_objs:
            parts["flash.kernels"] += r.size
        elif "(" in r.obj:
            parts["flash.libc"] += r.size
        else:
            parts["flash.platform"] += r.size
    layers = [LayerFlash(i, name, kind, weights.get(i, 0), params.get(i, 0))
              for i, (name, kind) in enumerate(names) if i in weights or i in params]
    return parts, layers, arena


_FLASH_OUTPUTS = frozenset({".vectors", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".data"})


# --- stack: call-graph bound on the linked image ---------------------------------------

_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
_BRANCH = re.compile(r"^b(?:l|lx)?(?:eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?(?:\.[nw])?$")
_TARGET = re.compile(r"^(?:0x)?([0-9a-f]+)\s+<")
_PUSH = re.compile(r"^(?:push(?:\.w)?|stmdb(?:\.w)?)$")
_REGS = re.compile(r"\{([^}]*)\}")
_SUB_SP = re.compile(r"^sp,\s*(?:sp,\s*)?#(\d+)")
_STR_PRE = re.compile(r"\[sp,\s*#-(\d+)\]!")


def _reg_count(regs: str) -> int:
    n = 0
    for part in filter(None, (p.strip() for p in regs.split(","))):
        a, _, b = part.partition("-")
        n += int(b.strip()[1:]) - int(a[1:]) + 1 if b else 1
    return n


@dataclass
class CallGraph:
    """Functions of a linked image: name, stack frame, calls and tail calls (by start address)."""

    names: dict[int, str]
    frames: dict[int, int]
    calls: dict[int, set[int]]
    tails: dict[int, set[int]]

    def address(self, function: str) -> int:
        hits = [a for a, n in self.names.items() if n == function]
        if not hits:
            raise McuqpError(f"{function} is not in the linked image; cannot bound the stack")
        return hits[0]

    def frame(self, function: str) -> int:
        return self.frames[self.address(function)]

    def depth(self, root: str, exclude: frozenset[str] = frozenset()) -> tuple[int, list[str]]:
        """Deepest stack use from entering `root`, and that call path; refuses recursion."""
        memo: dict[int, tuple[int, list[str]]] = {}
        active: set[int] = set()

        def visit(a: int) -> tuple[int, list[str]]:
            if a in memo:
                return memo[a]
            if a in active:
                raise McuqpError(f"recursion through {self.names[a]}: the stack has no static bound")
            active.add(a)
            me = self.frames[a]
            best, path = me, []
            for callee, base in [(c, me) for c in sorted(self.calls[a])] + [(t, 0) for t in sorted(self.tails[a])]:
                if self.names[callee] in exclude:
                    continue
                d, p = visit(callee)
                if base + d > best:
                    best, path = base + d, p
            active.discard(a)
            memo[a] = (best, [self.names[a], *path])
            return memo[a]

        return visit(self.address(root))


def call_graph(elf: Path, rows: list[InputSection], su: dict[str, dict[str, int]]) -> CallGraph:
    """The call graph of a linked image. `su` maps object file names to their -fstack-usage
    frames; `rows` (the map file) tells which object each function came from."""
    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        funcs = {s["st_value"] & ~1: (s.name, s["st_size"]) for s in symtab.iter_symbols()
                 if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] != "SHN_UNDEF"}
    starts = sorted(funcs)
    owners = sorted((r.address, r.address + r.size, r.obj) for r in rows if r.size and r.output == ".text")
    r = subprocess.run([build._tool("arm-none-eabi-objdump"), "-d", "--no-show-raw-insn", str(elf)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolchainError(f"arm-none-eabi-objdump failed: {r.stderr.strip()[:200]}; {build.APT_HINT}")

    # A function without a size (hand-written assembly) runs to the next symbol.
    ends = {a: a + funcs[a][1] if funcs[a][1] else nxt for a, nxt in zip(starts, [*starts[1:], 1 << 32])}

    def containing(addr: int) -> int | None:
        i = bisect.bisect_right(starts, addr) - 1
        return starts[i] if i >= 0 and addr < ends[starts[i]] else None

    pushed = dict.fromkeys(starts, 0)
    calls: dict[int, set[int]] = {a: set() for a in starts}
    tails: dict[int, set[int]] = {a: set() for a in starts}
    for line in r.stdout.splitlines():
        m = _INSN.match(line)
        if m is None or (here := containing(int(m.group(1), 16))) is None:
            continue
        op, args = m.group(2), m.group(3)
        if _BRANCH.match(op) and (t := _TARGET.match(args)):
            callee = containing(int(t.group(1), 16))
            if callee is not None and callee != here:
                (calls if op.startswith("bl") else tails)[here].add(callee)
        elif _PUSH.match(op) and (args.startswith("{") or args.startswith("sp!")) and (g := _REGS.search(args)):
            pushed[here] += 4 * _reg_count(g.group(1))
        elif op.startswith("vpush") and (g := _REGS.search(args)):  # {d8-d15}: 8 bytes each, {s16-s31}: 4
            pushed[here] += (8 if "d" in g.group(1) else 4) * _reg_count(re.sub(r"[ds]", "r", g.group(1)))
        elif op.split(".")[0] in ("sub", "subw") and (s := _SUB_SP.match(args)):
            pushed[here] += int(s.group(1))
        elif op.split(".")[0] in ("str", "strd") and (s := _STR_PRE.search(args)):
            pushed[here] += int(s.group(1))

    frames = {}
    for a in starts:
        i = bisect.bisect_right(owners, (a, float("inf"), "")) - 1
        obj = owners[i][2] if i >= 0 and a < owners[i][1] else ""
        frames[a] = su.get(obj, {}).get(funcs[a][0], pushed[a])
    return CallGraph({a: funcs[a][0] for a in starts}, frames, calls, tails)


def check_budget(footprint: Footprint, board: Board | str, *, flash_bytes: int | None = None,
                 ram_bytes: int | None = None) -> None:
    """Raise BudgetError (one line) when the model does not fit the flash or RAM budget.

    Budgets default to the board's memories. They are checked as the linker script will
    check them: flash is the span of the flash image, RAM the span of the reserved stack,
    data and bss; the predicted stack must also fit the reserved stack."""
    b = board if isinstance(board, Board) else load_board(board)
    flash_budget = b.flash_size if flash_bytes is None else int(flash_bytes)
    ram_budget = b.ram_size if ram_bytes is None else int(ram_bytes)
    fp = footprint
    if fp.linked_flash_bytes > flash_budget:
        top = ", ".join(f"{la.name} {la.total_bytes:,} B" for la in fp.largest_layers(3)) or "none"
        code = fp.breakdown.get("flash.kernels", 0) + fp.breakdown.get("flash.invoke_code", 0)
        raise BudgetError(
            f"model needs {fp.linked_flash_bytes:,} B of flash, {fp.linked_flash_bytes - flash_budget:,} B over the "
            f"{flash_budget:,} B budget (--flash); largest layers: {top}; kernels and invoke code {code:,} B")
    if fp.linked_ram_bytes > ram_budget:
        raise BudgetError(
            f"model needs {fp.linked_ram_bytes:,} B of RAM, {fp.linked_ram_bytes - ram_budget:,} B over the "
            f"{ram_budget:,} B budget (--ram); largest: arena {fp.arena_bytes:,} B (fullest at "
            f"{fp.arena_peak or 'no layer'}), reserved stack {fp.stack_reserved_bytes:,} B (needs "
            f"{fp.stack_bytes:,} B), other static data {fp.static_ram_bytes - fp.arena_bytes:,} B")
    if fp.stack_bytes > fp.stack_reserved_bytes:
        raise BudgetError(
            f"model needs {fp.stack_bytes:,} B of stack, {fp.stack_bytes - fp.stack_reserved_bytes:,} B over the "
            f"{fp.stack_reserved_bytes:,} B reserved for it; deepest call path: {' -> '.join(fp.stack_path)}")
