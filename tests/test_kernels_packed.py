"""Packed-weight kernels (sparse, int4, ternary, binary, fully binary): for every op and
format, the C kernel equals its numpy twin, and both equal the dense int8 kernel (C and
numpy) on the effective weights, bit for bit, over randomized shapes and densities 0-100 %
(empty rows, all-zero channels, one-element layers), on the host (portable and DSP
variants, the latter through the exact C twins of the DSP instructions) and on QEMU
Cortex-M4 and M55."""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import subprocess
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mcuqp import packing
from mcuqp.codegen.packed import FORMATS, PackedLayer
import hostlib
from packed_cases import ERR, OK, c_call, out_shape, random_layer, run_on_qemu

SRC = hostlib.RUNTIME_DIR / "src"
INCLUDE = hostlib.RUNTIME_DIR / "include"
DENSITIES = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
CASES = [(op, fmt) for op in FORMATS for fmt in FORMATS[op] if fmt != "dense"]


def _build_dsp(defines: tuple[str, ...] = ()) -> Path:
    """runtime_c/src/dsp/*.c plus the portable kernels they do not replace, for the host."""
    dsp = sorted((SRC / "dsp").glob("*.c"))
    portable = [p for p in sorted(SRC.glob("*.c")) if p.name not in {d.name for d in dsp}]
    h = hashlib.sha256()
    for p in dsp + portable + sorted(INCLUDE.glob("*.h")):
        h.update(str(p).encode())
        h.update(p.read_bytes())
    h.update(" ".join(defines).encode())
    cache = Path(os.environ.get("MCUQP_CACHE", Path(tempfile.gettempdir()) / "mcuqp-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"libmcuqp-dsp-packed-{h.hexdigest()[:16]}.so"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run(["gcc", *hostlib.HOST_CFLAGS, *[f"-D{d}" for d in defines], "-shared", "-I", str(INCLUDE),
                            *map(str, dsp + portable),
                            "-o", str(tmp)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        os.replace(tmp, out)
    return out


@pytest.fixture(scope="module", params=["portable", "dsp"])
def lib(request):
    return hostlib.load_runtime() if request.param == "portable" else C.CDLL(str(_build_dsp()))


@pytest.fixture(scope="module")
def portable():
    return hostlib.load_runtime()


def _check(lib, dense_lib, ly: PackedLayer, x: np.ndarray, rounding: str = "double") -> np.ndarray:
    shape = out_shape(ly)
    twin = ly.reference(x, rounding)
    dense = ly.dense_reference(x, rounding)
    assert np.array_equal(twin, dense), "numpy twin differs from the dense reference"
    rc, y = c_call(lib, ly, x, shape)
    assert rc == OK
    assert np.array_equal(y, twin), f"{ly.kernel} differs from its twin"
    rc, yd = c_call(dense_lib, ly, x, shape, fmt="dense")
    assert rc == OK and np.array_equal(yd, y), "packed kernel differs from the dense C kernel"
    return y


@pytest.mark.parametrize("op,fmt", CASES)
def test_packed_equals_twin_and_dense(lib, portable, op, fmt):
    rng = np.random.default_rng(zlib.crc32(f"{op}/{fmt}".encode()))
    nonzero = zero = 0
    for t in range(40):
        density = float(DENSITIES[t % len(DENSITIES)] if t < 30 else rng.random())
        ly, x = random_layer(rng, op, fmt, density, tiny=t in (0, 7))
        _check(lib, portable, ly, x)
        nonzero += int(np.count_nonzero(ly.w))
        zero += int(ly.w.size - np.count_nonzero(ly.w))
    assert nonzero > 500 and (zero > 500 or fmt in ("binary", "xnor"))


@pytest.mark.parametrize("variant", ["portable", "dsp"])
@pytest.mark.parametrize("op,fmt", [("fc", "sparse"), ("conv2d", "sparse"), ("fc", "int4"), ("conv2d", "int4"),
                                    ("conv2d", "binary"), ("depthwise", "ternary"), ("conv2d", "xnor")])
def test_single_rounding(op, fmt, variant):
    single = ("MCUQP_SINGLE_ROUNDING=1",)
    lib = hostlib.load_runtime(single) if variant == "portable" else C.CDLL(str(_build_dsp(single)))
    rng = np.random.default_rng(3)
    for _ in range(10):
        ly, x = random_layer(rng, op, fmt, float(rng.random()), rounding="single")
        _check(lib, lib, ly, x, "single")


def test_sparse_empty_rows_and_segments(portable):
    """Rows with no nonzeros, rows over several 256-column segments with empty segments."""
    rng = np.random.default_rng(9)
    ly, x = random_layer(rng, "fc", "sparse", 0.5)
    w = np.zeros((5, 700), np.int8)
    w[1, 3] = 5
    w[2, 600:] = rng.integers(-127, 128, 100).astype(np.int8)  # only the third segment
    w[4] = rng.integers(-127, 128, 700).astype(np.int8)  # full
    a = replace(ly.attrs, requant=packing_requant(rng, 5))
    x = rng.integers(-128, 128, (2, 700)).astype(np.int8)
    ly = PackedLayer("fc", "sparse", x.shape, w, rng.integers(-999, 999, 5).astype(np.int32), a)
    assert ly.packed.counts.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 100], [0, 0, 0], [256, 256, 188]]
    _check(portable, portable, ly, x)


