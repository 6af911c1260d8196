"""The op registry: one `OpDef` per integer op, declared by its module in `mcuqp.ops`.

An `OpDef` is everything the rest of the toolchain knows about an op: its attrs class,
the numpy reference (the bit-exact twin of its C kernels), the C kernel variants with the
CPU features and weight format each serves, the code emitter, the MAC count, the memory
planner's aliasing rule, the float executor and post-training quantization rule, and the
TFLite operators it lowers. Front ends, the reference interpreter, the planner and the
code generator look ops up here; none of them branches on op kinds.

A generated layer is (op, weight format, kernel variant): `select_kernel` picks, for one
layer, the first declared variant whose features the board has.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, QParams, Requant, Tensor
from mcuqp.quant.fixedpoint import Rounding
from mcuqp.resources import RUNTIME_DIR

RUNTIME_SRC = RUNTIME_DIR / "src"
DENSE_INT8 = "int8"  # the weight format of every op today; packed formats are declared beside it

Env = dict[str, np.ndarray]
Alias = Literal["none", "view", "elementwise"]


@dataclass(frozen=True)
class KernelVariant:
    """One C implementation of an op: `function` in `runtime_c/src/<source>`.

    features: CPU features the board must have (e.g. {"dsp"}, {"mve"}); empty = portable.
    weight_format: the weight layout it reads ("int8" dense, or a packed format of
        mcuqp.plan.formats: "sparse", "int4", "ternary", "binary", "xnor").
    inplace: writes its output over its input with planned scratch (the plan chooses it).
    calls_dense: it calls the op's dense int8 kernel (whose source the build also needs)."""

    function: str
    source: str
    features: frozenset[str] = frozenset()
    weight_format: str = DENSE_INT8
    inplace: bool = False
    calls_dense: bool = False

    @property
    def path(self) -> Path:
        return RUNTIME_SRC / self.source


def variants(function: str, source: str, *, isa: Iterable[str] = (), inplace: bool = False,
             weight_format: str = DENSE_INT8) -> tuple[KernelVariant, ...]:
    """The ISA-specific variants `<feature>/<source>` (in preference order) followed by the
    portable `<source>`, all with the same contract."""
    out = [KernelVariant(function, f"{f}/{source}", frozenset({f}), weight_format, inplace) for f in isa]
    return (*out, KernelVariant(function, source, frozenset(), weight_format, inplace))


def packed_variants(op: str, *, xnor: bool = False) -> tuple[KernelVariant, ...]:
    """The packed-weight kernels of `op` ("fully_connected", "conv2d", "depthwise_conv2d"):
    `mcuqp_<op>_sparse_s8`, `mcuqp_<op>_lowbit_s8` for int4 / ternary / binary and, with
    `xnor`, `mcuqp_<op>_xnor_s8`; a DSP variant where runtime_c/src/dsp/ has one."""
    out: list[KernelVariant] = []
    kinds = [("sparse", "sparse"), ("int4", "lowbit"), ("ternary", "lowbit"), ("binary", "lowbit")]
    for fmt, kernel in kinds + ([("xnor", "xnor")] if xnor else []):
        source = f"{op}_{kernel}_s8.c"
        isa = ("dsp",) if (RUNTIME_SRC / "dsp" / source).exists() else ()
        for v in variants(f"mcuqp_{op}_{kernel}_s8", source, isa=isa, weight_format=fmt):
            # the low-bit depthwise kernel decodes a filter window and calls the dense one
            out.append(dataclasses.replace(v, calls_dense=op == "depthwise_conv2d" and kernel == "lowbit"))
    return tuple(out)


class EmitContext(Protocol):
    """What an op's emitter may ask of the code generator (mcuqp.codegen.emit)."""

    graph: Graph

    def buf(self, tensor: str) -> str: ...
    def operand(self, layer: Any, op: Op, i: int) -> str: ...
    def dims(self, layer: Any, suffix: str, shape: tuple[int, ...]) -> str: ...
    def const(self, layer: Any, suffix: str, a: np.ndarray, comment: str = "", weight: bool = True) -> str: ...
    def tensor_const(self, layer: Any, suffix: str, op: Op, i: int) -> str: ...
    def requant(self, layer: Any, requant: Requant) -> str: ...
    def struct(self, layer: Any, ctype: str, fields: Mapping[str, int]) -> str: ...
    def decl(self, layer: Any, text: str, param_bytes: int) -> None: ...
    def aliased(self, op: Op) -> bool: ...
    def scratch(self, layer: Any, op: Op) -> str: ...
    def weights(self, layer: Any, op: Op, kernel: KernelVariant) -> str: ...
    def packed_scratch(self, layer: Any, op: Op) -> str: ...


