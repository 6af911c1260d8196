"""The integer graph: the single source of truth after import.

Every front end (torch, tflite) produces a `Graph`; the numpy reference, the memory
planner and the code generator read it and nothing else.

Conventions
- Activations are NHWC with batch 1 (4-D) or (1, N) for vectors.
- Weights use TFLite's layouts: conv OHWI `(Cout, KH, KW, Cin)`, depthwise
  `(1, KH, KW, Cin*multiplier)`, fully connected `(Cout, Cin)`.
- Scales are stored as float32 (as in a TFLite flatbuffer) so that the integer
  parameters derived from them match TFLite Micro, which widens them to double.
- Every integer that a kernel needs (requantization multipliers/shifts, offsets,
  clamps) is computed once when the graph is lowered and stored on the op, so the
  reference and the generated C read identical numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class DType(str, Enum):
    INT8 = "int8"
    INT32 = "int32"

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize


@dataclass
class QParams:
    """Affine quantization: real = scale * (q - zero_point).

    Per-tensor when `scale` has one element; per-channel along `axis` otherwise.
    """

    scale: np.ndarray  # float32, shape (1,) or (C,)
    zero_point: np.ndarray  # int32, same shape as scale
    axis: int | None = None

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int32))
        if self.scale.shape != self.zero_point.shape:
            raise ValueError("scale and zero_point must have the same shape")

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def zp(self) -> int:
        """The zero point of a per-tensor quantization."""
        if self.per_channel:
            raise ValueError("per-channel quantization has no single zero point")
        return int(self.zero_point[0])

    @property
    def s(self) -> float:
        """The scale of a per-tensor quantization, as a Python float (float32 value)."""
        if self.per_channel:
            raise ValueError("per-channel quantization has no single scale")
        return float(self.scale[0])


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType
    quant: QParams | None = None
    data: np.ndarray | None = None  # set for constants (weights, biases)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


class _OpKindSpelling(type):
    def __getattr__(cls, name: str) -> OpKind:
        if name.isupper() and not name.startswith("_"):
            return cls(name.lower())
        raise AttributeError(name)


class OpKind(str, metaclass=_OpKindSpelling):
    """An op's name, e.g. "conv2d"; `OpKind.CONV2D` spells the same string. What an op means
    (attrs, reference, kernels, planner rules) lives in its module in `mcuqp.ops`. Kinds are
    interned, so `is` compares them like enum members."""

    _interned: dict[str, OpKind] = {}

    def __new__(cls, name: str) -> OpKind:
        key = str.__str__(name)
        kind = cls._interned.get(key)
        if kind is None:
            kind = cls._interned[key] = super().__new__(cls, key)
        return kind

    @property
    def value(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class Padding:
    """Explicit zero-point padding in input pixels (top/left drive the kernels;
    bottom/right are implied by the output size and kept for reporting)."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0


@dataclass
class Requant:
    """Fixed-point requantization: one (multiplier, shift) per output channel, or one
    for the whole tensor. shift > 0 is a left shift, shift < 0 a right shift (TFLite)."""

    multiplier: np.ndarray  # int32, (1,) or (Cout,)
    shift: np.ndarray  # int32, same shape

    def __post_init__(self) -> None:
        self.multiplier = np.atleast_1d(np.asarray(self.multiplier, dtype=np.int32))
        self.shift = np.atleast_1d(np.asarray(self.shift, dtype=np.int32))

    @property
    def per_channel(self) -> bool:
        return self.multiplier.size > 1


@dataclass
class Op:
    kind: OpKind
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: Any  # the op's attrs dataclass, declared in its mcuqp.ops module
    source: str = ""  # where the op came from (torch module path, tflite op index)

    def __post_init__(self) -> None:
        self.kind = OpKind(self.kind)


@dataclass
class Graph:
    tensors: dict[str, Tensor] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    name: str = "model"

    def add_tensor(self, t: Tensor) -> Tensor:
        if t.name in self.tensors:
            raise ValueError(f"duplicate tensor name {t.name!r}")
        self.tensors[t.name] = t
        return t

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    @property
    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> Tensor:
        return self.tensors[self.outputs[0]]

    def constants(self) -> list[Tensor]:
        return [t for t in self.tensors.values() if t.is_const]

    def activations(self) -> list[Tensor]:
        return [t for t in self.tensors.values() if not t.is_const]

    def producers(self) -> dict[str, Op]:
        return {o: op for op in self.ops for o in op.outputs}

    def consumers(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for i in op.inputs:
                out.setdefault(i, []).append(op)
        return out

    def validate(self) -> None:
        """Check that every op reads tensors that exist and are defined before use."""
        defined = set(self.inputs) | {t.name for t in self.constants()}
        for op in self.ops:
            for name in op.inputs:
                if not name:  # an absent optional input (e.g. no bias)
                    continue
                if name not in self.tensors:
                    raise ValueError(f"op {op.name}: unknown input tensor {name!r}")
                if name not in defined:
                    raise ValueError(f"op {op.name}: input {name!r} used before it is produced")
            for name in op.outputs:
                if name not in self.tensors:
                    raise ValueError(f"op {op.name}: unknown output tensor {name!r}")
                defined.add(name)
        for name in self.outputs:
            if name not in defined:
                raise ValueError(f"graph output {name!r} is never produced")
