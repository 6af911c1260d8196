"""The C runtime compiled for the host and loaded with ctypes.

Used by the kernel tests (C versus the numpy reference, bit for bit) and by host-side
runs of generated models. Structures mirror runtime_c/include/mcuqp_nn.h field for field.
"""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mcuqp.resources import RUNTIME_DIR

HOST_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC"]


class Dims(C.Structure):
    _fields_ = [("n", C.c_int32), ("h", C.c_int32), ("w", C.c_int32), ("c", C.c_int32)]


class Requant(C.Structure):
    _fields_ = [("multiplier", C.POINTER(C.c_int32)), ("shift", C.POINTER(C.c_int32)), ("count", C.c_int32)]


class ConvParams(C.Structure):
    _fields_ = [
        (f, C.c_int32)
        for f in (
            "input_offset output_offset stride_h stride_w pad_h pad_w dilation_h dilation_w "
            "depth_multiplier act_min act_max"
        ).split()
    ]


class FcParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in "input_offset filter_offset output_offset act_min act_max".split()]


class PoolParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in "stride_h stride_w pad_h pad_w filter_h filter_w act_min act_max".split()]


class AddParams(C.Structure):
    _fields_ = [
        (f, C.c_int32)
        for f in (
            "left_shift input1_offset input1_multiplier input1_shift input2_offset input2_multiplier "
            "input2_shift output_offset output_multiplier output_shift act_min act_max"
        ).split()
    ]


class SoftmaxParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in "input_multiplier input_left_shift diff_min".split()]


def dims(shape: tuple[int, ...]) -> Dims:
    """NHWC dims from a 1-4-D shape (missing leading dimensions are 1)."""
    s = (1,) * (4 - len(shape)) + tuple(int(x) for x in shape)
    return Dims(*s)


def ptr(a: np.ndarray, ctype=C.c_int8):
    """Pointer to a C-contiguous numpy array (caller keeps the array alive)."""
    if not a.flags["C_CONTIGUOUS"]:
        raise ValueError("array must be C-contiguous")
    return a.ctypes.data_as(C.POINTER(ctype))


def requant(mult: np.ndarray, shift: np.ndarray) -> tuple[Requant, tuple[np.ndarray, np.ndarray]]:
    """A Requant struct and the arrays it points into (keep them alive)."""
    m = np.ascontiguousarray(mult, dtype=np.int32)
    s = np.ascontiguousarray(shift, dtype=np.int32)
    return Requant(ptr(m, C.c_int32), ptr(s, C.c_int32), m.size), (m, s)


def _sources(extra_defines: tuple[str, ...]) -> tuple[list[Path], str]:
    srcs = sorted((RUNTIME_DIR / "src").glob("*.c"))
    h = hashlib.sha256()
    for p in srcs + sorted((RUNTIME_DIR / "include").glob("*.h")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(" ".join(HOST_CFLAGS + list(extra_defines)).encode())
    return srcs, h.hexdigest()[:16]


def build_runtime(defines: tuple[str, ...] = (), cc: str = "gcc") -> Path:
    """Compile runtime_c/src/*.c (portable kernels) into a shared library, cached by content."""
    srcs, digest = _sources(defines)
    cache = Path(os.environ.get("MCUQP_CACHE", Path(tempfile.gettempdir()) / "mcuqp-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"libmcuqp-{digest}.so"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cc, *HOST_CFLAGS, *[f"-D{d}" for d in defines], "-shared", "-I", str(RUNTIME_DIR / "include"),
               *map(str, srcs), "-o", str(tmp)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        os.replace(tmp, out)
    return out


def load_runtime(defines: tuple[str, ...] = ()) -> C.CDLL:
    return C.CDLL(str(build_runtime(defines)))


class HostModel:
    """A generated model library (model.c + kernels) compiled for the host."""

    def __init__(self, lib_dir: Path, input_size: int, output_size: int, defines: tuple[str, ...] = ()):
        srcs = sorted(Path(lib_dir).glob("*.c"))
        h = hashlib.sha256()
        for p in srcs + sorted(Path(lib_dir).glob("*.h")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
        h.update(" ".join(HOST_CFLAGS + list(defines)).encode())
        cache = Path(os.environ.get("MCUQP_CACHE", Path(tempfile.gettempdir()) / "mcuqp-cache"))
        cache.mkdir(parents=True, exist_ok=True)
        so = cache / f"model-{h.hexdigest()[:16]}.so"
        if not so.exists():
            tmp = so.with_suffix(f".{os.getpid()}.tmp")
            cmd = ["gcc", *HOST_CFLAGS, *[f"-D{d}" for d in defines], "-shared", "-I", str(lib_dir),
                   *map(str, srcs), "-o", str(tmp)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"host build of {lib_dir} failed:\n{r.stderr}")
            os.replace(tmp, so)
        self._lib = C.CDLL(str(so))
        self._invoke = self._lib.mcuqp_model_invoke
        self._invoke.argtypes = [C.POINTER(C.c_int8), C.POINTER(C.c_int8)]
        self._invoke.restype = C.c_int
        self.input_size = input_size
        self.output_size = output_size

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """Run every row of `inputs` (N, ...) int8; returns (N, output_size) int8."""
        x = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
        if x.shape[1] != self.input_size:
            raise ValueError(f"input rows have {x.shape[1]} bytes, the model takes {self.input_size}")
        out = np.zeros((len(x), self.output_size), dtype=np.int8)
        for i in range(len(x)):
            row = np.ascontiguousarray(x[i])
            dst = out[i]
            rc = self._invoke(ptr(row), dst.ctypes.data_as(C.POINTER(C.c_int8)))
            if rc != 0:
                raise RuntimeError(f"mcuqp_model_invoke failed at layer {rc - 1}")
        return out
