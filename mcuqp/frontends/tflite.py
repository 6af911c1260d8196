"""Import a full-int8 TFLite flatbuffer into the integer graph (`mcuqp.ir.Graph`).

Three steps, each a pure function of the previous one's output:
1. `parse_tflite` reads the flatbuffer (with the `tflite` bindings) into plain dataclasses,
   so that a corrupt file fails here and nowhere later.
2. `_fold_constants` evaluates, in numpy, the constant sub-graphs that converters emit
   (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE for a Flatten with a dynamic batch).
3. `_lower` turns every remaining operator into IR ops with the lowerer of the op module
   (`mcuqp.ops`) that declares its opcode; integer parameters are derived there exactly as
   TFLite Micro's Prepare derives them. Every unsupported operator is collected first and
   reported in one error.

IR tensor names are the TFLite tensor names made unique (`unique_tensor_names`), so the
IR can be compared with TFLite Micro tensor by tensor (`TfliteImport.tensor_index`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from mcuqp import ir
from mcuqp.errors import McuqpError, UnsupportedModelError
from mcuqp.frontends import tflite_checks
from mcuqp.ops import registry, tflite_lowering as tfl
from mcuqp.quant.fixedpoint import Rounding

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
    vectors: frozenset[int] = frozenset()  # rank-1 activations, imported as (1, C)


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
    "LEAKY_RELU": (tflite.LeakyReluOptions, {"Alpha": 0.0}),
    "CONCATENATION": (tflite.ConcatenationOptions, {"Axis": 0, "FusedActivationFunction": 0}),
    "MEAN": (tflite.ReducerOptions, {"KeepDims": False}),
    "SQUEEZE": (tflite.SqueezeOptions, {"SqueezeDimsAsNumpy": ()}),
    "PACK": (tflite.PackOptions, {"ValuesCount": 0, "Axis": 0}),
    "SHAPE": (tflite.ShapeOptions, {"OutType": _INT32}),
    "STRIDED_SLICE": (tflite.StridedSliceOptions, {
        "BeginMask": 0, "EndMask": 0, "EllipsisMask": 0, "NewAxisMask": 0, "ShrinkAxisMask": 0, "Offset": False}),
    "RESIZE_NEAREST_NEIGHBOR": (tflite.ResizeNearestNeighborOptions, {"AlignCorners": False, "HalfPixelCenters": False}),
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


@dataclass
class TfliteImport:
    graph: ir.Graph
    tensor_index: dict[str, int]  # IR tensor name -> TFLite tensor index
    op_index: dict[str, int]  # IR op name -> TFLite operator index
    folded_ops: list[int] = field(default_factory=list)  # TFLite operators evaluated at import


@dataclass
class _Ctx:
    model: TfModel
    names: list[str]
    known: dict[int, np.ndarray]
    tensors: dict[str, ir.Tensor] = field(default_factory=dict)
    index_of: dict[str, int] = field(default_factory=dict)  # IR name -> TFLite index
    rounding: Rounding = "double"  # requantization mode the multipliers are computed for

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
            raise tfl.Reject(f"missing {role} tensor")
        t = self.t(index)
        if index in self.known:
            raise tfl.Reject(f"{role} '{t.name}' is a constant, mcuqp needs it to be an activation")
        if t.type != _INT8:
            raise tfl.Reject(f"{role} '{t.name}' is {t.type_name}, mcuqp supports int8 activations only")
        if not t.quantized or t.scale.size != 1 or not float(t.scale[0]) > 0:
            raise tfl.Reject(f"{role} '{t.name}' needs per-tensor int8 quantization")
        if not t.shape or t.shape[0] != 1:
            raise tfl.Reject(f"{role} '{t.name}' has shape {list(t.shape)}, mcuqp needs batch 1")
        return t

    def const(self, index: int, role: str, ttype: int) -> TfTensor:
        if index < 0:
            raise tfl.Reject(f"missing {role} tensor")
        t = self.t(index)
        if index not in self.known:
            raise tfl.Reject(f"{role} '{t.name}' is not a constant")
        if t.type != ttype:
            raise tfl.Reject(f"{role} '{t.name}' is {t.type_name}, expected {_TYPE_NAMES[ttype]}")
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


Lowerer = Callable[[_Ctx, TfOp], list[tfl.LoweredOp]]
LOWERERS: dict[str, Lowerer] = registry.tflite_lowerers()  # TFLite opcode -> its op module's lowerer


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


def _vectors_as_rows(model: TfModel, known: dict[int, np.ndarray]) -> TfModel:
    """Rank-1 activations (C,) (converters write them between dense layers) as (1, C): the
    IR's batch-first vector, the same values in the same order."""
    vectors = frozenset(t.index for t in model.tensors if len(t.shape) == 1 and t.index not in known)
    tensors = [replace(t, shape=(1, *t.shape)) if t.index in vectors else t for t in model.tensors]
    return replace(model, tensors=tensors, vectors=vectors)


def _lower(model: TfModel, label: str, name: str, rounding: Rounding = "double") -> TfliteImport:
    _check_int8_model(model, label)
    known, folded = _fold_constants(model)
    model = _vectors_as_rows(model, known)
    ctx = _Ctx(model, unique_tensor_names(model), known, rounding=rounding)
    ctx.ir_act(model.inputs[0])
    problems: list[str] = []
    lowered: list[tuple[TfOp, list[tfl.LoweredOp]]] = []
    for op in model.ops:
        if op.index in folded:
            continue
        lower = LOWERERS.get(op.opcode)
        try:
            if lower is None:
                raise tfl.Reject("not supported")
            ir_ops = lower(ctx, op)
            if not {ctx.names[i] for i in op.outputs} <= {o.output for o in ir_ops}:
                raise tfl.Reject(f"{len(op.outputs)} outputs")
            lowered.append((op, ir_ops))
        except tfl.Reject as e:
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


def import_tflite(path: str | Path, rounding: Rounding = "double") -> TfliteImport:
    """Import a full-int8 .tflite file with the side tables needed for per-layer comparison."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise McuqpError(f"cannot read {path}: {e.strerror}") from None
    return _import_bytes(raw, str(path), path.stem, rounding)


def _import_bytes(raw: bytes, label: str, name: str, rounding: Rounding) -> TfliteImport:
    if len(raw) >= 8 and raw[4:8] == b"TFL3":
        tflite_checks.check_flatbuffer(raw, label)
    model = parse_tflite(raw, label)
    tflite_checks.check_model(model, label)
    return _lower(model, label, name, rounding)


def graph_from_bytes(raw: bytes, label: str = "model", name: str = "model", rounding: Rounding = "double") -> ir.Graph:
    """The integer graph of a full-int8 .tflite flatbuffer held in memory (`label` names it in errors)."""
    return _import_bytes(raw, label, name, rounding).graph


def load_tflite(path: str | Path, rounding: Rounding = "double") -> ir.Graph:
    """The integer graph of a full-int8 .tflite file, its multipliers computed for `rounding`."""
    return import_tflite(path, rounding).graph
