"""The generated firmware API (issue 13): `--name NAME` gives NAME.c / NAME.h with
NAME_input / NAME_output / NAME_invoke / NAME_run, a caller-provided arena, section macros
and per-layer hooks; two models link into one image for the M4 and run bit-exact on QEMU."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile

from mcuqp import api
from mcuqp.cli import main
from mcuqp.codegen.emit import check_name, default_name
from mcuqp.errors import McuqpError
from mcuqp.reference.interpreter import run as reference_run
from mcuqp.target import build
from mcuqp.target.boards import load_board

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "fixtures"
BOARD = "mps2-an386"  # Cortex-M4
STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wconversion", "-Wsign-conversion", "-Wshadow", "-Werror"]
N = 3  # inputs per model


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} not installed (make toolchain installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _model(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        msg = f"{path} missing (the shared test models)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def test_default_names_are_c_identifiers_and_bad_names_are_refused():
    assert default_name("models/vww-96.int8.tflite") == "vww_96_int8"
    assert default_name("2layer.pt") == "m_2layer" and default_name("int.tflite") == "int_model"
    assert default_name("mcuqp_demo.pt") == "m_mcuqp_demo" and default_name("-.pt") == "m"
    assert default_name("DigitsCNN") == "model"  # an in-memory module's class name: no file
    assert check_name("kws") == "kws"
    for bad in ("2x", "my-model", "int", "_x", "", "mcuqp_kws", "a" * 41):
        with pytest.raises(McuqpError, match="is not usable as a C prefix"):
            check_name(bad)


@pytest.mark.parametrize("bad", ["9lives", "my-net", "static"])
def test_cli_refuses_an_invalid_name_in_one_line(bad, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compile", str(_model("digits_int8.tflite")), "--name", bad, "-o", str(out)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mcuqp: error: ") and "--name" in lines[0], r.output
    assert "Traceback" not in r.output and not out.exists()


def test_named_library_files_and_prefixed_symbols(tmp_path):
    res = api.compile(api.load(_model("digits_int8.tflite"), n_random=1), tmp_path / "lib", name="kws",
                      project=True)
    names = {f.name for f in res.files}
    assert {"kws.c", "kws.h", "kws.mk"} <= names and not {"model.c", "model.h"} & names
    h, c = (tmp_path / "lib" / "kws.h").read_text(), (tmp_path / "lib" / "kws.c").read_text()
    for decl in ("int8_t *kws_input(void);", "const int8_t *kws_output(void);", "int kws_invoke(void);",
                 "int kws_run(const int8_t *in, int8_t *out);", "int kws_set_arena(int8_t *arena, size_t size);",
                 "#define KWS_INPUT_SIZE ", "#define KWS_OUTPUT_SIZE ", "#define KWS_ARENA_SIZE ",
                 "#define KWS_INPUT_ZERO_POINT ", "#define KWS_OUTPUT_SCALE ", "#define KWS_LAYER_HOOK(index, phase)",
                 "KWS_ARENA_SECTION", "KWS_WEIGHTS_SECTION", "KWS_EXTERNAL_ARENA", "KWS_LAYER_NAMES"):
        assert decl in h, decl
    assert "memcpy" not in c.split("int kws_invoke(void)")[1].split("int kws_run")[0]  # invoke copies nothing
    assert "mcuqp_arena" not in c and "MCUQP_MODEL" not in h
    main_c = (tmp_path / "lib" / "main.c").read_text()
    assert "kws_input()" in main_c and "kws_invoke()" in main_c


def _lib_objects(folder: Path, name: str, b, out: Path, defines: list[str], flags: tuple[str, ...] = ()) -> Path:
    """The folder's sources compiled with the strict warnings into lib<name>.a."""
    cc = _need(build.CC)
    out.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in sorted(folder.glob("*.c")):
        if src.name == "main.c":
            continue
        obj = out / f"{src.stem}.o"
        r = subprocess.run([cc, *b.gcc_flags, *STRICT, "-ffunction-sections", "-fdata-sections", *flags,
                            *[f"-D{d}" for d in defines], f"-I{folder}", "-c", str(src), "-o", str(obj)],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name} ({' '.join(defines)}):\n{r.stderr[:3000]}"
        objs.append(obj)
    lib = out.parent / f"lib{name}.a"
    subprocess.run([_need("arm-none-eabi-ar"), "rcs", str(lib), *map(str, objs)], check=True)
    return lib


def _c_bytes(a: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in np.asarray(a, dtype=np.int8).reshape(-1))