Reference = Callable[[Graph, Op, Env, Rounding], np.ndarray]
Emitter = Callable[[EmitContext, Any, Op, KernelVariant], None]
FloatRun = Callable[[Any, list[np.ndarray]], np.ndarray]
# (float op, its int8 input tensors, output quantization, rounding, weight scales or None) -> attrs
FromFloat = Callable[[Any, list[Tensor], QParams, Rounding, np.ndarray | None], Any]


def _no_macs(graph: Graph, op: Op) -> int:
    return 0


@dataclass(frozen=True)
class InPlace:
    """The op may write its output over its dying input with `scratch(graph, op)` bytes of
    planned scratch (None where its in-place kernel cannot run it). `plan_field` names the
    MemoryPlan list that records the ops planned this way; `prefix`: the output may be
    smaller than the input (it fills the input's first bytes)."""

    scratch: Callable[[Graph, Op], int | None]
    plan_field: str
    prefix: bool = False


@dataclass(frozen=True)
class OpDef:
    kind: OpKind
    attrs: type
    reference: Reference
    emit: Emitter
    kernels: tuple[KernelVariant, ...]
    macs: Callable[[Graph, Op], int] = _no_macs
    alias: Alias = "none"  # view: output names the input's bytes; elementwise: may overwrite a dying input
    inplace: InPlace | None = None
    float_run: FloatRun | None = None  # float executor for torch-imported graphs (calibration)
    from_float: FromFloat | None = None  # post-training quantization of a float op
    # output quantization when PTQ lowers it: "calibrated" (from a range), "shared" (its
    # input's), or fixed QParams (softmax 1/256, -128)
    output_qparams: Literal["calibrated", "shared"] | QParams = "calibrated"
    weight_axis: int | None = None  # per-channel axis of a float op's weights (None: no weights)
    fuses_activation: bool = False  # a following ReLU / ReLU6 folds into its output clamp
    sign_output: bool = False  # every output is -1 or +1 (SIGN): a binary-weight consumer may use XNOR
    # weight axes an output channel's int32 accumulator sums over (None: no accumulator to check)
    accumulator_axes: tuple[int, ...] | None = None
    tflite: Mapping[str, Callable[..., list]] = field(default_factory=dict)  # opcode -> lowerer
    # float constants of a float op that become int8 inputs after its activations, each with
    # per-tensor asymmetric quantization of its range (PReLU's alpha): float op -> [float32 array]
    constant_inputs: Callable[[Any], list[np.ndarray]] | None = None


_REGISTRY: dict[str, OpDef] = {}
_loaded = False


def _load() -> None:
    """Import every module of mcuqp.ops once; each op module lists its OpDefs in `OPS`."""
    global _loaded
    if _loaded:
        return
    import mcuqp.ops as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"mcuqp.ops.{info.name}")
        for d in getattr(module, "OPS", ()):
            if d.kind in _REGISTRY:
                raise RuntimeError(f"op {d.kind} is declared twice")
            _REGISTRY[str(d.kind)] = d
    _loaded = True


def get(kind: str) -> OpDef:
    """The definition of op `kind`; UnsupportedModelError for an unknown one."""
    _load()
    d = _REGISTRY.get(str(kind))
    if d is None:
        raise UnsupportedModelError(f"unknown op {kind!r}: mcuqp knows {', '.join(sorted(_REGISTRY))}")
    return d


def all_ops() -> list[OpDef]:
    _load()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def tflite_lowerers() -> dict[str, Callable[..., list]]:
    """TFLite builtin opcode -> the lowerer of the op module that imports it."""
    out: dict[str, Callable[..., list]] = {}
    for d in all_ops():
        for opcode, fn in d.tflite.items():
            out[opcode] = fn
    return out


def select_kernel(d: OpDef, features: frozenset[str] = frozenset(), *, inplace: bool = False,
                  weight_format: str = DENSE_INT8) -> KernelVariant:
    """The first declared variant of `d` for this weight format and in-place choice whose
    CPU features the board has."""
    for k in d.kernels:
        if k.inplace == inplace and k.weight_format == weight_format and k.features <= features:
            return k
    raise UnsupportedModelError(
        f"no C kernel for op {d.kind} ({weight_format} weights{', in place' if inplace else ''}) "
        f"on a CPU with {sorted(features) or 'no extra features'}")
