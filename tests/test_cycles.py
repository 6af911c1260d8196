"""Instruction classes and estimated cycles: the plugin's decoder classifies known Thumb,
DSP and Helium encodings; on QEMU the class counters add up to the executed instructions of
every layer; the cycle tables price them; `mcuqp bench` reports per-layer tables and JSON."""
from __future__ import annotations

import ctypes as C
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mcuqp.target import cycles
import hostlib

PLUGIN_DIR = hostlib.RUNTIME_DIR / "platform" / "qemu_plugin"
SHARED = Path(__file__).resolve().parents[2] / "shared"


class InsnInfo(C.Structure):
    _fields_ = [("cls", C.c_int), ("regs", C.c_int), ("branch", C.c_int)]


@pytest.fixture(scope="module")
def classify():
    out = Path(tempfile.mkdtemp(prefix="mcuqp-insn-")) / "libinsn.so"
    r = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                        str(PLUGIN_DIR / "mcuqp_insn_class.c"), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = C.CDLL(str(out))
    lib.mcuqp_classify.restype = InsnInfo
    lib.mcuqp_classify.argtypes = [C.c_char_p, C.c_size_t]

    def run(hexwords: str) -> tuple[str, int, int]:
        words = [int(w, 16) for w in hexwords.split()]
        data = b"".join(w.to_bytes(2, "little") for w in words)
        k = lib.mcuqp_classify(data, len(data))
        return cycles.CLASSES[k.cls], k.regs, k.branch

    return run


# (objdump halfwords, class, registers, branch), assembled by arm-none-eabi-as for
# cortex-m4 and armv8.1-m.main+mve.
ENCODINGS = [
    ("6848", "load", 0, 0),            # ldr r0, [r1, #4]
    ("f8d1 0190", "load", 0, 0),       # ldr.w r0, [r1, #400]
    ("5c88", "load", 0, 0),            # ldrb r0, [r1, r2]
    ("9802", "load", 0, 0),            # ldr r0, [sp, #8]
    ("6048", "store", 0, 0),           # str r0, [r1, #4]
    ("f8a1 0190", "store", 0, 0),      # strh.w r0, [r1, #400]
    ("b530", "store_multiple", 3, 0),  # push {r4, r5, lr}
    ("bd30", "load_multiple", 3, 1),   # pop {r4, r5, pc}
    ("c80e", "load_multiple", 3, 0),   # ldmia r0!, {r1, r2, r3}
    ("e92d 4ff0", "store_multiple", 9, 0),  # stmdb sp!, {r4-r11, lr}
    ("e9d2 0102", "load_multiple", 2, 0),   # ldrd r0, r1, [r2, #8]
    ("e9c2 0100", "store_multiple", 2, 0),  # strd r0, r1, [r2]
    ("fb01 f002", "mul", 0, 0),        # mul.w
    ("fb01 3002", "mul", 0, 0),        # mla
    ("fb21 3002", "mul", 0, 0),        # smlad
    ("fb82 0103", "mul_long", 0, 0),   # smull
    ("fbc2 0103", "mul_long", 0, 0),   # smlal
    ("fb91 f0f2", "div", 0, 0),        # sdiv
    ("fbb1 f0f2", "div", 0, 0),        # udiv
    ("fa21 f082", "simd", 0, 0),       # sxtab16
    ("fa2f f091", "simd", 0, 0),       # sxtb16 ror #8
    ("fa82 f081", "simd", 0, 0),       # qadd
    ("f301 0007", "simd", 0, 0),       # ssat #8
    ("eac1 0002", "simd", 0, 0),       # pkhbt
    ("fa91 f002", "simd", 0, 0),       # sadd16
    ("eb01 0002", "alu", 0, 0),        # add.w
    ("3001", "alu", 0, 0),             # adds
    ("4608", "alu", 0, 0),             # mov r0, r1
    ("fa01 f002", "alu", 0, 0),        # lsl.w (register)
    ("b248", "alu", 0, 0),             # sxtb
    ("e7fe", "branch", 0, 1),          # b
    ("d0fe", "branch", 0, 1),          # beq
    ("f040 8062", "branch", 0, 1),     # bne.w
    ("f7ff fffe", "branch", 0, 1),     # bl
    ("4770", "branch", 0, 1),          # bx lr
    ("b110", "branch", 0, 1),          # cbz
    ("f85d fb04", "load", 0, 1),       # ldr.w pc, [sp], #4
    ("e8d0 f001", "branch", 0, 1),     # tbb
    ("ecb0 1e10", "mve_load", 0, 0),   # vldrb.u8 q0, [r0], #16
    ("ed92 2f04", "mve_load", 0, 0),   # vldrb.s32 q1, [r2, #4]
    ("ed91 1f00", "mve_load", 0, 0),   # vldrw.u32
    ("ec94 6f00", "mve_load", 0, 0),   # vldrb.s32 q3, [r4, q0] (gather)
    ("ed83 2f00", "mve_store", 0, 0),  # vstrb.32
    ("eca3 3e10", "mve_store", 0, 0),  # vstrb.8 q1, [r3], #16
    ("eef6 0f24", "mve_mul", 0, 0),    # vmlava.s8
    ("eef2 2f04", "mve_mul", 0, 0),    # vmlav.s8
    ("ef24 4952", "mve_mul", 0, 0),    # vmul.i32
    ("ff26 6b40", "mve_mul", 0, 0),    # vqrdmulh.s32
    ("ef26 6b40", "mve_mul", 0, 0),    # vqdmulh.s32
    ("ee27 2e4e", "mve_mul", 0, 0),    # vmla.s32 q1, q3, lr
    ("ef26 6844", "mve", 0, 0),        # vadd.i32
    ("ee27 6f43", "mve", 0, 0),        # vadd.i32 q3, q3, r3
    ("ef24 4446", "mve", 0, 0),        # vshl.s32
    ("ef22 6546", "mve", 0, 0),        # vrshl.s32
    ("ef04 0152", "mve", 0, 0),        # vand
    ("efa1 0050", "mve", 0, 0),        # vshr.s32 #31
    ("ef22 4648", "mve", 0, 0),        # vmax.s32
    ("eef1 0f22", "mve", 0, 0),        # vaddva.s8
    ("eea6 6b10", "mve", 0, 0),        # vdup.32
    ("ee26 4b10", "mve", 0, 0),        # vmov.32 lane
    ("f002 e801", "mve", 0, 0),        # vctp.8
    ("fe71 0f4d", "mve", 0, 0),        # vpst
    ("eefd 3a10", "fp", 0, 0),         # vmrs r3, p0
    ("f042 e001", "alu", 0, 0),        # dls lr, r2
    ("f00f c003", "branch", 0, 1),     # le
    ("f042 c007", "branch", 0, 1),     # wls
    ("ed90 0a00", "load", 0, 0),       # vldr s0, [r0]
    ("ed2d 8b10", "store_multiple", 8, 0),  # vpush {d8-d15}
]


