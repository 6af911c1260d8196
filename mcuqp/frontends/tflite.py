"""Import a full-int8 TFLite flatbuffer into the integer graph (`mcuqp.ir.Graph`).

Three steps, each a pure function of the previous one's output:
1. `parse_tflite` reads the flatbuffer (with the `tflite` bindings) into plain dataclasses,
   so that a corrupt file fails here and nowhere later.
2. `_fold_constants` evaluates, in numpy, the constant sub-graphs that converters emit
   (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE for a Flatten with a dynamic batch).
3. `_lower` turns every remaining operator into an IR op whose integer parameters are
   derived exactly as TFLite Micro's Prepare derives them (via `mcuqp.quant.params`).
   Every unsupported operator is collected first and reported in one error.

IR tensor names are the TFLite tensor names made unique (`unique_tensor_names`), so the
IR can be compared with TFLite Micro tensor by tensor (`TfliteImport.tensor_index`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from mcuqp import ir
from mcuqp.errors import McuqpError, UnsupportedModelError
from mcuqp.frontends import tflite_checks
from mcuqp.quant import params as qp
from mcuqp.quant.fixedpoint import _round_half_away, quantize_multiplier, wrap_int32

# tflite.TensorType values we read.
_FLOAT32, _FLOAT16, _INT32, _UINT8, _INT64, _INT16, _INT8, _FLOAT64 = 0, 1, 2, 3, 4, 7, 9, 10
_NP_DTYPES: dict[int, np.dtype] = {
    _FLOAT32: np.dtype("<f4"),
    _FLOAT16: np.dtype("<f2"),
    _INT32: np.dtype("<i4"),
    _UINT8: np.dtype("u1"),
    _INT64: np.dtype("<i8"),
    _INT16: np.dtype("<i2"),
    _INT8: np.dtype("i1"),
    _FLOAT64: np.dtype("<f8"),
}
_TYPE_NAMES = {v: k.lower() for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_FLOAT_TYPES = {_FLOAT32, _FLOAT16, _FLOAT64, 18}  # 18: bfloat16
_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
_ACTIVATION_NAMES = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}


# --------------------------------------------------------------------------- parsing


@dataclass
class TfTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type: int  # tflite.TensorType
    data: np.ndarray | None  # constant buffer contents, shaped
    scale: np.ndarray | None  # float32
    zero_point: np.ndarray | None  # int64
    quantized_dimension: int = 0

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, str(self.type))

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale.size > 0


@dataclass
class TfOp:
    index: int
    opcode: str  # builtin name ("CONV_2D") or "CUSTOM:<code>"
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any]


@dataclass
class TfModel:
    tensors: list[TfTensor]
    ops: list[TfOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int = 1


# Builtin options we read: op -> (options class, {accessor: default when the table is absent}).
_OPTIONS: dict[str, tuple[type, dict[str, Any]]] = {
    "CONV_2D": (tflite.Conv2DOptions, {
        "Padding": 0, "StrideW": 1, "StrideH": 1, "FusedActivationFunction": 0,
        "DilationWFactor": 1, "DilationHFactor": 1}),
    "DEPTHWISE_CONV_2D": (tflite.DepthwiseConv2DOptions, {
        "Padding": 0, "StrideW": 1, "StrideH": 1, "DepthMultiplier": 1, "FusedActivationFunction": 0,
        "DilationWFactor": 1, "DilationHFactor": 1}),
    "FULLY_CONNECTED": (tflite.FullyConnectedOptions, {
        "FusedActivationFunction": 0, "WeightsFormat": 0, "KeepNumDims": False, "AsymmetricQuantizeInputs": False}),
    "AVERAGE_POOL_2D": (tflite.Pool2DOptions, {
        "Padding": 0, "StrideW": 1, "StrideH": 1, "FilterWidth": 1, "FilterHeight": 1, "FusedActivationFunction": 0}),
    "MAX_POOL_2D": (tflite.Pool2DOptions, {
        "Padding": 0, "StrideW": 1, "StrideH": 1, "FilterWidth": 1, "FilterHeight": 1, "FusedActivationFunction": 0}),
    "ADD": (tflite.AddOptions, {"FusedActivationFunction": 0}),
    "MUL": (tflite.MulOptions, {"FusedActivationFunction": 0}),
    "SOFTMAX": (tflite.SoftmaxOptions, {"Beta": 1.0}),
    "CONCATENATION": (tflite.ConcatenationOptions, {"Axis": 0, "FusedActivationFunction": 0}),
    "MEAN": (tflite.ReducerOptions, {"KeepDims": False}),
    "SQUEEZE": (tflite.SqueezeOptions, {"SqueezeDimsAsNumpy": ()}),
    "PACK": (tflite.PackOptions, {"ValuesCount": 0, "Axis": 0}),
    "SHAPE": (tflite.ShapeOptions, {"OutType": _INT32}),
    "STRIDED_SLICE": (tflite.StridedSliceOptions, {
        "BeginMask": 0, "EndMask": 0, "EllipsisMask": 0, "NewAxisMask": 0, "ShrinkAxisMask": 0, "Offset": False}),
}


def _read_options(op: Any, opcode: str) -> dict[str, Any]:
    spec = _OPTIONS.get(opcode)
    if spec is None:
        return {}
    cls, defaults = spec
    table = op.BuiltinOptions()
    if table is None:
        return dict(defaults)
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for name, default in defaults.items():
        value = getattr(obj, name)()
        if isinstance(value, np.ndarray):
            value = tuple(int(v) for v in value)
        elif name.endswith("AsNumpy"):
            value = default  # the generated accessor returns 0 for an absent vector
        out[name] = value
    return out


def _buffer_data(model: Any, raw: bytes, t: Any) -> bytes | None:
    index = t.Buffer()
    if index <= 0 or index >= model.BuffersLength():
        return None
    buf = model.Buffers(index)
    # Buffers of >2 GB models live after the flatbuffer, addressed by offset/size.
    if buf.Offset() > 1:
        return raw[buf.Offset(): buf.Offset() + buf.Size()]
    if buf.DataLength() == 0:
        return None
    return buf.DataAsNumpy().tobytes()


def _parse_tensor(model: Any, raw: bytes, index: int, t: Any) -> TfTensor:
    name = (t.Name() or b"").decode("utf-8", errors="replace")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    ttype = int(t.Type())
    data = None
    payload = _buffer_data(model, raw, t)
    if payload is not None and ttype not in _NP_DTYPES:
        # e.g. int4 or string constants: kept as raw bytes; any op using them is reported.
        data = np.frombuffer(payload, dtype=np.uint8).copy()
    elif payload is not None:
        arr = np.frombuffer(payload, dtype=_NP_DTYPES[ttype])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"tensor {index} ({name}): buffer holds {arr.size} values for shape {shape}")
        data = arr.reshape(shape).astype(_NP_DTYPES[ttype].newbyteorder("="))
    scale = zero_point = None
    qdim = 0
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        scale = q.ScaleAsNumpy().astype(np.float32)
        zero_point = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() > 0
                      else np.zeros(scale.shape, dtype=np.int64))
        qdim = int(q.QuantizedDimension())
    return TfTensor(index, name, shape, ttype, data, scale, zero_point, qdim)


def _opcode_name(model: Any, op: Any) -> str:
    oc = model.OperatorCodes(op.OpcodeIndex())
    code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
    name = BUILTIN_OPCODE2NAME.get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        return f"CUSTOM:{(oc.CustomCode() or b'').decode('utf-8', errors='replace')}"
    return name


def parse_tflite(raw: bytes, label: str = "model") -> TfModel:
    """Read subgraph 0 of a TFLite flatbuffer into plain dataclasses.

    Raises McuqpError("not a TFLite flatbuffer: ...") for anything that is not one."""
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise McuqpError(f"not a TFLite flatbuffer: {label} (missing the 'TFL3' file identifier)")
    try:
        model = tflite.Model.GetRootAsModel(raw, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("the model has no subgraph")
        g = model.Subgraphs(0)
        tensors = [_parse_tensor(model, raw, i, g.Tensors(i)) for i in range(g.TensorsLength())]
        ops = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            opcode = _opcode_name(model, op)
            ops.append(TfOp(
                index=i,
                opcode=opcode,
                inputs=tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else (),
                outputs=tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else (),
                options=_read_options(op, opcode),
            ))
        inputs = tuple(int(x) for x in g.InputsAsNumpy()) if g.InputsLength() else ()
        outputs = tuple(int(x) for x in g.OutputsAsNumpy()) if g.OutputsLength() else ()
        for idx in (*inputs, *outputs, *(i for op in ops for i in (*op.inputs, *op.outputs) if i >= 0)):
            if not 0 <= idx < len(tensors):
                raise ValueError(f"tensor index {idx} out of range")
        return TfModel(tensors, ops, inputs, outputs, model.SubgraphsLength())
    except McuqpError:
        raise
    except Exception as e:  # the flatbuffer bindings raise anything on corrupt data
        raise McuqpError(f"not a TFLite flatbuffer: {label} ({type(e).__name__}: {e})") from None


def unique_tensor_names(model: TfModel) -> list[str]:
    """IR tensor name for each TFLite tensor index: the TFLite name, suffixed with the
    index when empty or already taken."""
    names: list[str] = []
    seen: set[str] = set()
    for t in model.tensors:
        name = t.name or f"tensor_{t.index}"
        if name in seen:
            name = f"{name}_{t.index}"
        while name in seen:
            name += "_"
        seen.add(name)
        names.append(name)
    return names


# ------------------------------------------------------------------ constant folding


def _strided_slice(x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray, o: dict) -> np.ndarray:
    if o["EllipsisMask"] or o["NewAxisMask"]:
        raise ValueError("ellipsis and new-axis masks are not supported")
    index: list[Any] = []
    shrink: list[int] = []
    for axis in range(x.ndim):
        if axis >= len(begin):
            index.append(slice(None))
            continue
        b, e, s = int(begin[axis]), int(end[axis]), int(strides[axis])
        if o["ShrinkAxisMask"] >> axis & 1:
            index.append(slice(b, b + 1 if b != -1 else None, 1))
            shrink.append(axis)
            continue
        if o["Offset"]:
            e = b + e
        index.append(slice(None if o["BeginMask"] >> axis & 1 else b, None if o["EndMask"] >> axis & 1 else e, s))
    out = x[tuple(index)]
    return out.reshape([d for i, d in enumerate(out.shape) if i not in shrink]) if shrink else out


def _fold_op(op: TfOp, model: TfModel, known: dict[int, np.ndarray]) -> np.ndarray | None:
    """The value of `op`'s single output if it can be computed at import time, else None."""
    if op.opcode == "SHAPE":
        dtype = np.int64 if op.options["OutType"] == _INT64 else np.int32
        return np.array(model.tensors[op.inputs[0]].shape, dtype=dtype)
    if any(i >= 0 and i not in known for i in op.inputs):
        return None
    args = [known[i] for i in op.inputs if i >= 0]
    out_type = model.tensors[op.outputs[0]].type
    if op.opcode == "STRIDED_SLICE":
        return _strided_slice(args[0], *args[1:4], op.options)
    if op.opcode == "PACK":
        return np.stack(args, axis=op.options["Axis"])
    # The ops below are folded only for integer shape arithmetic, never for quantized data.
    if out_type not in (_INT32, _INT64) or model.tensors[op.outputs[0]].quantized:
        return None
    if op.opcode == "CONCATENATION":
        return np.concatenate(args, axis=op.options["Axis"])
    if op.opcode in ("RESHAPE", "SQUEEZE"):
        return args[0].reshape(model.tensors[op.outputs[0]].shape)
    return None