MAIN_C = r"""
#include <stdint.h>
#include <string.h>

#define DIGITS_LAYER_NAMES /* as digits.c was built: declares digits_layer_names[] */
#include "digits.h"
#include "mixed.h"
#include "expected.h"

/* digits: profiling build (hooks record every call) */
static int32_t hook_calls[2 * DIGITS_LAYER_COUNT + 4][2];
static uint32_t hook_count;

void record_hook(int32_t index, int32_t phase)
{
    if (hook_count < sizeof hook_calls / sizeof hook_calls[0]) {
        hook_calls[hook_count][0] = index;
        hook_calls[hook_count][1] = phase;
    }
    ++hook_count;
}

/* mixed: built with MIXED_EXTERNAL_ARENA; the caller's arena, shared with nothing else */
static int8_t caller_arena[MIXED_ARENA_SIZE + 16] __attribute__((aligned(16)));
static int8_t mixed_out[MIXED_OUTPUT_SIZE];

int main(void)
{
    uint32_t k;
    int32_t i;

    /* set_arena refuses an arena that is too small or misaligned, and keeps the old one */
    if (digits_set_arena(caller_arena, DIGITS_ARENA_SIZE - 1) != DIGITS_ERROR_ARENA_TOO_SMALL) {
        return 20;
    }
    if (mixed_set_arena(caller_arena + 1, MIXED_ARENA_SIZE) != MIXED_ERROR_ARENA_ALIGN) {
        return 21;
    }
    if (mixed_invoke() != MIXED_ERROR_NO_ARENA || mixed_input() != NULL) {
        return 22;
    }
    if (mixed_set_arena(caller_arena, sizeof caller_arena) != 0 || mixed_input() == NULL) {
        return 23;
    }

    for (k = 0; k < N_INPUTS; ++k) {
        /* digits without copies: the input goes straight into its arena */
        memcpy(digits_input(), digits_inputs[k], DIGITS_INPUT_SIZE);
        hook_count = 0;
        if (digits_invoke() != 0) {
            return 30;
        }
        if (memcmp(digits_output(), digits_expected[k], DIGITS_OUTPUT_SIZE) != 0) {
            return 31;
        }
        if (hook_count != 2u * DIGITS_LAYER_COUNT) {
            return 32;
        }
        for (i = 0; i < 2 * DIGITS_LAYER_COUNT; ++i) {
            if (hook_calls[i][0] != i / 2 || hook_calls[i][1] != (i % 2 ? DIGITS_LAYER_AFTER : DIGITS_LAYER_BEFORE)) {
                return 33;
            }
        }
        /* mixed with the copying convenience call */
        if (mixed_run(mixed_inputs[k], mixed_out) != 0) {
            return 40;
        }
        if (memcmp(mixed_out, mixed_expected[k], MIXED_OUTPUT_SIZE) != 0) {
            return 41;
        }
    }
    for (i = 0; i < DIGITS_LAYER_COUNT; ++i) {
        if (strcmp(digits_layer_names[i], layer_names[i]) != 0) {
            return 50;
        }
    }
    return 0;
}
"""


def _symbol_sections(obj: Path) -> dict[str, str]:
    """symbol -> name of the section it is defined in (pyelftools, one object file)."""
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        names = {i: s.name for i, s in enumerate(elf.iter_sections())}
        return {s.name: names[s["st_shndx"]] for s in elf.get_section_by_name(".symtab").iter_symbols()
                if isinstance(s["st_shndx"], int) and s.name}


def _symbols(elf_path: Path) -> dict[str, int]:
    with open(elf_path, "rb") as f:
        return {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols() if s.name}


