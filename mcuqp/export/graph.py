"""The integer graph as a dense int8 .tflite: one TFLite builtin operator per IR op, every
tensor with the scale and zero point the graph holds (per-channel weights, int32 biases),
so that TFLite Micro derives the same requantization integers the generated C uses.

A packed (sparse, int4, ternary) layer is an int8 layer on its effective weights, so it is
written dense. `EXPORTERS` maps an op kind to a function that adds its operator; any other
op is written as the one TFLite operator its op module imports (`OpDef.tflite`). SIGN (a
binary activation TFLite has no operator for) is refused with ExportError.

`to_tflite` then imports the written model back with mcuqp's TFLite front end and checks
that every op comes back with identical integer parameters and constants, so a model that
TFLite would compute differently is refused instead of written.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcuqp.errors import McuqpError
from mcuqp.export.tflite import ModelBuilder, TfliteBuildError
from mcuqp.frontends.tflite import graph_from_bytes
from mcuqp.ir import DType, Graph, Op, OpKind, Padding, Tensor
from mcuqp.ops import registry
from mcuqp.ops.common import activation_range
from mcuqp.ops.leaky_relu import leaky_relu_attrs
from mcuqp.ops.relu import relu_attrs
from mcuqp.ops.resize_nearest_neighbor import resize_attrs
from mcuqp.ops.tflite_lowering import same_or_valid_padding
from mcuqp.quant.fixedpoint import Rounding

_FUSED = {None: "NONE", "relu": "RELU", "relu6": "RELU6", "relu_n1_to_1": "RELU_N1_TO_1"}


class ExportError(McuqpError):
    """A graph (or one of its layers) that a .tflite file cannot represent exactly."""


@dataclass
class _Writer:
    graph: Graph
    builder: ModelBuilder = field(default_factory=lambda: ModelBuilder("mcuqp export"))
    index: dict[str, int] = field(default_factory=dict)  # IR tensor -> TFLite tensor
    expected: dict[str, Any] = field(default_factory=dict)  # output tensor -> attrs after re-import
    opcodes: list[str] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)  # names of tensors added without an IR twin

    def tensor(self, name: str, axis: int = 0) -> int:
        """The TFLite tensor of IR tensor `name` (added on first use; constants with their data)."""
        if name not in self.index:
            t = self.graph.tensors[name]
            quant = {}
            if t.quant is not None:
                q = t.quant
                quant = {"scale": q.scale, "zero_point": q.zero_point,
                         "quantized_dimension": (q.axis if q.axis is not None else axis) if q.per_channel else 0}
            self.index[name] = self.builder.add_tensor(name, t.shape, t.dtype.np, data=t.data, **quant)
        return self.index[name]

    def _fresh(self, name: str) -> str:
        """A name no IR tensor and no other helper has, so that the re-import finds every
        IR tensor under its own name."""
        while name in self.graph.tensors or name in self.helpers:
            name += "_"
        self.helpers.add(name)
        return name

    def new_tensor(self, like: Tensor, suffix: str, shape: tuple[int, ...]) -> int:
        """A helper activation (no IR twin) with the quantization of `like`."""
        q = like.quant
        return self.builder.add_tensor(self._fresh(f"{like.name}/{suffix}"), shape, np.int8, scale=q.scale,
                                       zero_point=q.zero_point)

    def constant(self, like: str, suffix: str, data: np.ndarray, **quant: Any) -> int:
        """A helper constant (a shape, paddings, axes) beside IR tensor `like`."""
        return self.builder.add_constant(self._fresh(f"{like}/{suffix}"), np.asarray(data), **quant)

    def add(self, opcode: str, op: Op, inputs: list[int], options: dict | None = None, expected: Any = None) -> None:
        """The TFLite operator of `op`; `expected`: its attrs as the re-import must give them
        (default: op.attrs)."""
        self.builder.add_operator(opcode, inputs, [self.tensor(op.outputs[0])], options)
        self.opcodes.append(opcode)
        self.expected[op.outputs[0]] = op.attrs if expected is None else expected

    def io(self, op: Op) -> tuple[Tensor, Tensor]:
        return self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]


# ------------------------------------------------------------------ shared pieces


def _fused(op: Op, y: Tensor) -> str:
    """The fused activation whose TFLite clamp is the op's (act_min, act_max)."""
    a = op.attrs
    for act, name in _FUSED.items():
        if activation_range(act, y.quant.s, y.quant.zp) == (a.act_min, a.act_max):
            return name
    raise ExportError(f"{op.name}: the output clamp [{a.act_min}, {a.act_max}] is no TFLite fused activation "
                      f"for output scale {y.quant.s:g} and zero point {y.quant.zp}")


