"""The C runtime compiled for the host and loaded with ctypes.

Used by the kernel tests (C versus the numpy reference, bit for bit) and by host-side
runs of generated models. Structures mirror runtime_c/include/mcuqp_nn.h field for field;
each registers itself with @mirrors("mcuqp_..."), and load_runtime() checks every registered
mirror against the header with a compiled sizeof/offsetof probe, so that a field added or
reordered in C fails the tests instead of silently misaligning them.
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
MIRRORS: dict[str, type[C.Structure]] = {}  # C typedef name -> its ctypes mirror


def mirrors(c_name: str):
    """Class decorator: register a ctypes Structure as the mirror of the C typedef `c_name`."""
    def register(cls: type[C.Structure]) -> type[C.Structure]:
        MIRRORS[c_name] = cls
        return cls
    return register


@mirrors("mcuqp_dims")
class Dims(C.Structure):
    _fields_ = [("n", C.c_int32), ("h", C.c_int32), ("w", C.c_int32), ("c", C.c_int32)]


@mirrors("mcuqp_requant")
class Requant(C.Structure):
    _fields_ = [("multiplier", C.POINTER(C.c_int32)), ("shift", C.POINTER(C.c_int32)), ("count", C.c_int32),
                ("flags", C.c_int32)]


@mirrors("mcuqp_conv_params")
class ConvParams(C.Structure):
    _fields_ = [
        (f, C.c_int32)
        for f in (
            "input_offset output_offset stride_h stride_w pad_h pad_w dilation_h dilation_w "
            "depth_multiplier act_min act_max"
        ).split()
    ]


@mirrors("mcuqp_fc_params")
class FcParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in "input_offset filter_offset output_offset act_min act_max".split()]


@mirrors("mcuqp_pool_params")
class PoolParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in "stride_h stride_w pad_h pad_w filter_h filter_w act_min act_max".split()]


@mirrors("mcuqp_add_params")
class AddParams(C.Structure):
    _fields_ = [
        (f, C.c_int32)
        for f in (
            "left_shift input1_offset input1_multiplier input1_shift input2_offset input2_multiplier "
            "input2_shift output_offset output_multiplier output_shift act_min act_max"
        ).split()
    ]


@mirrors("mcuqp_softmax_params")
class SoftmaxParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in "input_multiplier input_left_shift diff_min".split()]


@mirrors("mcuqp_leaky_relu_params")
class LeakyReluParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in (
        "input_zero_point output_zero_point identity_multiplier identity_shift alpha_multiplier alpha_shift").split()]


@mirrors("mcuqp_relu_params")
class ReluParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in (
        "input_zero_point output_zero_point multiplier shift act_min act_max").split()]


@mirrors("mcuqp_hard_swish_params")
class HardSwishParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in (
        "input_zero_point output_zero_point reluish_multiplier reluish_exponent output_multiplier "
        "output_exponent").split()]



@mirrors("mcuqp_broadcast")
class Broadcast(C.Structure):
    _fields_ = [(f, C.c_int32 * 6) for f in ("shape", "stride1", "stride2")]


@mirrors("mcuqp_prelu_params")
class PreluParams(C.Structure):
    _fields_ = [(f, C.c_int32) for f in (
        "input_offset alpha_offset output_offset output_multiplier_1 output_shift_1 output_multiplier_2 "
        "output_shift_2").split()]


def broadcast(a: tuple[int, ...], b: tuple[int, ...], y: tuple[int, ...]) -> Broadcast:
    """The mcuqp_broadcast of inputs shaped `a` and `b` and output `y` (as the code generator emits it)."""
    from mcuqp.ops.broadcast import walk

    shape, s1, s2 = walk(a, b, y)
    row = C.c_int32 * 6
    return Broadcast(row(*shape), row(*s1), row(*s2))


@mirrors("mcuqp_transpose_params")
class TransposeParams(C.Structure):
    _fields_ = [("input_shape", C.c_int32 * 5), ("perm", C.c_int32 * 5)]


@mirrors("mcuqp_strided_slice_params")
class StridedSliceParams(C.Structure):
    _fields_ = [(f, C.c_int32 * 5) for f in ("input_shape", "begin", "strides", "output_shape")]


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
    check_mirrors()
    return C.CDLL(str(build_runtime(defines)))


def mirror_mismatches(table: dict[str, type[C.Structure]], cc: str = "gcc") -> list[str]:
    """Where the ctypes mirrors in `table` differ from mcuqp_nn.h as the host compiler lays it
    out: struct sizes, and each field's offset and size (a field the header lacks fails the probe's build)."""
    probe, expected = [], []
    for name, cls in sorted(table.items()):
        probe.append(f'    printf("%zu\\n", sizeof({name}));')
        expected.append((f"sizeof({name})", C.sizeof(cls)))
        for field, _ in cls._fields_:
            probe.append(f'    printf("%zu %zu\\n", offsetof({name}, {field}), sizeof((({name} *)0)->{field}));')
            f = getattr(cls, field)
            expected.append((f"{name}.{field} (offset, size)", f"{f.offset} {f.size}"))
    src = ("#include <stddef.h>\n#include <stdio.h>\n#include \"mcuqp_nn.h\"\nint main(void)\n{\n"
           + "\n".join(probe) + "\n    return 0;\n}\n")
    with tempfile.TemporaryDirectory(prefix="mcuqp-mirrors-") as tmp:
        (Path(tmp) / "probe.c").write_text(src)
        exe = Path(tmp) / "probe"
        r = subprocess.run([cc, "-std=c99", "-I", str(RUNTIME_DIR / "include"), "probe.c", "-o", str(exe)],
                           capture_output=True, text=True, cwd=tmp)
        if r.returncode != 0:
            first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:300])
            return [f"the mirrors name a struct or field mcuqp_nn.h does not have: {first}"]
        got = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    return [f"{what}: C {c}, ctypes {py}" for (what, py), c in zip(expected, got) if str(py) != c]


_checked: set[tuple] = set()


def check_mirrors() -> None:
    """Fail (once per set of mirrors) when a ctypes mirror does not match mcuqp_nn.h."""
    key = tuple(sorted((n, tuple(c._fields_)) for n, c in MIRRORS.items()))
    if key in _checked:
        return
    bad = mirror_mismatches(MIRRORS)
    if bad:
        raise AssertionError("tests/hostlib.py mirrors disagree with runtime_c/include/mcuqp_nn.h: " + "; ".join(bad))
    _checked.add(key)


class HostModel:
    """A generated model library (NAME.c + kernels) compiled for the host, run through NAME_run."""

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
        from mcuqp.codegen.provenance import model_header

        self.name = model_header(lib_dir).stem
        self._lib = C.CDLL(str(so))
        self._invoke = getattr(self._lib, f"{self.name}_run")
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
                raise RuntimeError(f"{self.name}_run failed at layer {rc - 1}")
        return out
