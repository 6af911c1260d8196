"""Read a GNU ld map file: bytes each object file contributes to each output section."""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_OUT = re.compile(r"^(\.[\w.]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+")
_OUT_NAME_ONLY = re.compile(r"^(\.[\w.]+)\s*$")
_IN_FULL = re.compile(r"^ (\.\S+|COMMON)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")
_IN_NAME = re.compile(r"^ (\.\S+|COMMON)\s*$")
_IN_CONT = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")

FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".data", ".ARM.exidx", ".ARM.extab")


@dataclass(frozen=True)
class InputSection:
    output: str  # output section, e.g. .rodata
    name: str  # input section, e.g. .rodata.l3_weights
    address: int
    size: int
    obj: str  # object file name (basename, or archive(member))


def input_sections(map_path: Path) -> list[InputSection]:
    """Every input section the link placed, in placement order (alignment fill left out)."""
    rows: list[InputSection] = []
    in_memory_map = False
    current: str | None = None
    pending: str | None = None
    for line in Path(map_path).read_text(errors="replace").splitlines():
        if not in_memory_map:
            in_memory_map = line.startswith("Linker script and memory map")
            continue
        m = _OUT.match(line) or _OUT_NAME_ONLY.match(line)
        if m:
            current, pending = m.group(1), None
            continue
        if current is None:
            continue
        m = _IN_FULL.match(line)
        if m:
            rows.append(InputSection(current, m.group(1), int(m.group(2), 16), int(m.group(3), 16),
                                     Path(m.group(4)).name))
            pending = None
            continue
        m = _IN_NAME.match(line)
        if m:
            pending = m.group(1)
            continue
        if pending is not None and (m := _IN_CONT.match(line)):
            rows.append(InputSection(current, pending, int(m.group(1), 16), int(m.group(2), 16),
                                     Path(m.group(3)).name))
        pending = None
    return rows


def object_section_sizes(map_path: Path) -> dict[str, dict[str, int]]:
    """{output section: {object file name (basename, or archive(member)): bytes}}."""
    sizes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in input_sections(map_path):
        if row.size:
            sizes[row.output][row.obj] += row.size
    return {k: dict(v) for k, v in sizes.items()}


def flash_bytes_of(map_path: Path, objects: set[str]) -> int:
    """Flash bytes (text, rodata, data load image, vectors) contributed by the named objects."""
    table = object_section_sizes(map_path)
    return sum(n for sec in FLASH_SECTIONS for obj, n in table.get(sec, {}).items() if obj in objects)


RAM_SECTIONS = (".data", ".bss", "COMMON")


def ram_bytes_of(map_path: Path, objects: set[str]) -> int:
    """Static RAM bytes (data + bss) of the named objects."""
    table = object_section_sizes(map_path)
    return sum(n for sec in RAM_SECTIONS for obj, n in table.get(sec, {}).items() if obj in objects)