_FOLDABLE = {"SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "RESHAPE", "SQUEEZE"}


def _fold_constants(model: TfModel) -> tuple[dict[int, np.ndarray], set[int]]:
    """Values of constant and folded tensors, and the indices of the folded ops."""
    known = {t.index: t.data for t in model.tensors if t.data is not None}
    folded: set[int] = set()
    for op in model.ops:
        if op.opcode not in _FOLDABLE or len(op.outputs) != 1:
            continue
        try:
            value = _fold_op(op, model, known)
        except (ValueError, IndexError, TypeError):
            value = None
        if value is None:
            continue
        if tuple(value.shape) != model.tensors[op.outputs[0]].shape:
            continue  # the file disagrees with numpy: leave the op to be reported
        known[op.outputs[0]] = value.astype(_NP_DTYPES.get(model.tensors[op.outputs[0]].type, value.dtype))
        folded.add(op.index)
    return known, folded


# -------------------------------------------------------------------------- lowering


class _Reject(Exception):
    """An operator mcuqp cannot lower; the message says why."""


@dataclass
class TfliteImport:
    graph: ir.Graph
    tensor_index: dict[str, int]  # IR tensor name -> TFLite tensor index
    op_index: dict[str, int]  # IR op name -> TFLite operator index
    folded_ops: list[int] = field(default_factory=list)  # TFLite operators evaluated at import


@dataclass
class _IrOp:
    """One IR op produced by lowering a TFLite operator (names are IR tensor names)."""

    kind: ir.OpKind
    inputs: list[str]
    output: str
    attrs: Any
    suffix: str = ""  # distinguishes helper ops inserted before the main one


@dataclass
class _Ctx:
    model: TfModel
    names: list[str]
    known: dict[int, np.ndarray]
    tensors: dict[str, ir.Tensor] = field(default_factory=dict)
    index_of: dict[str, int] = field(default_factory=dict)  # IR name -> TFLite index

    def t(self, index: int) -> TfTensor:
        return self.model.tensors[index]

    @staticmethod
    def _qparams(t: TfTensor) -> ir.QParams | None:
        if not t.quantized:
            return None
        axis = t.quantized_dimension if t.scale.size > 1 else None
        return ir.QParams(t.scale, t.zero_point.astype(np.int32), axis)

    def act(self, index: int, role: str) -> TfTensor:
        """An int8 activation with per-tensor quantization and batch 1."""
        if index < 0:
            raise _Reject(f"missing {role} tensor")
        t = self.t(index)
        if index in self.known:
            raise _Reject(f"{role} '{t.name}' is a constant, mcuqp needs it to be an activation")
        if t.type != _INT8:
            raise _Reject(f"{role} '{t.name}' is {t.type_name}, mcuqp supports int8 activations only")
        if not t.quantized or t.scale.size != 1 or not float(t.scale[0]) > 0:
            raise _Reject(f"{role} '{t.name}' needs per-tensor int8 quantization")
        if not t.shape or t.shape[0] != 1:
            raise _Reject(f"{role} '{t.name}' has shape {list(t.shape)}, mcuqp needs batch 1")
        return t

    def const(self, index: int, role: str, ttype: int) -> TfTensor:
        if index < 0:
            raise _Reject(f"missing {role} tensor")
        t = self.t(index)
        if index not in self.known:
            raise _Reject(f"{role} '{t.name}' is not a constant")
        if t.type != ttype:
            raise _Reject(f"{role} '{t.name}' is {t.type_name}, expected {_TYPE_NAMES[ttype]}")
        return t

    def _add(self, tensor: ir.Tensor, index: int | None) -> str:
        if tensor.name not in self.tensors:
            self.tensors[tensor.name] = tensor
            if index is not None:
                self.index_of[tensor.name] = index
        return tensor.name

    def ir_act(self, index: int) -> str:
        t = self.t(index)
        return self._add(ir.Tensor(self.names[index], t.shape, ir.DType.INT8, self._qparams(t)), index)

    def ir_const(self, index: int) -> str:
        t = self.t(index)
        dtype = ir.DType.INT8 if t.type == _INT8 else ir.DType.INT32
        data = np.ascontiguousarray(self.known[index], dtype=dtype.np)
        return self._add(ir.Tensor(self.names[index], t.shape, dtype, self._qparams(t), data), index)

    def ir_derived(self, like: int, suffix: str, shape: tuple[int, ...]) -> str:
        """A new activation with the quantization of TFLite tensor `like` (no TFLite twin)."""
        name = f"{self.names[like]}/{suffix}"
        while name in self.tensors or name in self.names:
            name += "_"
        return self._add(ir.Tensor(name, shape, ir.DType.INT8, self._qparams(self.t(like))), None)


def _activation(op: TfOp, key: str = "FusedActivationFunction") -> str | None:
    code = op.options.get(key, 0)
    if code not in _ACTIVATIONS:
        raise _Reject(f"fused activation {_ACTIVATION_NAMES.get(code, code)} is not supported")
    return _ACTIVATIONS[code]


def same_or_valid_padding(
    same: bool, in_size: int, filter_size: int, stride: int, dilation: int = 1
) -> tuple[int, int, int]:
    """(output size, padding before, padding after) exactly as TFLite's
    ComputePaddingHeightWidth: the odd pixel of SAME padding goes after."""
    eff = (filter_size - 1) * dilation + 1
    out = (in_size + stride - 1) // stride if same else (in_size + stride - eff) // stride
    total = max(0, (out - 1) * stride + eff - in_size)
    return out, total // 2, total // 2 + total % 2


def _window(op: TfOp, x: TfTensor, y: TfTensor, kh: int, kw: int, dh: int = 1, dw: int = 1) -> ir.Padding:
    sh, sw = op.options["StrideH"], op.options["StrideW"]
    if min(sh, sw, dh, dw, kh, kw) < 1:
        raise _Reject(f"invalid window: filter {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dw}")
    same = op.options["Padding"] == 0
    oh, top, bottom = same_or_valid_padding(same, x.shape[1], kh, sh, dh)
    ow, left, right = same_or_valid_padding(same, x.shape[2], kw, sw, dw)
    if len(y.shape) != 4 or (oh, ow) != tuple(y.shape[1:3]):
        raise _Reject(f"output shape {list(y.shape)} does not match the computed {oh}x{ow}")
    return ir.Padding(top=top, bottom=bottom, left=left, right=right)


def _rank4(t: TfTensor, role: str) -> None:
    if len(t.shape) != 4:
        raise _Reject(f"{role} '{t.name}' has shape {list(t.shape)}, expected 4-D NHWC")


def _weights(ctx: _Ctx, index: int, qdim: int, channels: int) -> TfTensor:
    w = ctx.const(index, "weights", _INT8)
    if not w.quantized:
        raise _Reject(f"weights '{w.name}' are not quantized")
    if w.scale.size not in (1, channels):
        raise _Reject(f"weights '{w.name}' have {w.scale.size} scales for {channels} output channels")
    if w.scale.size > 1 and w.quantized_dimension != qdim:
        raise _Reject(f"weights '{w.name}' are quantized along axis {w.quantized_dimension}, expected {qdim}")
    return w


def _bias(ctx: _Ctx, op: TfOp, channels: int) -> list[str]:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return []
    b = ctx.const(op.inputs[2], "bias", _INT32)
    if b.data.size != channels:
        raise _Reject(f"bias '{b.name}' has {b.data.size} values for {channels} output channels")
    return [ctx.ir_const(op.inputs[2])]


def _lower_conv(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    depthwise = op.opcode == "DEPTHWISE_CONV_2D"
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    _rank4(x, "input")
    _rank4(y, "output")
    w_t = ctx.t(op.inputs[1])
    _rank4(w_t, "weights")
    cout = w_t.shape[3] if depthwise else w_t.shape[0]
    w = _weights(ctx, op.inputs[1], 3 if depthwise else 0, cout)
    if np.any(w.zero_point != 0):
        raise _Reject(f"weights '{w.name}' have a non-zero zero point (TFLite Micro needs symmetric weights)")
    multiplier = 1
    if depthwise:
        multiplier = op.options["DepthMultiplier"]
        if w.shape[0] != 1 or cout != x.shape[3] * multiplier:
            raise _Reject(f"depthwise weights {list(w.shape)} do not match {x.shape[3]} input channels "
                          f"x depth multiplier {multiplier}")
    elif w.shape[3] != x.shape[3]:
        raise _Reject(f"grouped convolution ({x.shape[3]} input channels, weights {list(w.shape)}) is not supported")
    if y.shape[3] != cout:
        raise _Reject(f"output has {y.shape[3]} channels, weights have {cout}")
    dh, dw = op.options["DilationHFactor"], op.options["DilationWFactor"]
    padding = _window(op, x, y, w.shape[1], w.shape[2], dh, dw)
    lo, hi = qp.activation_range(_activation(op), y.scale[0], int(y.zero_point[0]))
    attrs = ir.ConvAttrs(
        stride=(op.options["StrideH"], op.options["StrideW"]),
        padding=padding,
        dilation=(dh, dw),
        depth_multiplier=multiplier,
        input_offset=-int(x.zero_point[0]),
        output_offset=int(y.zero_point[0]),
        requant=qp.conv_requant(x.scale[0], w.scale, y.scale[0]),
        act_min=lo,
        act_max=hi,
    )
    inputs = [ctx.ir_act(op.inputs[0]), ctx.ir_const(op.inputs[1]), *_bias(ctx, op, cout)]
    kind = ir.OpKind.DEPTHWISE_CONV2D if depthwise else ir.OpKind.CONV2D
    return [_IrOp(kind, inputs, ctx.ir_act(op.outputs[0]), attrs)]


def _lower_fc(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if op.options["WeightsFormat"] != 0:
        raise _Reject("shuffled weights format is not supported")
    w_t = ctx.t(op.inputs[1])
    if len(w_t.shape) != 2:
        raise _Reject(f"weights '{w_t.name}' have shape {list(w_t.shape)}, expected (out, in)")
    cout, cin = w_t.shape
    w = _weights(ctx, op.inputs[1], 0, cout)
    if w.scale.size > 1 and np.any(w.zero_point != 0):
        raise _Reject(f"per-channel weights '{w.name}' must be symmetric")
    size = int(np.prod(x.shape))
    keep = bool(op.options["KeepNumDims"])
    # TFLite Micro reads the input as rows of `cin` whatever its shape; the IR kernel reads
    # rows of the input's last dimension, so a (1, h, w, c) input of one row gets a reshape.
    flatten = x.shape[-1] != cin
    if flatten and (keep or size != cin):
        raise _Reject(f"input {list(x.shape)} does not split into rows of {cin} inputs")
    expected = (*x.shape[:-1], cout) if keep else (size // cin, cout)
    if tuple(y.shape) != expected:
        raise _Reject(f"output shape {list(y.shape)}, expected {list(expected)}")
    lo, hi = qp.activation_range(_activation(op), y.scale[0], int(y.zero_point[0]))
    attrs = ir.FullyConnectedAttrs(
        input_offset=-int(x.zero_point[0]),
        filter_offset=-int(w.zero_point[0]),
        output_offset=int(y.zero_point[0]),
        requant=qp.conv_requant(x.scale[0], w.scale, y.scale[0]),
        act_min=lo,
        act_max=hi,
    )
    out: list[_IrOp] = []
    x_name = ctx.ir_act(op.inputs[0])
    if flatten:
        flat = ctx.ir_derived(op.inputs[0], "flat", (1, cin))
        out.append(_IrOp(ir.OpKind.RESHAPE, [x_name], flat, ir.ReshapeAttrs(new_shape=(1, cin)), "flatten"))
        x_name = flat
    inputs = [x_name, ctx.ir_const(op.inputs[1]), *_bias(ctx, op, cout)]
    out.append(_IrOp(ir.OpKind.FULLY_CONNECTED, inputs, ctx.ir_act(op.outputs[0]), attrs))
    return out


def _same_qparams(a: TfTensor, b: TfTensor) -> bool:
    return bool(np.float32(a.scale[0]) == np.float32(b.scale[0]) and a.zero_point[0] == b.zero_point[0])


def _lower_pool(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    _rank4(x, "input")
    if not _same_qparams(x, y):
        raise _Reject("input and output quantization differ (TFLite Micro requires them equal)")
    kh, kw = op.options["FilterHeight"], op.options["FilterWidth"]
    padding = _window(op, x, y, kh, kw)
    if y.shape[3] != x.shape[3]:
        raise _Reject("pooling changes the channel count")
    lo, hi = qp.activation_range(_activation(op), y.scale[0], int(y.zero_point[0]))
    attrs = ir.PoolAttrs(filter=(kh, kw), stride=(op.options["StrideH"], op.options["StrideW"]),
                         padding=padding, act_min=lo, act_max=hi)
    kind = ir.OpKind.AVG_POOL2D if op.opcode == "AVERAGE_POOL_2D" else ir.OpKind.MAX_POOL2D
    return [_IrOp(kind, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _lower_add(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    a, b = ctx.act(op.inputs[0], "input 1"), ctx.act(op.inputs[1], "input 2")
    y = ctx.act(op.outputs[0], "output")
    if not (a.shape == b.shape == y.shape):
        raise _Reject(f"broadcasting {list(a.shape)} + {list(b.shape)} is not supported")
    attrs = qp.add_attrs(a.scale[0], int(a.zero_point[0]), b.scale[0], int(b.zero_point[0]),
                         y.scale[0], int(y.zero_point[0]), _activation(op))
    inputs = [ctx.ir_act(op.inputs[0]), ctx.ir_act(op.inputs[1])]
    return [_IrOp(ir.OpKind.ADD, inputs, ctx.ir_act(op.outputs[0]), attrs)]


def _lower_softmax(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise _Reject("softmax changes the shape")
    if int(y.zero_point[0]) != -128 or np.float32(y.scale[0]) != np.float32(1.0 / 256):
        raise _Reject(f"output quantization ({y.scale[0]}, {y.zero_point[0]}) must be (1/256, -128)")
    attrs = qp.softmax_attrs(x.scale[0], op.options["Beta"])
    return [_IrOp(ir.OpKind.SOFTMAX, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _lower_reshape(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if int(np.prod(x.shape)) != int(np.prod(y.shape)):
        raise _Reject(f"reshape {list(x.shape)} -> {list(y.shape)} changes the element count")
    if not _same_qparams(x, y):
        raise _Reject("input and output quantization differ")
    if op.opcode == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] >= 0:
        if op.inputs[1] not in ctx.known:
            raise _Reject("the new shape is not a constant (or a constant sub-graph)")
        new_shape = [int(d) for d in ctx.known[op.inputs[1]].reshape(-1)]
        if new_shape.count(-1) == 1:
            rest = int(np.prod([d for d in new_shape if d != -1]))
            new_shape[new_shape.index(-1)] = int(np.prod(x.shape)) // max(rest, 1)
        if tuple(new_shape) != y.shape:
            raise _Reject(f"new shape {new_shape} disagrees with the output tensor {list(y.shape)}")
    attrs = ir.ReshapeAttrs(new_shape=tuple(y.shape))
    return [_IrOp(ir.OpKind.RESHAPE, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


# ---- TFLite Micro Prepare for the ops quant/params.py does not cover (float32 scales
# widened to double, as TFLM does).


def _double(x: float) -> float:
    """A float32 scale widened to double, as TFLite Micro reads it."""
    return float(np.float32(x))


def mul_attrs(s1: float, zp1: int, s2: float, zp2: int, so: float, zpo: int, activation: str | None) -> ir.MulAttrs:
    """TFLM CalculateOpDataMul: one multiplier for in1_scale * in2_scale / out_scale."""
    m, sh = quantize_multiplier(_double(s1) * _double(s2) / _double(so))
    lo, hi = qp.activation_range(activation, so, zpo)
    return ir.MulAttrs(input1_offset=-zp1, input2_offset=-zp2, output_offset=zpo, output_multiplier=m,
                       output_shift=sh, act_min=lo, act_max=hi)


def mean_attrs(in_scale: float, in_zp: int, out_scale: float, out_zp: int, count: int) -> ir.MeanAttrs:
    """TFLM int8 MEAN: QuantizeMultiplier(in/out), then QuantizedMeanOrSum folds 1/count into
    it: shift by floor(log2(count)) (at most 32, and keeping shift >= -31) and divide."""
    m, sh = quantize_multiplier(_double(in_scale) / _double(out_scale))
    k = min(count.bit_length() - 1, 32, 31 + sh)
    return ir.MeanAttrs(count=count, input_offset=-in_zp, output_offset=out_zp,
                        multiplier=int((m << k) // count), shift=sh - k)


def logistic_attrs(in_scale: float, in_zp: int) -> ir.LogisticAttrs:
    """TFLM int8 LOGISTIC Prepare: in_scale * 2^27 split by frexp into a Q31 multiplier and a
    left shift (no QuantizeMultiplier normalisation), radius = CalculateInputRadius(4, shift)."""
    q, left_shift = math.frexp(_double(in_scale) * float(1 << 27))
    if not 0 <= left_shift <= 62:
        raise _Reject(f"input scale {in_scale} is out of range for int8 logistic")
    radius = math.floor(15.0 * float(1 << 27) / float(1 << left_shift))
    return ir.LogisticAttrs(input_zero_point=in_zp, input_multiplier=int(wrap_int32(_round_half_away(q * (1 << 31)))),
                            input_left_shift=left_shift, input_range_radius=radius)


def quantize_attrs(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> ir.QuantizeAttrs:
    m, sh = quantize_multiplier(_double(in_scale) / _double(out_scale))
    return ir.QuantizeAttrs(input_offset=-in_zp, output_offset=out_zp, multiplier=m, shift=sh)


def _operand(ctx: _Ctx, index: int, role: str) -> tuple[TfTensor, str]:
    """An int8 activation or an int8 per-tensor-quantized constant, with its IR name."""
    t = ctx.t(index) if index >= 0 else None
    if t is not None and index in ctx.known:
        if t.type != _INT8 or not t.quantized or t.scale.size != 1:
            raise _Reject(f"{role} '{t.name}' must be an int8 constant with per-tensor quantization")
        return t, ctx.ir_const(index)
    t = ctx.act(index, role)
    return t, ctx.ir_act(index)


def _lower_mul(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    if all(i in ctx.known for i in op.inputs[:2]):
        raise _Reject("both inputs are constants")
    (a, a_name), (b, b_name) = _operand(ctx, op.inputs[0], "input 1"), _operand(ctx, op.inputs[1], "input 2")
    y = ctx.act(op.outputs[0], "output")
    if max(len(a.shape), len(b.shape), len(y.shape)) > 4:
        raise _Reject("more than 4 dimensions")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise _Reject(f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    if tuple(shape) != y.shape:
        raise _Reject(f"output shape {list(y.shape)}, expected {list(shape)}")
    attrs = mul_attrs(a.scale[0], int(a.zero_point[0]), b.scale[0], int(b.zero_point[0]), y.scale[0],
                      int(y.zero_point[0]), _activation(op))
    return [_IrOp(ir.OpKind.MUL, [a_name, b_name], ctx.ir_act(op.outputs[0]), attrs)]


def _lower_mean(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    _rank4(x, "input")
    axes = ctx.const(op.inputs[1], "axis", _INT32)
    resolved = {int(a) % 4 for a in ctx.known[axes.index].reshape(-1)}
    if resolved != {1, 2}:
        raise _Reject(f"mean over axes {sorted(resolved)}; mcuqp supports the mean over H and W (axes 1, 2)")
    c = x.shape[3]
    expected = (1, 1, 1, c) if op.options["KeepDims"] else (1, c)
    if y.shape != expected:
        raise _Reject(f"output shape {list(y.shape)}, expected {list(expected)}")
    attrs = mean_attrs(x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]), x.shape[1] * x.shape[2])
    return [_IrOp(ir.OpKind.MEAN, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _lower_pad(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if len(x.shape) > 4:
        raise _Reject("more than 4 dimensions")
    if not _same_qparams(x, y):
        raise _Reject("input and output quantization differ")
    p = ctx.const(op.inputs[1], "paddings", _INT32)
    pads = ctx.known[p.index].astype(np.int64)
    if pads.shape != (len(x.shape), 2) or np.any(pads < 0):
        raise _Reject(f"paddings {pads.tolist()} do not fit a {len(x.shape)}-D input")
    paddings = tuple((int(b), int(a)) for b, a in pads)
    if y.shape != tuple(d + b + a for d, (b, a) in zip(x.shape, paddings)):
        raise _Reject(f"output shape {list(y.shape)} does not match the paddings")
    value = int(y.zero_point[0])
    if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        v = ctx.const(op.inputs[2], "constant value", _INT8)
        if ctx.known[v.index].size != 1 or not v.quantized or not _same_qparams(v, y):
            raise _Reject("the constant value must be one int8 with the output's quantization")
        value = int(ctx.known[v.index].reshape(-1)[0])
    attrs = ir.PadAttrs(paddings=paddings, pad_value=value)
    return [_IrOp(ir.OpKind.PAD, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _lower_concat(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    y = ctx.act(op.outputs[0], "output")
    if _activation(op) is not None:
        raise _Reject("a fused activation is not supported (TFLite Micro refuses it too)")
    if all(i in ctx.known for i in op.inputs):
        raise _Reject("all inputs are constants")
    operands = [_operand(ctx, i, f"input {k + 1}") for k, i in enumerate(op.inputs)]
    rank = len(y.shape)
    axis = op.options["Axis"] + rank if op.options["Axis"] < 0 else op.options["Axis"]
    if not 1 <= axis < rank or rank > 4:
        raise _Reject(f"axis {op.options['Axis']} of a {rank}-D output")
    for t, _ in operands:
        if len(t.shape) != rank or any(t.shape[d] != y.shape[d] for d in range(rank) if d != axis):
            raise _Reject(f"input {list(t.shape)} does not concatenate into {list(y.shape)}")
        if not _same_qparams(t, y):
            raise _Reject(f"input '{t.name}' has a different scale or zero point than the output "
                          "(TFLite Micro refuses int8 concatenation with requantization)")
    if sum(t.shape[axis] for t, _ in operands) != y.shape[axis]:
        raise _Reject(f"inputs do not add up to the output's {y.shape[axis]} along axis {axis}")
    return [_IrOp(ir.OpKind.CONCATENATION, [n for _, n in operands], ctx.ir_act(op.outputs[0]),
                  ir.ConcatAttrs(axis=axis))]


def _lower_logistic(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise _Reject("logistic changes the shape")
    if int(y.zero_point[0]) != -128 or np.float32(y.scale[0]) != np.float32(1.0 / 256):
        raise _Reject(f"output quantization ({y.scale[0]}, {y.zero_point[0]}) must be (1/256, -128)")
    attrs = logistic_attrs(x.scale[0], int(x.zero_point[0]))
    return [_IrOp(ir.OpKind.LOGISTIC, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


def _lower_quantize(ctx: _Ctx, op: TfOp) -> list[_IrOp]:
    x, y = ctx.act(op.inputs[0], "input"), ctx.act(op.outputs[0], "output")
    if x.shape != y.shape:
        raise _Reject("quantize changes the shape")
    attrs = quantize_attrs(x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]))
    return [_IrOp(ir.OpKind.QUANTIZE, [ctx.ir_act(op.inputs[0])], ctx.ir_act(op.outputs[0]), attrs)]


Lowerer = Callable[[_Ctx, TfOp], list[_IrOp]]
LOWERERS: dict[str, Lowerer] = {
    "CONV_2D": _lower_conv,
    "DEPTHWISE_CONV_2D": _lower_conv,
    "FULLY_CONNECTED": _lower_fc,
    "AVERAGE_POOL_2D": _lower_pool,
    "MAX_POOL_2D": _lower_pool,
    "ADD": _lower_add,
    "SOFTMAX": _lower_softmax,
    "RESHAPE": _lower_reshape,
    "SQUEEZE": _lower_reshape,
    "MUL": _lower_mul,
    "MEAN": _lower_mean,
    "PAD": _lower_pad,
    "PADV2": _lower_pad,
    "CONCATENATION": _lower_concat,
    "LOGISTIC": _lower_logistic,
    "QUANTIZE": _lower_quantize,
}


def _check_int8_model(model: TfModel, label: str) -> None:
    for role, indices in (("input", model.inputs), ("output", model.outputs)):
        for i in indices:
            t = model.tensors[i]
            if t.type in _FLOAT_TYPES:
                raise UnsupportedModelError(
                    f"{label} is a float model ({role} '{t.name}' is {t.type_name}); mcuqp imports full-int8 "
                    "TFLite models: convert with full-integer quantization and int8 inputs and outputs")
            if t.type != _INT8:
                raise UnsupportedModelError(
                    f"{label}: {role} '{t.name}' is {t.type_name}; mcuqp imports models with int8 inputs and outputs")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f"{label} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; mcuqp needs exactly one of each")


def _lower(model: TfModel, label: str, name: str) -> TfliteImport:
    _check_int8_model(model, label)
    known, folded = _fold_constants(model)
    ctx = _Ctx(model, unique_tensor_names(model), known)
    ctx.ir_act(model.inputs[0])
    problems: list[str] = []
    lowered: list[tuple[TfOp, list[_IrOp]]] = []
    for op in model.ops:
        if op.index in folded:
            continue
        lower = LOWERERS.get(op.opcode)
        try:
            if lower is None:
                raise _Reject("not supported")
            if len(op.outputs) != 1:
                raise _Reject(f"{len(op.outputs)} outputs")
            lowered.append((op, lower(ctx, op)))
        except _Reject as e:
            problems.append(f"#{op.index} {op.opcode} ({e})")
    if problems:
        plural = "s" if len(problems) > 1 else ""
        raise UnsupportedModelError(
            f"{label}: {len(problems)} unsupported op{plural}: " + "; ".join(problems)
            + f". Supported: {', '.join(sorted(LOWERERS))}")
    graph = ir.Graph(name=name, tensors=dict(ctx.tensors))
    op_index: dict[str, int] = {}
    for op, ir_ops in lowered:
        for o in ir_ops:
            ir_name = f"{op.opcode.lower()}_{op.index}" + (f"_{o.suffix}" if o.suffix else "")
            graph.ops.append(ir.Op(o.kind, ir_name, o.inputs, [o.output], o.attrs,
                                   source=f"tflite op {op.index} {op.opcode}"))
            op_index[ir_name] = op.index
    graph.inputs = [ctx.names[model.inputs[0]]]
    graph.outputs = [ctx.names[model.outputs[0]]]
    try:
        if graph.outputs[0] not in graph.tensors:
            raise ValueError(f"the output '{graph.outputs[0]}' is not computed by any op")
        graph.validate()
    except ValueError as e:
        raise UnsupportedModelError(f"{label}: {e}") from None
    return TfliteImport(graph, dict(ctx.index_of), op_index, sorted(folded))


def import_tflite(path: str | Path) -> TfliteImport:
    """Import a full-int8 .tflite file with the side tables needed for per-layer comparison."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise McuqpError(f"cannot read {path}: {e.strerror}") from None
    if len(raw) >= 8 and raw[4:8] == b"TFL3":
        tflite_checks.check_flatbuffer(raw, str(path))
    model = parse_tflite(raw, str(path))
    tflite_checks.check_model(model, str(path))
    return _lower(model, str(path), path.stem)


def load_tflite(path: str | Path) -> ir.Graph:
    """The integer graph of a full-int8 .tflite file."""
    return import_tflite(path).graph
