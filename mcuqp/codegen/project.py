"""The firmware folder around the generated library: a CMake project with a static-library
target, an example `main.c` that runs one inference and checks its output, a toolchain file
with the board's compiler flags, a README, and (in `qemu/`) the bare-metal startup and linker
script that run the example on the board's QEMU stand-in.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from mcuqp.codegen.emit import GeneratedModel, _qparams, library_target
from mcuqp.ir import Graph
from mcuqp.resources import RUNTIME_DIR, TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR
PLATFORM = RUNTIME_DIR / "platform"
QEMU_FILES = ("startup.c", "semihost.c", "mcuqp_platform.h")
EXAMPLE_SOURCES = ("main.c",)  # beside the library's sources, not part of it
OPT = "-O2"
COMMON_CFLAGS = ("-ffunction-sections", "-fdata-sections")


@dataclass(frozen=True)
class ProjectInfo:
    """What the folder says about its board and memory (plain values: no board lookup here)."""

    board: str
    description: str
    target_flags: tuple[str, ...]  # -mcpu, -mthumb, float ABI: compile and link
    qemu_machine: str
    stand_in: str
    notes: str
    linker_script: str  # for the stand-in's memory map, budgets as memory lengths
    stack_bytes: int | None  # predicted stack of NAME_invoke
    stack_reserved_bytes: int
    flash_bytes: int | None
    ram_bytes: int | None


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def _c_values(values: np.ndarray) -> str:
    v = [str(int(x)) for x in np.asarray(values, dtype=np.int8).reshape(-1)]
    return "\n".join("    " + ", ".join(v[i : i + 16]) + "," for i in range(0, len(v), 16))


def _fmt(n: int | None) -> str:
    return "unknown (no toolchain)" if n is None else f"{n:,}"


def write_project(out_dir: Path, graph: Graph, gen: GeneratedModel, info: ProjectInfo,
                  example_input: np.ndarray, example_output: np.ndarray, *, rounding: str) -> list[Path]:
    """Write the project files beside the library in `out_dir`; returns them."""
    env = _env()
    name = gen.name
    target = library_target(name)  # the library target emit's CMakeLists.txt names
    cflags = [*info.target_flags, *COMMON_CFLAGS]
    in_s, in_zp = _qparams(graph.input)
    out_s, out_zp = _qparams(graph.output)
    ctx = dict(name=name, NAME=name.upper(), board=info.board, description=info.description, target=target, cflags=cflags,
               target_flags=list(info.target_flags), opt=OPT, qemu_machine=info.qemu_machine,
               stand_in=info.stand_in, notes=info.notes, example=True,
               single_rounding=int(rounding == "single"),
               sources=[gen.source_name, *(k.name for k in gen.kernels)],
               input_size=graph.input.size, output_size=graph.output.size,
               input_shape="x".join(str(d) for d in graph.input.shape[1:]),
               input_scale=repr(float(in_s)), input_zero_point=int(in_zp),
               output_scale=repr(float(out_s)), output_zero_point=int(out_zp),
               arena_bytes=f"{gen.arena_bytes:,}", stack_bytes=_fmt(info.stack_bytes),
               stack_reserved_bytes=f"{info.stack_reserved_bytes:,}", flash_bytes=_fmt(info.flash_bytes),
               ram_bytes=_fmt(info.ram_bytes),
               input=_c_values(example_input), expected=_c_values(example_output))
    files = {
        "CMakeLists.txt": env.get_template("CMakeLists.txt.j2").render(**ctx),
        "arm-none-eabi.cmake": env.get_template("project/arm-none-eabi.cmake.j2").render(**ctx),
        "main.c": env.get_template("project/main.c.j2").render(**ctx),
        "example_io.h": env.get_template("project/example_io.h.j2").render(**ctx),
        "README.md": env.get_template("project/README.md.j2").render(**ctx),
        "qemu/link.ld": info.linker_script,
    }
    written = []
    (out_dir / "qemu").mkdir(exist_ok=True)
    for rel, text in files.items():
        (out_dir / rel).write_text(text)
        written.append(out_dir / rel)
    for f in QEMU_FILES:
        written.append(Path(shutil.copy2(PLATFORM / f, out_dir / "qemu" / f)))
    return written
