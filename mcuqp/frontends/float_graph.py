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

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mcuqp.ir import OpKind, Padding

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
    source: str = ""  # "features.0 (nn.Conv2d) at model.py:42"
    fused: list[str] = field(default_factory=list)  # fx nodes merged into this op, in order


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
    """NCHW -> NHWC for 4-D batches; other ranks unchanged."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def to_torch_layout(x: np.ndarray) -> np.ndarray:
    """NHWC -> NCHW for 4-D batches; other ranks unchanged."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def to_torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


def _pad(x: np.ndarray, p: Padding, value: float) -> np.ndarray:
    """Pad NHWC `x` by the op's padding (bottom/right cover the last window)."""
    return np.pad(
        x,
        ((0, 0), (p.top, max(p.bottom, 0)), (p.left, max(p.right, 0)), (0, 0)),
        constant_values=value,
    )


def _windows(x: np.ndarray, op: FloatOp, kh: int, kw: int) -> np.ndarray:
    """(N, OH, OW, C, KH, KW) strided windows of the padded input, dilation applied."""
    dh, dw = op.dilation
    sh, sw = op.stride
    oh, ow = op.shape[1], op.shape[2]
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(x, (span_h, span_w), axis=(1, 2))
    win = win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, :, ::dh, ::dw]
    return win


def _act(y: np.ndarray, activation: str | None) -> np.ndarray:
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "relu6":
        return np.clip(y, 0.0, 6.0)
    return y


def run_op(op: FloatOp, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    if op.kind == OpKind.CONV2D:
        _, kh, kw, _ = op.weight.shape
        win = _windows(_pad(x, op.padding, 0.0), op, kh, kw)
        y = np.einsum("nhwcij,oijc->nhwo", win, op.weight, optimize=True)
        return _act(y + op.bias, op.activation).astype(np.float32)
    if op.kind == OpKind.DEPTHWISE_CONV2D:
        _, kh, kw, cout = op.weight.shape
        win = _windows(_pad(x, op.padding, 0.0), op, kh, kw)
        # output channel o = c * multiplier + m reads input channel c
        win = np.repeat(win, op.depth_multiplier, axis=3)
        y = np.einsum("nhwcij,ijc->nhwc", win, op.weight[0], optimize=True)
        return _act(y + op.bias, op.activation).astype(np.float32)
    if op.kind == OpKind.FULLY_CONNECTED:
        y = x.reshape(x.shape[0], -1) @ op.weight.T
        if op.bias is not None:
            y = y + op.bias
        return _act(y, op.activation).astype(np.float32)
    if op.kind == OpKind.MAX_POOL2D:
        win = _windows(_pad(x, op.padding, -np.inf), op, *op.filter)
        return _act(win.max(axis=(4, 5)), op.activation).astype(np.float32)
    if op.kind == OpKind.AVG_POOL2D:
        # padding is excluded from the count (TFLite semantics)
        ones = np.ones((1, *x.shape[1:3], 1), dtype=np.float32)
        s = _windows(_pad(x, op.padding, 0.0), op, *op.filter).sum(axis=(4, 5))
        n = _windows(_pad(ones, op.padding, 0.0), op, *op.filter).sum(axis=(4, 5))
        return _act(s / n, op.activation).astype(np.float32)
    if op.kind == OpKind.ADD:
        return _act(xs[0] + xs[1], op.activation).astype(np.float32)
    if op.kind == OpKind.RESHAPE:
        return x.reshape((x.shape[0], *op.shape[1:]))
    if op.kind == OpKind.SOFTMAX:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    if op.kind == OpKind.SIGN:
        return np.where(x >= 0, 1.0, -1.0).astype(np.float32)  # sign(0) = +1, as BinaryActivation
    raise ValueError(f"no float kernel for {op.kind.value}")
