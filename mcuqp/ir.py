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


class OpKind(str, Enum):
    CONV2D = "conv2d"
    DEPTHWISE_CONV2D = "depthwise_conv2d"
    FULLY_CONNECTED = "fully_connected"
    MAX_POOL2D = "max_pool2d"
    AVG_POOL2D = "avg_pool2d"
    ADD = "add"
    SOFTMAX = "softmax"
    RESHAPE = "reshape"
    # Imported from TFLite (attrs at the end of this file).
    MUL = "mul"
    MEAN = "mean"
    PAD = "pad"
    CONCATENATION = "concatenation"
    LOGISTIC = "logistic"
    QUANTIZE = "quantize"
    # Binary activations (mcuqp.compress.binary_act; attrs at the end of this file).
    SIGN = "sign"


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
class ConvAttrs:
    """conv2d and depthwise_conv2d. inputs: [x, weights, bias]; outputs: [y]."""

    stride: tuple[int, int]  # (h, w)
    padding: Padding
    dilation: tuple[int, int] = (1, 1)
    depth_multiplier: int = 1  # depthwise only
    input_offset: int = 0  # -input zero point
    output_offset: int = 0  # output zero point
    requant: Requant | None = None
    act_min: int = -128
    act_max: int = 127


@dataclass
class FullyConnectedAttrs:
    """inputs: [x (1, Cin), weights (Cout, Cin), bias (Cout,) or None]; outputs: [y (1, Cout)]."""

    input_offset: int = 0
    filter_offset: int = 0  # 0 for symmetric weights
    output_offset: int = 0
    requant: Requant | None = None  # per-tensor or per-channel
    act_min: int = -128
    act_max: int = 127


@dataclass
class PoolAttrs:
    """max/avg pool; input and output share scale and zero point (TFLite rule)."""

    filter: tuple[int, int]  # (h, w)
    stride: tuple[int, int]
    padding: Padding
    act_min: int = -128
    act_max: int = 127


@dataclass
class AddAttrs:
    """TFLite int8 ADD: both inputs rescaled to a common 2^left_shift-scaled domain."""

    left_shift: int = 20
    input1_offset: int = 0
    input1_multiplier: int = 0
    input1_shift: int = 0
    input2_offset: int = 0
    input2_multiplier: int = 0
    input2_shift: int = 0
    output_offset: int = 0
    output_multiplier: int = 0
    output_shift: int = 0
    act_min: int = -128
    act_max: int = 127


@dataclass
class SoftmaxAttrs:
    """TFLite int8 softmax over the last axis; output scale 1/256, zero point -128."""

    beta: float = 1.0
    input_multiplier: int = 0
    input_left_shift: int = 0
    diff_min: int = 0


@dataclass
class ReshapeAttrs:
    new_shape: tuple[int, ...] = ()


Attrs = ConvAttrs | FullyConnectedAttrs | PoolAttrs | AddAttrs | SoftmaxAttrs | ReshapeAttrs


@dataclass
class Op:
    kind: OpKind
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: Any
    source: str = ""  # where the op came from (torch module path, tflite op index)


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


# ---- attrs of the ops added for TFLite import (MUL, MEAN, PAD, CONCATENATION, LOGISTIC,
# QUANTIZE). Integer parameters follow TFLite Micro's Prepare for each op.


@dataclass
class MulAttrs:
    """TFLite int8 MUL. inputs: [x1, x2] (either may be a constant); outputs: [y].
    y = clamp(MBQM((x1 + input1_offset) * (x2 + input2_offset)) + output_offset), with
    TFLite's broadcasting (shapes right-aligned, a dimension of 1 repeats; rank <= 4)."""

    input1_offset: int = 0
    input2_offset: int = 0
    output_offset: int = 0
    output_multiplier: int = 0
    output_shift: int = 0
    act_min: int = -128
    act_max: int = 127


@dataclass
class MeanAttrs:
    """TFLite Micro int8 MEAN over H and W of an NHWC input; outputs (1, 1, 1, C) or (1, C).
    y = clamp(MBQM(sum + count * input_offset, multiplier, shift) + output_offset), where
    (multiplier, shift) already includes TFLM's 1/count adjustment of in_scale/out_scale."""

    count: int = 1  # H * W of the input
    input_offset: int = 0
    output_offset: int = 0
    multiplier: int = 0
    shift: int = 0


@dataclass
class PadAttrs:
    """Constant padding; paddings[i] = (before, after) for input dimension i (batch: (0, 0)).
    The border holds pad_value (the output zero point for PAD, the constant for PADV2)."""

    paddings: tuple[tuple[int, int], ...] = ()
    pad_value: int = 0


@dataclass
class ConcatAttrs:
    """Concatenation along `axis` (>= 1) of inputs sharing the output's scale and zero
    point (TFLite Micro refuses int8 inputs whose quantization differs): a plain copy."""

    axis: int = -1


@dataclass
class LogisticAttrs:
    """TFLite Micro int8 LOGISTIC; output scale 1/256, zero point -128. The input minus its
    zero point is scaled to gemmlowp FixedPoint<int32, 4> by (input_multiplier,
    input_left_shift); |x - zp| >= input_range_radius saturates."""

    input_zero_point: int = 0
    input_multiplier: int = 0
    input_left_shift: int = 0
    input_range_radius: int = 0


@dataclass
class QuantizeAttrs:
    """int8 -> int8 QUANTIZE (TFLite Requantize): y = clamp(MBQM(x + input_offset) + output_offset)."""

    input_offset: int = 0
    output_offset: int = 0
    multiplier: int = 0
    shift: int = 0


@dataclass
class SignAttrs:
    """int8 sign for binary activations (sign(0) = +1): y = 1 if x >= input_zero_point
    (real value >= 0) else -1; output scale 1.0, zero point 0."""

    input_zero_point: int = 0
