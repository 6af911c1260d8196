"""The float graph: what a front end hands to quantization.

Same conventions as the integer graph (`mcuqp.ir`): NHWC activations with batch 1 (or
(1, N) vectors), TFLite weight layouts (conv OHWI, depthwise 1HW(C*k), fully connected
(Cout, Cin)), batch norm already folded and ReLU/ReLU6 already fused into their producer.
Every value is named by the torch.fx node whose output it holds; these names key the
calibration ranges.

`run` is a numpy float executor of the graph (batch-first), used for calibration and to
check the import against torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcuqp.ir import OpKind, Padding
from mcuqp.ops import registry

ACTIVATIONS = ("relu", "relu6")


@dataclass
class FloatOp:
    """One float op. `name` is both the op's and its output value's name."""

    kind: OpKind
    name: str
    inputs: list[str]
    shape: tuple[int, ...]  # output shape, NHWC batch 1 or (1, N)
    weight: np.ndarray | None = None  # float32, TFLite layout
    bias: np.ndarray | None = None  # float32 (Cout,)
    stride: tuple[int, int] = (1, 1)
    padding: Padding = field(default_factory=Padding)
    dilation: tuple[int, int] = (1, 1)
    depth_multiplier: int = 1
    filter: tuple[int, int] = (1, 1)  # pools
    activation: str | None = None  # fused "relu" / "relu6"
    alpha: float = 0.0  # LEAKY_RELU's negative slope
    source: str = ""  # "features.0 (nn.Conv2d) at model.py:42"
    fused: list[str] = field(default_factory=list)  # fx nodes merged into this op, in order
    params: dict[str, Any] = field(default_factory=dict)  # op-specific attrs (a transpose's perm, a slice)

    def __post_init__(self) -> None:
        self.kind = OpKind(self.kind)


@dataclass
class FloatGraph:
    name: str
    input_name: str
    input_shape: tuple[int, ...]  # NHWC batch 1, or (1, N)
    ops: list[FloatOp]
    output_name: str

    def op(self, name: str) -> FloatOp:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def value_names(self) -> list[str]:
        """The names of every activation (graph input first), in execution order."""
        return [self.input_name, *(op.name for op in self.ops)]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == self.input_name else self.op(name).shape

    @property
    def input_shape_nchw(self) -> tuple[int, ...]:
        """The input shape as the torch module sees it (batch 1)."""
        return to_torch_shape(self.input_shape)

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        """The float output (batch-first, graph layout) for a batch of torch-layout inputs."""
        return self.run_all(x_nchw)[self.output_name]

    def run_all(self, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """Every value (batch-first, graph layout) for a batch of torch-layout inputs."""
        env = {self.input_name: to_graph_layout(np.asarray(x_nchw, dtype=np.float32))}
        for op in self.ops:
            env[op.name] = run_op(op, [env[i] for i in op.inputs])
        return env


def to_graph_layout(x: np.ndarray) -> np.ndarray:
    """Channels last: NCHW -> NHWC for 4-D batches, (N, C, L) -> (N, L, C) for 3-D (Conv1d);
    2-D unchanged."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if x.ndim >= 3 else x


def to_torch_layout(x: np.ndarray) -> np.ndarray:
    """Channels first again: NHWC -> NCHW, (N, L, C) -> (N, C, L); 2-D unchanged."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 1)) if x.ndim >= 3 else x


def to_torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[-1], *shape[1:-1]) if len(shape) >= 3 else tuple(shape)


def run_op(op: FloatOp, xs: list[np.ndarray]) -> np.ndarray:
    """One float op on batch-first inputs: the float executor of its mcuqp.ops module."""
    run = registry.get(op.kind).float_run
    if run is None:
        raise ValueError(f"no float kernel for {op.kind.value}")
    return run(op, xs)