@pytest.mark.parametrize("hexwords, cls, regs, branch", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_classifier_on_known_encodings(classify, hexwords, cls, regs, branch):
    assert classify(hexwords) == (cls, regs, branch)


def test_cycle_tables():
    k = dict.fromkeys(cycles.CLASSES, 0)
    k.update(alu=100, load=50, load_multiple=2, load_multiple_regs=8, mul_long=10, branch=20, taken_branch=15,
             mve=40, mve_mul=30, mve_load=20)
    assert cycles.instructions(k) == 100 + 50 + 2 + 10 + 20 + 40 + 30 + 20
    # M3: long multiplies are slow; M4: every multiply is one cycle; M7: dual issue.
    m3, m4, m7 = (cycles.estimate_cycles(k, c) for c in ("cortex-m3", "cortex-m4", "cortex-m7"))
    assert m3 > m4 > m7 > 0
    assert m4 == 100 + 100 + 2 + 8 + 10 + 20 + 30 + 40 + 30 + 20  # MVE counted at 1 where the table has none
    assert cycles.estimate_cycles(k, "cortex-m55") == 100 + 100 + 2 + 4 + 10 + 20 + 30 + 80 + 60 + 60
    with pytest.raises(KeyError):
        cycles.table_for("cortex-m0")
    with pytest.raises(ValueError):
        cycles.as_dict([1, 2, 3])


def _shared_model(name: str) -> Path:
    path = SHARED / "models" / "mlperf_tiny" / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing (the shared models folder sits beside the repository)")
        pytest.skip(f"{path} not found (the shared models folder sits beside the repository)")
    return path


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_class_counters_add_up_on_qemu(board):
    """Per layer the class counters sum to the executed instructions; the M4 runs SMLAD-class
    code and no Helium, the M55 runs Helium; taken branches never exceed the branching
    instructions."""
    from mcuqp import api
    from mcuqp.bench import bench

    loaded = api.load(_shared_model("kws_ref_model.tflite"), n_random=2, seed=3)
    res = bench(loaded, board=board, inplace=False, n_inputs=1)
    assert res.bit_exact
    ver = api.verify(loaded, board=board, n_inputs=1, inplace=False)
    assert [ly.instructions for ly in res.layers] == [ly.instructions for ly in ver.layers]
    k = res.classes
    assert k["taken_branch"] <= k["branch"] + k["load_multiple"] + k["load"]
    if board == "mps2-an386":
        assert k["mul"] + k["simd"] > 0 and k["mve"] == k["mve_mul"] == k["mve_load"] == 0
    else:
        assert k["mve_mul"] > 0 and k["mve_load"] > 0
    conv = res.layers[0]
    assert conv.op == "conv2d" and conv.macs == 320_000 and conv.weight_bytes == 64 * 40 + 64 * 4
    assert conv.kernel == ("dsp/conv2d_s8.c" if board == "mps2-an386" else "mve/conv2d_s8.c")
    assert abs(sum(ly.share for ly in res.layers) - 1) < 0.01
    assert res.cycles > res.instructions * 0.5 and res.milliseconds() > 0


@pytest.mark.qemu
def test_bench_cli_json_and_table():
    from click.testing import CliRunner

    from mcuqp.cli import main

    model = str(_shared_model("ad01_int8.tflite"))
    r = CliRunner().invoke(main, ["bench", model, "--board", "mps3-an547", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["bit_exact"] and d["plan"] == "fastest" and d["cpu"] == "cortex-m55"  # the default: fastest that fits
    assert d["macs"] == sum(ly["macs"] for ly in d["layers"]) > 0
    assert d["milliseconds_at_120_mhz"] > 0 and d["mlperf_m4_cycles_per_mac"] == [1.6, 2.2]
    assert all(ly["kernel"].startswith("mve/") for ly in d["layers"] if ly["op"] == "fully_connected")
    r = CliRunner().invoke(main, ["bench", model, "--board", "mps2-an385", "--no-inplace"])
    assert r.exit_code == 0, r.output
    assert "fastest plan" in r.output and "cycles/MAC" in r.output and "fully_connected_s8.c" in r.output
    r = CliRunner().invoke(main, ["bench", model, "--board", "mps2-an385", "--plan", "smallest"])
    assert r.exit_code == 0 and "smallest plan" in r.output, r.output
    r = CliRunner().invoke(main, ["bench", model, "--board", "nope"])
    assert r.exit_code == 2 and "unknown board" in r.output and "Traceback" not in r.output
    np.testing.assert_equal(r.exception.code if r.exception else 2, 2)