def _window(op: Op, x: Tensor, y: Tensor, kh: int, kw: int,
            dilation: tuple[int, int] = (1, 1)) -> tuple[str, Any] | None:
    """SAME or VALID when TFLite's padding rule gives the op's padding and output size, with
    the attrs the re-import will see (bottom / right as TFLite computes them: they only
    report), else None."""
    p = op.attrs.padding
    (sh, sw), (dh, dw) = op.attrs.stride, dilation
    for same, name in ((True, "SAME"), (False, "VALID")):
        oh, top, bottom = same_or_valid_padding(same, x.shape[1], kh, sh, dh)
        ow, left, right = same_or_valid_padding(same, x.shape[2], kw, sw, dw)
        if (oh, ow) == tuple(y.shape[1:3]) and (top, left) == (p.top, p.left):
            return name, dataclasses.replace(op.attrs, padding=Padding(top, bottom, left, right))
    return None


def _explicit_pad(w: _Writer, op: Op, x: Tensor, y: Tensor, kh: int, kw: int) -> tuple[int, Any]:
    """A PAD with the input zero point (the value a conv's padding stands for) in front of a
    VALID conv: returns (padded tensor, the conv's attrs as the re-import will see them)."""
    a = op.attrs
    (sh, sw), (dh, dw) = a.stride, a.dilation
    bottom = max(0, (y.shape[1] - 1) * sh + dh * (kh - 1) + 1 - x.shape[1] - a.padding.top)
    right = max(0, (y.shape[2] - 1) * sw + dw * (kw - 1) + 1 - x.shape[2] - a.padding.left)
    pads = np.array([[0, 0], [a.padding.top, bottom], [a.padding.left, right], [0, 0]], dtype=np.int32)
    shape = (x.shape[0], x.shape[1] + a.padding.top + bottom, x.shape[2] + a.padding.left + right, x.shape[3])
    padded = w.new_tensor(x, "pad", shape)
    w.builder.add_operator("PAD", [w.tensor(x.name), w.constant(x.name, "paddings", pads)], [padded])
    w.opcodes.append("PAD")
    return padded, dataclasses.replace(a, padding=Padding())


# ------------------------------------------------------------------ one exporter per op kind


