"""The runtime C and generated models are warning-free under strict flags on host gcc, clang
and arm-none-eabi-gcc, cppcheck clean, and free of dynamic allocation and recursion.

Locally a missing tool or ../shared/ skips with the reason; with CI set it fails."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mcuqp import api
from mcuqp.codegen.project import EXAMPLE_SOURCES
from mcuqp.codegen.provenance import model_header
from mcuqp.errors import McuqpError
from mcuqp.target import build
from mcuqp.target.boards import load_board
from mcuqp.target.footprint import call_graph, read_stack_usage
from mcuqp.target.mapfile import input_sections

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "runtime_c" / "src"
INCLUDE = ROOT / "runtime_c" / "include"
FIXTURES = ROOT.parent / "shared" / "models" / "fixtures"
BOARDS = sorted(p.stem for p in (ROOT / "boards").glob("*.toml"))
STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion", "-Wshadow", "-Werror"]
VARIANTS = ("mve", "dsp")  # feature folders of runtime_c/src, most specific first
ALLOCATORS = {"malloc", "calloc", "realloc", "free", "alloca", "_malloc_r", "_calloc_r", "_realloc_r", "_free_r",
              "_sbrk", "_sbrk_r", "sbrk"}
CPPCHECK = ["cppcheck", "--enable=warning,style,performance,portability", "--std=c99", "--quiet",
            "--error-exitcode=1", "--inline-suppr"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} not installed (make toolchain installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _shared(name: str) -> Path:
    p = FIXTURES / name
    if not p.exists():
        msg = f"{p} not present: the shared models folder sits beside the repository"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return p


def _kernels(features: frozenset[str]) -> list[Path]:
    """Every kernel a board with `features` builds: the portable file, or its variant."""
    chosen = {p.name: p for p in sorted(SRC.glob("*.c"))}
    for feature in reversed(VARIANTS):
        if feature in features:
            chosen.update({p.name: p for p in sorted((SRC / feature).glob("*.c"))})
    return sorted(chosen.values())


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, list[Path]]:
    """Generated library folders (NAME.c plus copied kernels), per board."""
    _need(build.CC)
    out: dict[str, list[Path]] = {}
    for board in ("mps2-an385", "mps2-an386", "mps3-an547"):
        for name in ("mixed28_int8.tflite", "digits_int8.tflite"):
            loaded = api.load(_shared(name), n_random=1)
            res = api.compile(loaded, tmp_path_factory.mktemp("gen") / f"{Path(name).stem}-{board}", board=board)
            out.setdefault(board, []).append(res.out_dir)
    return out


def _model_c(folder: Path) -> Path:
    return model_header(folder).with_suffix(".c")


def _compile(cmd: list[str], files: list[Path], includes: list[Path], cwd: Path) -> None:
    """Compile each file (objects into cwd, two at a time); fail with the first diagnostics."""
    def one(f: Path) -> tuple[Path, subprocess.CompletedProcess]:
        return f, subprocess.run([*cmd, *STRICT, *[f"-I{d}" for d in includes], "-c", str(f), "-o",
                                  f"{f.parent.name}_{f.stem}.o"], capture_output=True, text=True, cwd=cwd)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for f, r in pool.map(one, files):
            assert r.returncode == 0, f"{cmd[0]} {f}:\n{r.stderr[:2000]}"


@pytest.mark.slow
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_host_compilers_are_warning_free(compiler, generated, tmp_path):
    cc = _need(compiler)
    files = sorted(SRC.glob("*.c")) + sorted((SRC / "dsp").glob("*.c"))
    _compile([cc], files, [INCLUDE], tmp_path)
    for folder in generated["mps2-an386"]:
        _compile([cc], sorted(folder.glob("*.c")), [folder], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
def test_arm_gcc_is_warning_free_on_every_board(board, generated, tmp_path):
    cc = _need(build.CC)
    b = load_board(board)
    _compile([cc, *b.gcc_flags], _kernels(b.features), build.platform_include_dirs(), tmp_path)
    folders = generated.get(board) or generated["mps2-an386"][:1]  # verify_main.c includes a NAME.h
    for folder in folders:
        files = sorted(folder.glob("*.c")) + build.platform_sources(b)
        verify = [f"-D{d}" for d in build.verify_defines(model_header(folder).stem)]
        _compile([cc, *b.gcc_flags, *verify], files, [folder, *build.platform_include_dirs()], tmp_path)


def test_cppcheck_is_clean(generated):
    tool = _need("cppcheck")
    folders = [f for fs in generated.values() for f in fs]
    for target, inc in [([SRC, INCLUDE], INCLUDE), *[([_model_c(f)], f) for f in folders]]:
        r = subprocess.run([tool, *CPPCHECK, f"-I{inc}", *map(str, target)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr[:3000]


_ALLOC_CALL = re.compile(r"\b(" + "|".join(sorted(ALLOCATORS)) + r")\s*\(")


def test_sources_call_no_allocator(generated):
    offenders = [str(p) for p in [*SRC.rglob("*.c"), *INCLUDE.glob("*.h"),
                                  *[_model_c(f) for fs in generated.values() for f in fs]]
                 if _ALLOC_CALL.search(re.sub(r"/\*.*?\*/", "", p.read_text(), flags=re.S))]
    assert not offenders, f"dynamic allocation in {offenders}"


def _link_graph(sources: list[Path], board: str, out: Path, ldflags: list[str], includes: tuple[Path, ...] = (),
                defines: tuple[str, ...] = ()):
    b = load_board(board)
    out.mkdir(parents=True, exist_ok=True)
    objs = build.compile_objects(sources, includes, b, out, defines=["MCUQP_PROFILE", *defines])
    elf, map_path = build.link_objects(objs, b, out, b.flash_size, b.ram_size, 4096, ldflags=ldflags)
    return call_graph(elf, input_sections(map_path), {o.name: read_stack_usage(o.with_suffix(".su")) for o in objs})


def _assert_static(graph) -> None:
    names = set(graph.names.values())
    assert not names & ALLOCATORS, f"the image links an allocator: {sorted(names & ALLOCATORS)}"
    for function in sorted(names):
        graph.depth(function)  # raises McuqpError on a cycle


@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2-an385", "mps2-an386", "mps3-an547"])
def test_every_kernel_links_without_allocation_or_recursion(board, tmp_path):
    """All kernels a board builds, linked without --gc-sections: the whole call graph is acyclic."""
    _need(build.CC)
    b = load_board(board)
    graph = _link_graph(_kernels(b.features), board, tmp_path, ["-Wl,--no-gc-sections", "-Wl,--entry=0"])
    assert any(n.startswith("mcuqp_") for n in graph.names.values())
    _assert_static(graph)


@pytest.mark.slow
def test_verification_images_have_no_allocation_or_recursion(generated, tmp_path):
    for board, folders in generated.items():
        for folder in folders:
            # the library and the verification platform; the CMake example main.c is another program
            srcs = sorted(f for f in folder.glob("*.c") if f.name not in EXAMPLE_SOURCES) + build.platform_sources(board)
            graph = _link_graph(srcs, board, tmp_path / f"{board}-{folder.name}", [], (folder,),
                                tuple(build.verify_defines(model_header(folder).stem)))
            assert graph.depth("Reset_Handler")[1][:2] == ["Reset_Handler", "main"]
            _assert_static(graph)


def test_the_recursion_check_can_fail(tmp_path):
    _need(build.CC)
    src = tmp_path / "rec.c"
    src.write_text("#include <stdint.h>\n"
                   "__attribute__((noipa)) int32_t odd(int32_t n);\n"
                   "__attribute__((noipa)) int32_t even(int32_t n) { return n == 0 ? 1 : 3 * odd(n - 1) + 1; }\n"
                   "__attribute__((noipa)) int32_t odd(int32_t n) { return n == 0 ? 0 : 3 * even(n - 1) + 1; }\n")
    graph = _link_graph([src], "mps2-an386", tmp_path / "out", ["-Wl,--no-gc-sections", "-Wl,--entry=0"])
    with pytest.raises(McuqpError, match="recursion through (even|odd)"):
        _assert_static(graph)
