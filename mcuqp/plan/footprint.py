"""Predict a model's flash and RAM on a board before its firmware is built, and check budgets.

`predict_footprint` measures the same quantities as `mcuqp verify`:

- flash = text + rodata + data of the whole linked image (vector table, generated invoke
  code, weights, biases, requantization arrays and parameter structs, the kernels used,
  startup / semihosting / verification main, and the libc and libgcc members the link
  pulls in);
- RAM = data + bss (the arena, the firmware's I/O buffers) + the stack high-water.

How, without linking the model's firmware:

1. The translation units are compiled (not linked) for the board with exactly the flags
   `build_firmware` uses, through its content-addressed object cache: the generated
   model.c, the kernel sources the model uses, and the platform sources. The compiler
   alone knows the invoke code's size and the struct layouts; constants are counted from
   the arrays they are declared as.
2. A small model of GNU ld's work on those objects (link.ld.in's section rules): archive
   members of libgcc/libc are pulled for undefined symbols as ld does, sections no root
   reaches are dropped (--gc-sections, from the entry point and the KEEP sections, along
   relocations), mergeable strings are de-duplicated, and every kept input section is
   placed at its alignment in link order. Output section sizes come out of that layout.
3. The stack is a call-graph bound: frames from -fstack-usage (.su files) of the compiled
   sources and from the prologue (push / sub sp / vpush) of assembly library functions,
   edges from the call relocations (a tail call replaces the caller's frame). For the
   verification firmware it is the depth of Reset_Handler -> main -> mcuqp_model_invoke
   -> kernels -> helpers (and main's semihosting calls), which is what the painted-stack
   measurement sees: write_stats runs after the measurement and is left out.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mcuqp.codegen.emit import GeneratedModel
from mcuqp.errors import BudgetError, McuqpError, ToolchainError
from mcuqp.ir import Graph
from mcuqp.plan.memory import MemoryPlan
from mcuqp.target import build
from mcuqp.target.boards import Board, load_board

FirmwareKind = Literal["verify", "library"]

ENTRY = "Reset_Handler"
LIBRARY_ENTRY = "mcuqp_model_invoke"
# Called by main after the stack high-water is measured (see verify_main.c).
AFTER_MEASUREMENT = frozenset({"write_stats"})

# --- ELF32 (little endian, relocatable) --------------------------------------------

SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 2, 4, 8, 9
SHT_ARM_EXIDX = 0x70000001
SHF_ALLOC, SHF_EXECINSTR, SHF_MERGE, SHF_STRINGS = 0x2, 0x4, 0x10, 0x20
SHN_UNDEF, SHN_LORESERVE = 0, 0xFF00
STB_LOCAL, STB_WEAK = 0, 2
STT_FUNC = 2
R_ARM_CALLS = frozenset({1, 10, 28})  # R_ARM_PC24, R_ARM_THM_CALL, R_ARM_CALL
R_ARM_TAIL_CALLS = frozenset({29, 30, 51})  # R_ARM_JUMP24, R_ARM_THM_JUMP24, R_ARM_THM_JUMP19


@dataclass(eq=False)
class _Section:
    obj: "_Object"
    index: int
    name: str
    type: int
    flags: int
    size: int
    align: int
    link: int
    entsize: int
    offset: int
    relocs: list[tuple[int, int]] = field(default_factory=list)  # (symbol index, relocation type)

    @property
    def alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC) and self.type != SHT_REL

    def contents(self) -> bytes:
        return b"" if self.type == SHT_NOBITS else self.obj.data[self.offset:self.offset + self.size]


@dataclass
class _Symbol:
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int

    @property
    def defined(self) -> bool:
        return self.shndx != SHN_UNDEF


@dataclass(eq=False)
class _Object:
    name: str  # object file name, or archive(member)
    data: bytes
    sections: list[_Section] = field(default_factory=list)
    symbols: list[_Symbol] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)  # function -> stack frame bytes

    def section_of(self, sym: _Symbol) -> _Section | None:
        return self.sections[sym.shndx] if 0 < sym.shndx < SHN_LORESERVE else None


def _cstr(table: bytes, offset: int) -> str:
    return table[offset:table.index(b"\0", offset)].decode("utf-8", "replace")


def _parse_elf(name: str, data: bytes) -> _Object:
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise McuqpError(f"{name} is not a little-endian ELF32 object; was it built for Arm Cortex-M?")
    (_, _, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = struct.unpack_from(
        "<16sHHIIIIIHHHHHH", data, 0)
    raw = [struct.unpack_from("<10I", data, shoff + i * shentsize) for i in range(shnum)]
    names = data[raw[shstrndx][4]:raw[shstrndx][4] + raw[shstrndx][5]]
    obj = _Object(name, data)
    for i, (nm, typ, flags, _, off, size, link, info, align, entsize) in enumerate(raw):
        obj.sections.append(_Section(obj, i, _cstr(names, nm), typ, flags, size, max(align, 1), link, entsize, off))
    for i, (_, typ, _, _, off, size, link, _, _, _) in enumerate(raw):
        if typ == SHT_SYMTAB:
            strtab = data[raw[link][4]:raw[link][4] + raw[link][5]]
            for k in range(size // 16):
                nm, value, sz, info, _, shndx = struct.unpack_from("<IIIBBH", data, off + 16 * k)
                obj.symbols.append(_Symbol(_cstr(strtab, nm), value, sz, info >> 4, info & 0xF, shndx))
    for i, (_, typ, _, _, off, size, _, info, _, entsize) in enumerate(raw):
        if typ in (SHT_REL, SHT_RELA) and 0 < info < len(obj.sections):
            step = entsize or (8 if typ == SHT_REL else 12)
            target = obj.sections[info]
            for k in range(size // step):
                _, r_info = struct.unpack_from("<II", data, off + step * k)
                target.relocs.append((r_info >> 8, r_info & 0xFF))
    return obj


@dataclass
class _Archive:
    path: Path
    data: bytes
    index: list[tuple[str, int]]  # armap: (symbol, member header offset), archive order

    def member(self, offset: int) -> _Object:
        name, start, size = self._header(offset)
        return _parse_elf(f"{self.path.name}({name})", self.data[start:start + size])

    def _header(self, offset: int) -> tuple[str, int, int]:
        hdr = self.data[offset:offset + 60]
        name, size = hdr[:16].decode().strip(), int(hdr[48:58].decode().strip())
        if name.startswith("/") and name[1:].isdigit():
            longnames = self._longnames()
            k = int(name[1:])
            name = longnames[k:longnames.index("/\n", k)]
        return name.rstrip("/"), offset + 60, size

    @functools.cached_property
    def _longnames_offset(self) -> int | None:
        pos = 8
        while pos + 60 <= len(self.data):
            name, size = self.data[pos:pos + 16].decode().strip(), int(self.data[pos + 48:pos + 58].decode().strip())
            if name == "//":
                return pos + 60
            if name not in ("/", "/SYM64/"):
                return None
            pos += 60 + size + (size & 1)
        return None

    def _longnames(self) -> str:
        off = self._longnames_offset
        if off is None:
            return ""
        size = int(self.data[off - 12:off - 2].decode().strip())
        return self.data[off:off + size].decode("utf-8", "replace")


@functools.lru_cache(maxsize=8)
def _load_archive(path: Path, mtime: float) -> _Archive:
    data = path.read_bytes()
    if data[:8] != b"!<arch>\n":
        raise ToolchainError(f"{path} is not an ar archive; reinstall the toolchain's newlib")
    name, size = data[8:24].decode().strip(), int(data[56:66].decode().strip())
    index: list[tuple[str, int]] = []
    if name == "/":
        body = data[68:68 + size]
        (n,) = struct.unpack_from(">I", body, 0)
        offsets = struct.unpack_from(f">{n}I", body, 4)
        names = body[4 + 4 * n:].split(b"\0")
        index = [(names[i].decode(), offsets[i]) for i in range(n)]
    return _Archive(path, data, index)


# --- compiling the translation units ----------------------------------------------


@functools.lru_cache(maxsize=None)
def _libraries(gcc_flags: tuple[str, ...]) -> tuple[Path, ...]:
    """libgcc.a and libc.a of the board's multilib, in gcc's --start-group order."""
    cc = build._tool(build.CC)
    out = []
    for arg in ("-print-libgcc-file-name", "-print-file-name=libc.a"):
        r = subprocess.run([cc, *gcc_flags, arg], capture_output=True, text=True, check=True)
        p = Path(r.stdout.strip())
        if not p.is_file():
            raise ToolchainError(f"{p.name} for {' '.join(gcc_flags)} not found; {build.APT_HINT}")
        out.append(p.resolve())
    return tuple(out)


def _model_dir(generated: GeneratedModel) -> Path:
    """model.c / model.h in a content-addressed folder (stable path: the object cache hits)."""
    h = hashlib.sha256(generated.model_c.encode() + b"\0" + generated.model_h.encode()).hexdigest()[:24]
    root = build._cache_dir().parent / "footprint-src"
    final = root / h
    if not (final / "model.c").exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{h}.", dir=root))
        (tmp / "model.h").write_text(generated.model_h)
        (tmp / "model.c").write_text(generated.model_c)
        try:
            os.replace(tmp, final)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return final


_ROUNDING = re.compile(r"#if MCUQP_SINGLE_ROUNDING != (\d)")


def _defines(generated: GeneratedModel, profile: bool) -> list[str]:
    m = _ROUNDING.search(generated.model_c)
    if m is None:
        raise McuqpError("generated model.c lacks its rounding guard; regenerate it with mcuqp.codegen.emit.generate")
    return (["MCUQP_PROFILE"] if profile else []) + (["MCUQP_SINGLE_ROUNDING=1"] if m.group(1) == "1" else [])


def _compile(srcs: list[Path], model_dir: Path, board: Board, defines: list[str], work: Path) -> list[Path]:
    """Objects for `srcs`, compiled as build_firmware compiles them (same flags and cache)."""
    return build.compile_objects(srcs, [model_dir], board, work, defines=defines)


def _read_su(path: Path) -> dict[str, int]:
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


# --- prologue frames of library functions (no .su for them) ---------------------------

_PUSH = re.compile(r"\s(?:push(?:\.w)?|stmdb(?:\.w)?\s+sp!,)\s*\{([^}]*)\}")
_VPUSH = re.compile(r"\svpush(?:\.\d+)?\s*\{([^}]*)\}")
_SUB_SP = re.compile(r"\s(?:sub|subw|sub\.w)\s+sp,\s*(?:sp,\s*)?#(\d+)")
_STR_PRE = re.compile(r"\s(str(?:d)?)(?:\.w)?\s+[^\[]*\[sp,\s*#-(\d+)\]!")


def _reg_count(regs: str) -> int:
    n = 0
    for part in regs.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            n += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
        elif part:
            n += 1
    return n


@functools.lru_cache(maxsize=256)
def _disassembly_frames(data: bytes) -> dict[str, int]:
    """Function -> bytes its prologue pushes or subtracts from sp (whole-function sum: an
    upper bound for assembly that pushes on several paths)."""
    with tempfile.NamedTemporaryFile(suffix=".o") as f:
        f.write(data)
        f.flush()
        r = subprocess.run([build._tool("arm-none-eabi-objdump"), "-d", "--no-show-raw-insn", f.name],
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolchainError(f"arm-none-eabi-objdump failed: {r.stderr.strip()[:200]}; {build.APT_HINT}")
    frames: dict[str, int] = {}
    current = None
    for line in r.stdout.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            current = m.group(1)
            frames.setdefault(current, 0)
            continue
        if current is None:
            continue
        if (m := _PUSH.search(line)):
            frames[current] += 4 * _reg_count(m.group(1))
        elif (m := _VPUSH.search(line)):  # {d8-d15}: 8 bytes each, {s16-s31}: 4
            regs = m.group(1)
            frames[current] += (8 if "d" in regs else 4) * _reg_count(re.sub(r"[ds]", "r", regs))
        elif (m := _SUB_SP.search(line)):
            frames[current] += int(m.group(1))
        elif (m := _STR_PRE.search(line)):
            frames[current] += int(m.group(2))
    return frames


# --- the link model -------------------------------------------------------------------


@dataclass
class _Link:
    objects: list[_Object]
    globals: dict[str, tuple[_Object, _Symbol]]
    kept: list[_Section]  # in link order
    sizes: dict[_Section, int]  # kept section -> bytes it occupies (after string merging)
    output: dict[str, list[_Section]]  # output section -> kept input sections in placement order
    output_sizes: dict[str, int]
    output_align: dict[str, int]


_OUTPUT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (  # mirrors runtime_c/platform/link.ld.in
    (".vectors", (".vectors",)),
    (".text", (".text", ".text.*", ".gnu.linkonce.t.*", ".glue_7", ".glue_7t", ".vfp11_veneer", ".v4_bx")),
    (".rodata", (".rodata", ".rodata.*", ".gnu.linkonce.r.*")),
    (".ARM.extab", (".ARM.extab*", ".gnu.linkonce.armextab.*")),
    (".ARM.exidx", (".ARM.exidx*", ".gnu.linkonce.armexidx.*")),
    (".init_array", (".preinit_array*", ".init_array*", ".fini_array*")),
    (".data", (".data", ".data.*", ".gnu.linkonce.d.*")),
    (".bss", (".bss", ".bss.*", ".gnu.linkonce.b.*", "COMMON")),
)
_KEEP = (".vectors", ".text.mcuqp_profile_begin", ".text.mcuqp_profile_mark", ".text.mcuqp_profile_end",
         ".preinit_array", ".init_array", ".fini_array")
_KEEP_FIRST = _KEEP[1:4]
_END_ALIGN = {".data": 4, ".bss": 4}  # `. = ALIGN(4)` at the end of these output sections
_SCRIPT_ALIGN = {".rodata": 16, ".data": 16, ".bss": 16}  # `: ALIGN(16)` in link.ld.in
_FLASH_ORDER = (".vectors", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array")
_FLASH_KINDS = {".rodata": "rodata", ".data": "data", ".bss": "bss"}  # everything else counts as text


def _match(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def _output_of(sec: _Section) -> str | None:
    for out, patterns in _OUTPUT_RULES:
        if any(_match(sec.name, p) for p in patterns):
            return out
    return None


def _define(table: dict[str, tuple[_Object, _Symbol]], obj: _Object) -> None:
    for s in obj.symbols:
        if s.bind == STB_LOCAL or not s.defined or not s.name:
            continue
        old = table.get(s.name)
        if old is None or (old[1].bind == STB_WEAK and s.bind != STB_WEAK):
            table[s.name] = (obj, s)


def _undefined(objects: Iterable[_Object], table: dict[str, tuple[_Object, _Symbol]]) -> set[str]:
    return {s.name for o in objects for s in o.symbols
            if not s.defined and s.bind != STB_WEAK and s.name and s.name not in table}


def _resolve(objects: list[_Object], libraries: Iterable[Path]) -> tuple[list[_Object], dict]:
    """Pull archive members for undefined symbols, as ld does with --start-group."""
    objects = list(objects)
    table: dict[str, tuple[_Object, _Symbol]] = {}
    for o in objects:
        _define(table, o)
    archives = [_load_archive(p, p.stat().st_mtime) for p in libraries]
    loaded: set[tuple[int, int]] = set()
    changed = True
    while changed:
        changed = False
        for ai, ar in enumerate(archives):
            undefined = _undefined(objects, table)
            for sym, offset in ar.index:
                if sym in undefined and (ai, offset) not in loaded and sym not in table:
                    loaded.add((ai, offset))
                    member = ar.member(offset)
                    objects.append(member)
                    _define(table, member)
                    undefined = _undefined(objects, table)
                    changed = True
    return objects, table


def _target(obj: _Object, sym_index: int, table: dict) -> tuple[_Object, _Symbol] | None:
    if sym_index >= len(obj.symbols):
        return None
    s = obj.symbols[sym_index]
    if s.defined or s.bind == STB_LOCAL:
        return (obj, s) if s.defined else None
    return table.get(s.name)


def _gc(objects: list[_Object], table: dict, roots: list[str]) -> set[_Section]:
    """Sections reachable from the roots along relocations (ld --gc-sections)."""
    todo: list[_Section] = []
    for name in roots:
        hit = table.get(name)
        if hit is not None and (sec := hit[0].section_of(hit[1])) is not None:
            todo.append(sec)
    for o in objects:
        todo += [s for s in o.sections if s.alloc and any(_match(s.name, k) for k in _KEEP)]
    kept: set[_Section] = set()
    while todo:
        sec = todo.pop()
        if sec in kept:
            continue
        kept.add(sec)
        for sym_index, _ in sec.relocs:
            hit = _target(sec.obj, sym_index, table)
            if hit is not None and (t := hit[0].section_of(hit[1])) is not None and t not in kept:
                todo.append(t)
    # Unwind tables follow the code they describe (SHF_LINK_ORDER).
    for o in objects:
        for s in o.sections:
            if s.type == SHT_ARM_EXIDX and s.link < len(o.sections) and o.sections[s.link] in kept:
                kept.add(s)
    return kept


@dataclass(eq=False)
class _String:
    text: bytes  # with its terminating NUL
    align: int  # 0: dropped (a duplicate with more alignment exists, or merged as a suffix)
    sec: _Section


def _merged_sizes(sections: list[_Section]) -> dict[_Section, int]:
    """Sizes of mergeable string sections after ld 2.40's merging (bfd/merge.c): each string
    keeps the alignment of its offset (up to the section's), a string already kept by an
    earlier section of the same kind is dropped, a string that ends another one at a
    compatible alignment becomes that string's tail, and each section lays out the strings
    it still owns."""
    groups: dict[tuple, tuple[list[_String], dict[bytes, _String]]] = {}
    merged: list[_Section] = []
    for sec in sections:
        if not (sec.flags & SHF_MERGE and sec.flags & SHF_STRINGS and sec.entsize == 1):
            continue
        merged.append(sec)
        order, table = groups.setdefault((_output_of(sec), sec.align), ([], {}))
        data, mask, p, nul = sec.contents(), sec.align - 1, 0, False

        def add(text: bytes, align: int) -> None:
            old = table.get(text)
            if old is not None and old.align >= align:
                return
            if old is not None:
                old.align = 0
            table[text] = entry = _String(text, align, sec)
            order.append(entry)

        while p < len(data):
            low, end = p & -p, data.find(b"\0", p) + 1 or len(data)
            add(data[p:end], low if 0 < low <= mask else mask + 1)
            p = end
            while p < len(data) and data[p] == 0:
                if not nul and not p & mask:
                    nul = True
                    add(b"\0", mask + 1)
                p += 1
    for order, _ in groups.values():
        kept = [e for e in order if e.align]
        aligns = {e.align for e in kept}
        uniform = aligns.pop() if len(aligns) == 1 else 1  # strrevcmp_align: group by length mod alignment
        kept.sort(key=lambda e: ((len(e.text) - 1) % uniform, e.text[:-1][::-1]))
        if kept:
            longer = kept[-1]
            for e in reversed(kept[:-1]):
                if (longer.align >= e.align and len(longer.text) > len(e.text)
                        and (len(longer.text) - len(e.text)) % e.align == 0 and longer.text.endswith(e.text)):
                    e.align = 0
                else:
                    longer = e
    sizes = {sec: 0 for sec in merged}
    for order, _ in groups.values():
        for e in order:
            if e.align:
                sizes[e.sec] = (sizes[e.sec] + e.align - 1) // e.align * e.align + len(e.text)
    return sizes


def _link(objects: list[_Object], libraries: tuple[Path, ...], roots: list[str]) -> _Link:
    objects, table = _resolve(objects, libraries)
    kept_set = _gc(objects, table, roots)
    kept = [s for o in objects for s in o.sections if s in kept_set and s.alloc]
    sizes = {s: s.size for s in kept}
    sizes.update(_merged_sizes(kept))
    output: dict[str, list[_Section]] = {}
    orphans: list[_Section] = []
    first = [s for s in kept if s.name in _KEEP_FIRST]  # the KEEP(markers) statement opens .text
    for s in first + [s for s in kept if s not in first]:
        out = _output_of(s)
        if out is None:
            if sizes[s]:
                orphans.append(s)
            continue
        output.setdefault(out, []).append(s)
    if orphans:
        names = ", ".join(sorted({f"{s.name} ({s.obj.name})" for s in orphans}))
        raise McuqpError(f"sections outside the linker script's rules would be linked: {names}; "
                         "extend mcuqp/plan/footprint.py's section rules together with link.ld.in")
    out_sizes, out_align = {}, {}
    for out, secs in output.items():
        pos = 0
        for s in secs:
            pos = _align(pos, s.align) + sizes[s]
        out_sizes[out] = _align(pos, _END_ALIGN.get(out, 1))
        out_align[out] = max([_SCRIPT_ALIGN.get(out, 1), *(s.align for s in secs)])
    return _Link(objects, table, kept, sizes, output, out_sizes, out_align)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _extents(link: _Link, stack_reserved: int) -> tuple[int, int]:
    """Bytes of the FLASH and RAM regions the linked image spans (sections plus the gaps their
    alignment leaves between them): the smallest budgets the linker script accepts."""
    pos = 0
    for out in _FLASH_ORDER:
        if link.output_sizes.get(out):
            pos = _align(pos, link.output_align[out]) + link.output_sizes[out]
    data, bss = link.output_sizes.get(".data", 0), link.output_sizes.get(".bss", 0)
    flash = _align(pos, link.output_align.get(".data", 16)) + data if data else pos
    ram = _align(stack_reserved, 8)
    ram = _align(ram, link.output_align.get(".data", 16)) + data
    ram = _align(ram, link.output_align.get(".bss", 16)) + bss
    return flash, ram


# --- stack: call-graph bound ----------------------------------------------------------


def _frames(link: _Link) -> dict[_Section, int]:
    frames: dict[_Section, int] = {}
    for sec in link.kept:
        if not sec.flags & SHF_EXECINSTR:
            continue
        funcs = [s.name for s in sec.obj.symbols if s.type == STT_FUNC and sec.obj.section_of(s) is sec]
        table = sec.obj.frames
        if not all(f in table for f in funcs):
            table = {**_disassembly_frames(sec.obj.data), **table}
        frames[sec] = max((table.get(f, 0) for f in funcs), default=0)
    return frames


def _frame_of(link: _Link, function: str) -> int:
    hit = link.globals.get(function)
    sec = hit[0].section_of(hit[1]) if hit else None
    if sec is None:
        raise McuqpError(f"{function} is not defined by the compiled sources; cannot bound the stack")
    return _frames(link).get(sec, 0)


def _callees(sec: _Section, link: _Link) -> tuple[set[_Section], set[_Section]]:
    calls, tails = set(), set()
    for sym_index, rtype in sec.relocs:
        if rtype in R_ARM_CALLS or rtype in R_ARM_TAIL_CALLS:
            hit = _target(sec.obj, sym_index, link.globals)
            t = hit[0].section_of(hit[1]) if hit else None
            if t is not None and t is not sec:
                (calls if rtype in R_ARM_CALLS else tails).add(t)
    return calls, tails


def _function_name(sec: _Section) -> str:
    funcs = [s.name for s in sec.obj.symbols if s.type == STT_FUNC and sec.obj.section_of(s) is sec]
    return funcs[0] if funcs else f"{sec.obj.name}:{sec.name}"


def _stack_depth(link: _Link, root: str, exclude: frozenset[str] = frozenset()) -> tuple[int, list[str]]:
    """Deepest stack use from entering `root`, and that call path."""
    frames = _frames(link)
    memo: dict[_Section, tuple[int, list[str]]] = {}
    active: set[_Section] = set()

    def depth(sec: _Section) -> tuple[int, list[str]]:
        if sec in memo:
            return memo[sec]
        if sec in active:
            raise McuqpError(f"recursion through {_function_name(sec)}: the stack has no static bound")
        active.add(sec)
        calls, tails = _callees(sec, link)
        me = frames.get(sec, 0)
        best, path = me, []
        for t in calls:
            if _function_name(t) in exclude:
                continue
            d, p = depth(t)
            if me + d > best:
                best, path = me + d, p
        for t in tails:
            if _function_name(t) in exclude:
                continue
            d, p = depth(t)
            if d > best:
                best, path = d, p
        active.discard(sec)
        memo[sec] = (best, [_function_name(sec), *path])
        return memo[sec]

    hit = link.globals.get(root)
    if hit is None or (sec := hit[0].section_of(hit[1])) is None:
        raise McuqpError(f"{root} is not defined by the compiled sources; cannot bound the stack")
    return depth(sec)


# --- the public API -----------------------------------------------------------------


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


_LAYER_SYMBOL = re.compile(r"^l(\d+)_(\w+)$")
_WEIGHT_SUFFIX = re.compile(r"^(weights|bias|in\d+)$")


def predict_footprint(
    graph: Graph,
    plan: MemoryPlan,
    generated: GeneratedModel,
    board: Board | str,
    *,
    firmware: FirmwareKind = "verify",
    stack_bytes_reserved: int = build.DEFAULT_STACK_BYTES,
) -> Footprint:
    """Flash and RAM of `generated` linked for `board`, without linking it.

    firmware="verify": the image `mcuqp verify` builds (model, kernels, platform and
    verification main; flash and RAM as verify reports them). firmware="library": what the
    model adds to an application (model.c, kernels and the libc members they need, no
    profiling hooks); its stack is that of mcuqp_model_invoke alone.
    """
    b = board if isinstance(board, Board) else load_board(board)
    if firmware not in ("verify", "library"):
        raise McuqpError(f"firmware {firmware!r}: give 'verify' or 'library'")
    if generated.arena_bytes != plan.arena_bytes:
        raise McuqpError(f"the generated model has a {generated.arena_bytes} B arena but the plan "
                         f"{plan.arena_bytes} B; pass the plan the model was generated from")
    verify = firmware == "verify"
    model_dir = _model_dir(generated)
    srcs = [model_dir / "model.c", *generated.kernels, *(build.platform_sources(b) if verify else [])]
    with tempfile.TemporaryDirectory(prefix="mcuqp-footprint-") as work:
        objs = _compile([Path(s) for s in srcs], model_dir, b, _defines(generated, profile=verify), Path(work))
        objects = []
        for o in objs:
            obj = _parse_elf(o.name, o.read_bytes())
            obj.frames = _read_su(o.with_suffix(".su"))
            objects.append(obj)
    link = _link(objects, _libraries(tuple(b.gcc_flags)), [ENTRY] if verify else [LIBRARY_ENTRY])
    if verify:
        # Reset_Handler's own frame is not painted; what it calls before main is painted over.
        main_depth, path = _stack_depth(link, "main", exclude=AFTER_MEASUREMENT)
        stack, stack_path = _frame_of(link, ENTRY) + main_depth, [ENTRY, *path]
    else:
        stack, stack_path = _stack_depth(link, LIBRARY_ENTRY)

    text = sum(n for out, n in link.output_sizes.items() if out not in _FLASH_KINDS)
    rodata, data, bss = (link.output_sizes.get(k, 0) for k in (".rodata", ".data", ".bss"))
    flash = text + rodata + data
    breakdown, layers, arena = _attribute(graph, plan, link, objects, len(generated.kernels))
    breakdown["flash.alignment"] = flash - sum(v for k, v in breakdown.items() if k.startswith("flash."))
    breakdown.update({"ram.arena": arena, "ram.data": data, "ram.other_bss": bss - arena, "ram.stack": stack})
    linked_flash, linked_ram = _extents(link, stack_bytes_reserved)
    return Footprint(
        board=b.name, firmware=firmware, flash_bytes=flash, ram_bytes=data + bss + stack, stack_bytes=stack,
        text=text, rodata=rodata, data=data, bss=bss, arena_bytes=arena,
        stack_reserved_bytes=int(stack_bytes_reserved), linked_flash_bytes=linked_flash,
        linked_ram_bytes=linked_ram, breakdown=breakdown, layers=layers, stack_path=stack_path,
        arena_peak=_arena_peak(graph, plan),
    )


def _attribute(graph: Graph, plan: MemoryPlan, link: _Link, compiled: list[_Object],
               n_kernels: int) -> tuple[dict[str, int], list[LayerFlash], int]:
    """Flash parts (weights, params, code by origin), per-layer constant bytes, arena bytes.
    `compiled` is model.o, then the kernels' objects, then the platform's."""
    model = compiled[0]
    kernel_objs = set(compiled[1:1 + n_kernels])
    weights: dict[int, int] = {}
    params: dict[int, int] = {}
    parts = {"flash.weights": 0, "flash.params": 0, "flash.invoke_code": 0, "flash.kernels": 0,
             "flash.platform": 0, "flash.libc": 0, "flash.data": 0}
    arena = 0
    for sec in link.kept:
        n = link.sizes[sec]
        out = _output_of(sec)
        if out == ".bss":
            if sec.obj is model and sec.name.endswith("mcuqp_arena"):
                arena += n
            continue
        if out == ".data":
            parts["flash.data"] += n
            continue
        if sec.obj is model:
            sym = sec.name.split(".")[-1]
            m = _LAYER_SYMBOL.match(sym)
            if m and out == ".rodata":
                i = int(m.group(1))
                bucket = weights if _WEIGHT_SUFFIX.match(m.group(2)) else params
                bucket[i] = bucket.get(i, 0) + n
                parts["flash.weights" if bucket is weights else "flash.params"] += n
            else:
                parts["flash.invoke_code"] += n
        elif sec.obj in kernel_objs:
            parts["flash.kernels"] += n
        elif "(" in sec.obj.name:
            parts["flash.libc"] += n
        else:
            parts["flash.platform"] += n
    layers = []
    for i, op_i in enumerate(plan.order):
        if i in weights or i in params:
            op = graph.ops[op_i]
            layers.append(LayerFlash(i, op.name, op.kind.value, weights.get(i, 0), params.get(i, 0)))
    return parts, layers, arena


def _arena_peak(graph: Graph, plan: MemoryPlan) -> str:
    step = plan.peak_step
    if step is None:
        return ""
    info = plan.steps[step]
    return f"{info.op}: {len(info.live)} live tensors, {info.storage_bytes:,} B"


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