def packing_requant(rng, channels):
    from mcuqp.ops.common import conv_requant

    return conv_requant(0.05, np.full(channels, 0.01, np.float32), 0.5, "double")


def test_formats_round_trip():
    rng = np.random.default_rng(4)
    for kind, (lo, hi) in packing.VALUE_RANGE.items():
        w = rng.integers(lo, hi + 1, (7, 77)).astype(np.int8)
        if kind == "binary":
            w[w == 0] = 1
        p = packing.pack_lowbit(w, kind)
        assert p.words.shape == (7, -(-77 // (32 // packing.BITS[kind])))
        assert np.array_equal(packing.unpack_lowbit(p), w)
    with pytest.raises(Exception, match="binary weights must be -1 or \\+1"):
        packing.pack_lowbit(np.zeros((2, 3), np.int8), "binary")
    with pytest.raises(Exception, match="int4 weights must lie in"):
        packing.pack_lowbit(np.full((2, 3), 9, np.int8), "int4")
    # the lane order: value 4 f + j in byte j, bits [bits f, bits (f + 1))
    p = packing.pack_lowbit(np.array([[1, 0, 0, 0, -1] + [0] * 11], np.int8), "ternary")
    assert int(p.words[0, 0]) == 0b01 | (0b11 << 2)


def test_bad_arguments(portable):
    rng = np.random.default_rng(6)
    ly, x = random_layer(rng, "fc", "sparse", 0.5)
    bad = PackedLayer("fc", "sparse", ly.x_shape, ly.w, ly.bias, replace(ly.attrs, filter_offset=3))
    assert c_call(portable, bad, x, out_shape(bad))[0] == ERR  # packed weights are symmetric
    ly, x = random_layer(rng, "fc", "xnor", 1.0)
    x = x.copy()
    x.flat[-1] = 0  # not a SIGN output
    assert c_call(portable, ly, x, out_shape(ly))[0] == ERR
    ly, x = random_layer(rng, "conv2d", "xnor", 1.0)
    bad = PackedLayer("conv2d", "xnor", ly.x_shape, ly.w, ly.bias, replace(ly.attrs, input_offset=1))
    assert c_call(portable, bad, x, out_shape(bad))[0] == ERR
    ly, x = random_layer(rng, "conv2d", "int4", 0.5)
    for bits in (0, 3, 8):
        assert c_call(portable, ly, x, out_shape(ly), bits=bits)[0] == ERR
    for fn in ("mcuqp_fully_connected_sparse_s8_get_buffer_size", "mcuqp_fully_connected_lowbit_s8_get_buffer_size",
               "mcuqp_fully_connected_xnor_s8_get_buffer_size"):
        assert getattr(portable, fn)(C.c_int32(0)) == ERR


@pytest.mark.qemu  # needs the arm toolchain
def test_sources_build_warning_free_for_cortex_m():
    names = [p for p in sorted(SRC.glob("*.c")) + sorted((SRC / "dsp").glob("*.c"))
             if any(t in p.name for t in ("_sparse_", "_lowbit_", "_xnor_"))]
    assert len(names) >= 8
    for cpu in ("cortex-m3", "cortex-m4", "cortex-m55"):
        for src in names:
            r = subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-std=c99", "-Wall", "-Wextra",
                                "-Wconversion", "-Wno-sign-conversion", "-Wshadow", "-Werror", "-I", str(INCLUDE), "-c", str(src), "-o",
                                os.devnull], capture_output=True, text=True)
            assert r.returncode == 0, (cpu, src.name, r.stderr)


@pytest.mark.qemu
@pytest.mark.parametrize("board,dsp", [("mps2-an386", True), ("mps3-an547", True), ("mps2-an386", False)])
def test_packed_on_qemu(tmp_path, board, dsp):
    """Every op x format, densities 0-100 %, on the device: the DSP variants on Cortex-M4 and
    M55, and the portable kernels on the M4 too."""
    rng = np.random.default_rng(21)
    layers, inputs = [], []
    for i, (op, fmt) in enumerate(CASES):
        for density in (0.0, 0.1, 1.0) if fmt in ("sparse", "int4", "ternary") else (1.0,):
            ly, _ = random_layer(rng, op, fmt, density, tiny=(i == 0 and density == 0.0))
            n = 2
            xs = [random_layer_input(rng, ly) for _ in range(n)]
            layers.append(ly)
            inputs.append(np.concatenate(xs))
    got, want, _r, _fw = run_on_qemu(tmp_path, board, layers, inputs, dsp=dsp)
    assert np.array_equal(got, want)


def random_layer_input(rng, ly: PackedLayer) -> np.ndarray:
    if ly.fmt == "xnor":
        return np.where(rng.random(ly.x_shape) < 0.5, -1, 1).astype(np.int8)
    return rng.integers(-128, 128, ly.x_shape).astype(np.int8)


@pytest.mark.parametrize("op,fmt", CASES)
def test_scratch_sizes_match_the_c(portable, op, fmt):
    """PackedLayer.scratch_bytes (what the code generator reserves) == the kernel's
    *_get_buffer_size()."""
    rng = np.random.default_rng(12)
    for _ in range(5):
        ly, _x = random_layer(rng, op, fmt, 0.5)
        fn = getattr(portable, ly.kernel + "_get_buffer_size")
        arg = C.c_int32(ly.x_shape[1]) if op == "fc" else C.byref(hostlib.dims(ly.w.shape))
        assert fn(arg) == ly.scratch_bytes()