def _conv(opcode: str, weight_axis: int, extra: Callable[[Any], dict]) -> Callable[[_Writer, Op], None]:
    """CONV_2D / DEPTHWISE_CONV_2D: per-channel weights along `weight_axis`, `extra` options."""
    def export(w: _Writer, op: Op) -> None:
        x, y = w.io(op)
        wt = w.graph.tensors[op.inputs[1]]
        kh, kw = wt.shape[1], wt.shape[2]
        a = op.attrs
        window = _window(op, x, y, kh, kw, a.dilation)
        if window is None:
            inp, expected = _explicit_pad(w, op, x, y, kh, kw)
            padding = "VALID"
        else:
            inp, (padding, expected) = w.tensor(x.name), window
        options = {"padding": padding, "stride_h": a.stride[0], "stride_w": a.stride[1],
                   "dilation_h_factor": a.dilation[0], "dilation_w_factor": a.dilation[1],
                   "fused_activation_function": _fused(op, y), **extra(a)}
        bias = w.tensor(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else -1
        w.add(opcode, op, [inp, w.tensor(op.inputs[1], weight_axis), bias], options, expected)

    return export


def _fully_connected(w: _Writer, op: Op) -> None:
    x, y = w.io(op)
    bias = w.tensor(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else -1
    w.add("FULLY_CONNECTED", op, [w.tensor(x.name), w.tensor(op.inputs[1]), bias],
          {"fused_activation_function": _fused(op, y), "keep_num_dims": len(y.shape) != 2})


def _declared_opcode(w: _Writer, op: Op) -> None:
    """An op without its own exporter: the one TFLite operator its op module imports, on the
    same inputs, with a fused activation when the op clamps (ADD, MUL, LOGISTIC, ...). Options
    that only live in the attrs are not recovered: the round-trip check refuses such an op."""
    opcodes = list(registry.get(op.kind).tflite)
    if len(opcodes) != 1:
        raise ExportError(f"{op.name}: no TFLite export for op {op.kind} (give it an exporter in mcuqp/export/graph.py)")
    y = w.graph.tensors[op.outputs[0]]
    clamps = hasattr(op.attrs, "act_min") and hasattr(op.attrs, "act_max")
    try:
        w.add(opcodes[0], op, [w.tensor(n) for n in op.inputs],
              {"fused_activation_function": _fused(op, y)} if clamps else None)
    except TfliteBuildError as e:
        raise ExportError(f"{op.name}: {e}") from None


def _pool(opcode: str) -> Callable[[_Writer, Op], None]:
    def export(w: _Writer, op: Op) -> None:
        x, y = w.io(op)
        a = op.attrs
        window = _window(op, x, y, *a.filter)
        if window is None:
            raise ExportError(f"{op.name}: padding {a.padding} of a {a.filter[0]}x{a.filter[1]} pool is neither "
                              "TFLite's SAME nor VALID")
        padding, expected = window
        w.add(opcode, op, [w.tensor(x.name)], expected=expected, options={
            "padding": padding, "stride_h": a.stride[0], "stride_w": a.stride[1], "filter_height": a.filter[0],
            "filter_width": a.filter[1], "fused_activation_function": _fused(op, y)})

    return export


def _softmax(w: _Writer, op: Op) -> None:
    w.add("SOFTMAX", op, [w.tensor(op.inputs[0])], {"beta": float(op.attrs.beta)})


def _reshape(w: _Writer, op: Op) -> None:
    x, y = w.io(op)
    shape = np.array(y.shape, dtype=np.int32)
    w.add("RESHAPE", op, [w.tensor(x.name), w.constant(y.name, "shape", shape)], {"new_shape": shape})


def _relu(w: _Writer, op: Op) -> None:
    x, y = w.io(op)
    for act, opcode in (("relu", "RELU"), ("relu6", "RELU6"), ("relu_n1_to_1", "RELU_N1_TO_1")):
        if same_attrs(relu_attrs(act, x.quant.s, x.quant.zp, y.quant.s, y.quant.zp), op.attrs):
            w.add(opcode, op, [w.tensor(x.name)])
            return
    raise ExportError(f"{op.name}: its clamp is none of TFLite's RELU, RELU6, RELU_N1_TO_1")


def _leaky_relu(w: _Writer, op: Op) -> None:
    """LEAKY_RELU stores alpha, the graph its multiplier: the float32 alpha nearest to the
    multiplier's value (or a neighbour) that gives back the same integers."""
    x, y = w.io(op)
    a = op.attrs
    guess = np.float32(a.alpha_multiplier / 2.0**31 * 2.0**a.alpha_shift * y.quant.s / x.quant.s)
    for _ in range(2):
        for alpha in (guess, *(np.nextafter(guess, d, dtype=np.float32) for d in (np.inf, -np.inf))):
            if leaky_relu_attrs(x.quant.s, x.quant.zp, y.quant.s, y.quant.zp, float(alpha)) == a:
                w.add("LEAKY_RELU", op, [w.tensor(x.name)], {"alpha": float(alpha)})
                return
        guess = np.float32(np.round(guess, 6))
    raise ExportError(f"{op.name}: no TFLite alpha reproduces its multipliers")


def _pad(w: _Writer, op: Op) -> None:
    x, y = w.io(op)
    a = op.attrs
    pads = np.array([list(p) for p in a.paddings], dtype=np.int32)
    inputs = [w.tensor(x.name), w.constant(y.name, "paddings", pads)]
    if a.pad_value == y.quant.zp:
        w.add("PAD", op, inputs)
    else:
        value = w.constant(y.name, "value", np.array([a.pad_value], np.int8), scale=y.quant.scale,
                           zero_point=y.quant.zero_point)
        w.add("PADV2", op, [*inputs, value])


def _mean(w: _Writer, op: Op) -> None:
    x, y = w.io(op)
    axes = w.constant(y.name, "axes", np.array(op.attrs.axes, np.int32))
    w.add("MEAN", op, [w.tensor(x.name), axes], {"keep_dims": len(y.shape) == len(x.shape)})


def _concatenation(w: _Writer, op: Op) -> None:
    w.add("CONCATENATION", op, [w.tensor(n) for n in op.inputs], {"axis": int(op.attrs.axis)})


def _binary_activation(w: _Writer, op: Op) -> None:
    raise ExportError(f"{op.name}: a binary SIGN activation (fully binary XNOR layers) has no TFLite operator; "
                      "such models are checked against the numpy reference only")


def _transpose(w: _Writer, op: Op) -> None:
    x, y = w.io(op)
    w.add("TRANSPOSE", op, [w.tensor(x.name), w.constant(y.name, "perm", np.array(op.attrs.perm, np.int32))])


def _strided_slice(w: _Writer, op: Op) -> None:
    """begin / end / strides that resolve to the same slice; the axes the output drops are
    shrunk, a backward slice reaching index 0 ends by the end mask."""
    x, y = w.io(op)
    a = op.attrs
    shrink = next((m for m in itertools.combinations(range(len(a.sizes)), len(a.sizes) - len(y.shape))
                   if all(a.sizes[d] == 1 for d in m)
                   and tuple(n for d, n in enumerate(a.sizes) if d not in m) == tuple(y.shape)), None)
    if shrink is None:
        raise ExportError(f"{op.name}: output {list(y.shape)} is not the slice {list(a.sizes)} with axes dropped")
    end = [b + (n - 1) * s + (1 if s > 0 else -1) for b, s, n in zip(a.begin, a.strides, a.sizes)]
    end_mask = sum(1 << d for d, e in enumerate(end) if e < 0)
    vectors = [w.constant(y.name, k, np.array(v, np.int32)) for k, v in
               (("begin", a.begin), ("end", [max(e, 0) for e in end]), ("strides", a.strides))]
    w.add("STRIDED_SLICE", op, [w.tensor(x.name), *vectors],
          {"end_mask": end_mask, "shrink_axis_mask": sum(1 << d for d in shrink)})


def _resize_nearest_neighbor(w: _Writer, op: Op) -> None:
    x, y = w.io(op)
    for align, half in itertools.product((False, True), repeat=2):
        if resize_attrs(x.shape[1:3], y.shape[1:3], align, half) == op.attrs:
            size = w.constant(y.name, "size", np.array(y.shape[1:3], np.int32))
            w.add("RESIZE_NEAREST_NEIGHBOR", op, [w.tensor(x.name), size],
                  {"align_corners": align, "half_pixel_centers": half})
            return
    raise ExportError(f"{op.name}: no align_corners / half_pixel_centers choice gives its index maps")


# Ops whose TFLite operator needs more than _declared_opcode gives (options, constant inputs,
# one of several operators, a refusal).
EXPORTERS: dict[str, Callable[[_Writer, Op], None]] = {
    OpKind.CONV2D: _conv("CONV_2D", 0, lambda a: {}),
    OpKind.DEPTHWISE_CONV2D: _conv("DEPTHWISE_CONV_2D", 3, lambda a: {"depth_multiplier": a.depth_multiplier}),
    OpKind.FULLY_CONNECTED: _fully_connected,
    OpKind.MAX_POOL2D: _pool("MAX_POOL_2D"),
    OpKind.AVG_POOL2D: _pool("AVERAGE_POOL_2D"),
    OpKind.RESHAPE: _reshape,
    OpKind.SOFTMAX: _softmax,
    OpKind.RELU: _relu,
    OpKind.LEAKY_RELU: _leaky_relu,
    OpKind.PAD: _pad,
    OpKind.MEAN: _mean,
    OpKind.CONCATENATION: _concatenation,
    OpKind.SIGN: _binary_activation,
    OpKind.TRANSPOSE: _transpose,
    OpKind.STRIDED_SLICE: _strided_slice,
    OpKind.RESIZE_NEAREST_NEIGHBOR: _resize_nearest_neighbor,
}


# ------------------------------------------------------------------ the round-trip check


# attrs fields that do not change an op's integer results: ReLU's name for reports, and how
# the C stores a layer's weights (a packed layer computes what the dense int8 layer does)
_NOT_COMPUTED = frozenset({"activation", "weight_format"})


def _computed_fields(a: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(a) if f.name not in _NOT_COMPUTED]


def same_attrs(a: Any, b: Any) -> bool:
    """Equal op attrs: every field that takes part in the computation, arrays by value."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(same_attrs(getattr(a, f), getattr(b, f)) for f in _computed_fields(a))
    if isinstance(a, (np.ndarray, list, tuple)) or isinstance(b, (np.ndarray, list, tuple)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _differing_fields(a: Any, b: Any) -> list[str]:
    if type(a) is not type(b):
        return [f"{type(a).__name__} != {type(b).__name__}"]
    return [f for f in _computed_fields(a) if not same_attrs(getattr(a, f), getattr(b, f))]


def _check_round_trip(graph: Graph, written: Graph, expected: dict[str, Any]) -> None:
    """Every op of `graph` comes back from the .tflite with the same kind, integer attrs and
    constants (ops the re-import inserts, such as the PAD of an explicit conv padding, have
    no twin in `graph`; their effect is in `expected`)."""
    producers = written.producers()
    for op in graph.ops:
        out = op.outputs[0]
        twin = producers.get(out)
        if twin is None or twin.kind != op.kind:
            raise ExportError(f"{op.name}: the exported model does not compute {out} with a {op.kind}")
        if not same_attrs(expected[out], twin.attrs):
            diff = ", ".join(_differing_fields(expected[out], twin.attrs))
            raise ExportError(f"{op.name}: TFLite would derive other integers for this {op.kind} ({diff}) from "
                              "the scales and zero points, so the .tflite would not compute what the C computes")
        for mine, theirs in zip(op.inputs, twin.inputs):
            a, b = graph.tensors.get(mine), written.tensors.get(theirs)
            if a is not None and a.is_const and (b is None or not np.array_equal(a.data, b.data)):
                raise ExportError(f"{op.name}: constant {mine} does not survive the export")


@dataclass
class Exported:
    data: bytes  # the .tflite flatbuffer
    ops: dict[str, int]  # TFLite operator -> how many


def to_tflite(graph: Graph, rounding: Rounding = "double") -> Exported:
    """The dense int8 .tflite of `graph`; ExportError when a layer has no exact TFLite form."""
    if rounding != "double":
        raise ExportError("the model was loaded for single rounding; TFLite computes with double rounding: "
                          "load it with rounding='double' (the default) to export it")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ExportError("mcuqp exports graphs with one input and one output")
    w = _Writer(graph)
    for name in graph.inputs:
        w.builder.mark_input(w.tensor(name))
    for op in graph.ops:
        if any(graph.tensors[n].dtype != DType.INT8 for n in (op.inputs[0], op.outputs[0])):
            raise ExportError(f"{op.name}: only int8 activations are exported")
        EXPORTERS.get(op.kind, _declared_opcode)(w, op)
    w.builder.mark_output(w.tensor(graph.outputs[0]))
    data = w.builder.build()
    try:
        written = graph_from_bytes(data, "the exported model", graph.name, rounding)
    except McuqpError as e:
        raise ExportError(f"the .tflite written does not import back exactly: {e}") from None
    _check_round_trip(graph, written, w.expected)
    return Exported(data, dict(Counter(w.opcodes)))