@pytest.mark.qemu
def test_two_models_in_one_m4_image_run_bit_exact(tmp_path):
    """digits (static arena placed by section macros, hooks, layer names) and mixed
    (external arena, NAME_run) from two static libraries, one main.c, on QEMU."""
    qemu = _need("qemu-system-arm")
    b = load_board(BOARD)
    models = {}
    for name, file in (("digits", "digits_int8.tflite"), ("mixed", "mixed28_int8.tflite")):
        loaded = api.load(_model(file), n_random=N)
        res = api.compile(loaded, tmp_path / name, board=BOARD, name=name, project=False)
        x = loaded.verify_inputs[:N]
        models[name] = (res, x, reference_run(loaded.graph, x, rounding=loaded.rounding))
    # the kernels both folders hold are the same files (same board, same options)
    shared = {p.name for p in (tmp_path / "digits").glob("*.[ch]")} & {p.name for p in (tmp_path / "mixed").glob("*.[ch]")}
    assert {"mcuqp_nn.h", "fully_connected_s8.c"} <= shared
    for f in shared:
        assert (tmp_path / "digits" / f).read_bytes() == (tmp_path / "mixed" / f).read_bytes(), f

    app = tmp_path / "app"
    app.mkdir()
    (app / "hooks.h").write_text("#include <stdint.h>\nvoid record_hook(int32_t index, int32_t phase);\n")
    digits_defines = ["MCUQP_SINGLE_ROUNDING=0", "DIGITS_LAYER_NAMES",
                      "DIGITS_LAYER_HOOK(i,p)=record_hook((int32_t)(i),(int32_t)(p))",
                      'DIGITS_ARENA_SECTION=__attribute__((section(".bss.dtcm_arena")))',
                      'DIGITS_WEIGHTS_SECTION=__attribute__((section(".rodata.extflash_weights")))']
    # the hook macro calls the application's function, declared by a forced include
    lib_d = _lib_objects(tmp_path / "digits", "digits", b, app / "obj-digits", digits_defines,
                         ("-include", str(app / "hooks.h")))
    cc = _need(build.CC)
    lib_m = _lib_objects(tmp_path / "mixed", "mixed", b, app / "obj-mixed", ["MCUQP_SINGLE_ROUNDING=0", "MIXED_EXTERNAL_ARENA"])

    # the section macros put the digits arena and weights where they were asked to
    sections = _symbol_sections(app / "obj-digits" / "digits.o")
    assert sections["digits_arena_storage"] == ".bss.dtcm_arena"
    weights = {s: sec for s, sec in sections.items() if s.endswith("_weights") or s.endswith("_bias")}
    assert weights and set(weights.values()) == {".rodata.extflash_weights"}, weights
    assert sections["l0_mult"] != ".rodata.extflash_weights"  # requantization arrays stay where they were
    assert "mixed_arena_storage" not in _symbol_sections(app / "obj-mixed" / "mixed.o")  # external arena

    (dg, dx, dy), (mg, mx, my) = models["digits"], models["mixed"]
    names = [dg.generated.layers[i].name for i in range(len(dg.generated.layers))]
    (app / "expected.h").write_text(
        f"#define N_INPUTS {N}\n"
        f"static const int8_t digits_inputs[{N}][DIGITS_INPUT_SIZE] = {{{', '.join('{' + _c_bytes(v) + '}' for v in dx)}}};\n"
        f"static const int8_t digits_expected[{N}][DIGITS_OUTPUT_SIZE] = {{{', '.join('{' + _c_bytes(v) + '}' for v in dy)}}};\n"
        f"static const int8_t mixed_inputs[{N}][MIXED_INPUT_SIZE] = {{{', '.join('{' + _c_bytes(v) + '}' for v in mx)}}};\n"
        f"static const int8_t mixed_expected[{N}][MIXED_OUTPUT_SIZE] = {{{', '.join('{' + _c_bytes(v) + '}' for v in my)}}};\n"
        f"static const char *const layer_names[] = {{{', '.join(json.dumps(n) for n in names)}}};\n")
    (app / "main.c").write_text(MAIN_C)
    plat = build.PLATFORM_DIR
    objs = []
    for src in (app / "main.c", plat / "startup.c", plat / "semihost.c"):
        obj = app / f"{src.stem}.o"
        r = subprocess.run([cc, *b.gcc_flags, *STRICT, f"-I{app}", f"-I{tmp_path / 'digits'}", f"-I{tmp_path / 'mixed'}",
                            f"-I{plat}", "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name}:\n{r.stderr[:3000]}"
        objs.append(obj)
    (app / "link.ld").write_text(build.linker_script(b))
    elf = app / "app.elf"
    r = subprocess.run([cc, *b.gcc_flags, "-nostartfiles", "-Wl,--gc-sections", "-T", str(app / "link.ld"),
                        *map(str, objs), str(lib_d), str(lib_m), "-o", str(elf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:3000]  # no duplicate symbols: the kernels are shared

    syms = _symbols(elf)
    assert b.ram_origin <= syms["digits_arena_storage"] < b.ram_origin + b.ram_size
    assert b.flash_origin <= syms["l0_weights"] < b.flash_origin + b.flash_size
    r = subprocess.run([qemu, "-machine", b.qemu_machine, "-nographic", "-semihosting-config", "enable=on,target=native",
                        "-kernel", str(elf)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"the image exited with {r.returncode}: {r.stdout} {r.stderr}"
