"""The .tflite flatbuffer writer: any builtin op with its options, int8 / int16 / int32 /
float32 tensors, per-tensor or per-channel quantization, constant buffers.

`mcuqp export` writes its models with it (mcuqp.export.graph), and the tests build their
single-op TFLite Micro oracle models and hand-made models with it. Example::

    b = ModelBuilder()
    x = b.add_input("x", (1, 10), scale=0.05, zero_point=3)
    y = b.add_tensor("y", (1, 10), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [x], [y], {"beta": 1.0})
    b.mark_output(y)
    model = b.build()
    open("softmax.tflite", "wb").write(model)

Options are given as a dict of snake_case field names of the op's options table
(`stride_w`, `fused_activation_function`, `new_shape`, ...). Enum fields accept their
names as strings ("SAME", "RELU6"); list fields become int32 vectors. The options table
is found from the op name (`_OPTIONS_FOR_OP`, else the CamelCase op name + "Options") or
given with `options_type`.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from tflite.ActivationFunctionType import ActivationFunctionType
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.Padding import Padding
from tflite.TensorType import TensorType

from mcuqp.errors import McuqpError

_TENSOR_TYPES: dict[np.dtype, int] = {
    np.dtype(np.int8): TensorType.INT8,
    np.dtype(np.uint8): TensorType.UINT8,
    np.dtype(np.int16): TensorType.INT16,
    np.dtype(np.int32): TensorType.INT32,
    np.dtype(np.int64): TensorType.INT64,
    np.dtype(np.float32): TensorType.FLOAT32,
    np.dtype(np.bool_): TensorType.BOOL,
}

# Ops whose options table name is not simply the CamelCase op name + "Options".
_OPTIONS_FOR_OP: dict[str, str] = {
    "ADD": "AddOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "L2_POOL_2D": "Pool2DOptions",
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "SOFTMAX": "SoftmaxOptions",
    "RESHAPE": "ReshapeOptions",
    "MUL": "MulOptions",
    "SUB": "SubOptions",
    "CONCATENATION": "ConcatenationOptions",
    "PAD": "PadOptions",
    "MEAN": "ReducerOptions",
    "STRIDED_SLICE": "StridedSliceOptions",
    "PACK": "PackOptions",
    "SHAPE": "ShapeOptions",
    "QUANTIZE": "QuantizeOptions",
    "DEQUANTIZE": "DequantizeOptions",
}

# Option fields whose values may be given as enum names.
_ENUM_FIELDS: dict[str, type] = {
    "padding": Padding,
    "fused_activation_function": ActivationFunctionType,
}


class TfliteBuildError(McuqpError):
    """A model description that cannot be written as a .tflite flatbuffer."""


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    quantized_dimension: int
    buffer: int  # 0 = no data


@dataclass
class _Operator:
    opcode_index: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: dict[str, Any]
    options_module: str | None


def _camel(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


def schema(table: str) -> Any:
    # `import tflite.X` would give the class X that tflite/__init__ re-exports, not the
    # module holding the generated builder functions.
    return importlib.import_module(f"tflite.{table}")


def _builtin_code(op: str | int) -> int:
    if isinstance(op, int):
        return op
    code = getattr(BuiltinOperator, op.upper(), None)
    if code is None:
        raise TfliteBuildError(f"unknown TFLite builtin operator {op!r}")
    return int(code)


class ModelBuilder:
    """Accumulates tensors, constant buffers and operators of one subgraph; `build()`
    returns the serialized model (bytes). Tensor handles are the int indices returned."""

    def __init__(self, description: str = "mcuqp test model") -> None:
        self.description = description
        self._tensors: list[_Tensor] = []
        self._buffers: list[bytes] = [b""]  # buffer 0 is the empty sentinel
        self._opcodes: list[tuple[int, int]] = []  # (builtin code, version)
        self._operators: list[_Operator] = []
        self._inputs: list[int] = []
        self._outputs: list[int] = []

    def add_tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: np.dtype | type = np.int8,
        *,
        scale: float | Sequence[float] | np.ndarray | None = None,
        zero_point: int | Sequence[int] | np.ndarray | None = None,
        quantized_dimension: int = 0,
        data: np.ndarray | None = None,
    ) -> int:
        """A tensor; with `data` it is a constant (data is cast to `dtype` and must have
        `shape`). Quantization is per-tensor for one scale, per-channel along
        `quantized_dimension` otherwise (zero points default to 0)."""
        dt = np.dtype(dtype)
        if dt not in _TENSOR_TYPES:
            raise TfliteBuildError(f"tensor {name!r}: unsupported dtype {dt}")
        shape = tuple(int(s) for s in shape)
        sc = zp = None
        if scale is not None:
            sc = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            zp = np.zeros(sc.shape, np.int64) if zero_point is None else np.atleast_1d(np.asarray(zero_point, np.int64))
            if zp.size == 1 and sc.size > 1:
                zp = np.full(sc.shape, zp[0], np.int64)
            if zp.shape != sc.shape:
                raise TfliteBuildError(f"tensor {name!r}: {sc.size} scales but {zp.size} zero points")
            if sc.size > 1 and (not 0 <= quantized_dimension < len(shape) or shape[quantized_dimension] != sc.size):
                raise TfliteBuildError(f"tensor {name!r}: {sc.size} scales do not match axis {quantized_dimension} of {shape}")
        elif zero_point is not None:
            raise TfliteBuildError(f"tensor {name!r}: zero_point given without scale")
        buffer = 0
        if data is not None:
            arr = np.asarray(data)
            if arr.shape != shape:
                raise TfliteBuildError(f"tensor {name!r}: data shape {arr.shape} != {shape}")
            self._buffers.append(np.ascontiguousarray(arr, dtype=dt.newbyteorder("<")).tobytes())
            buffer = len(self._buffers) - 1
        self._tensors.append(_Tensor(name, shape, dt, sc, zp, int(quantized_dimension), buffer))
        return len(self._tensors) - 1

    def add_input(self, name: str, shape: Sequence[int], dtype: np.dtype | type = np.int8, **quant: Any) -> int:
        """A non-constant tensor that is also a subgraph input (in call order)."""
        idx = self.add_tensor(name, shape, dtype, **quant)
        self._inputs.append(idx)
        return idx

    def add_constant(self, name: str, data: np.ndarray, **quant: Any) -> int:
        """A constant tensor with the shape and dtype of `data`."""
        arr = np.asarray(data)
        return self.add_tensor(name, arr.shape, arr.dtype, data=arr, **quant)

    def mark_input(self, tensor: int) -> None:
        """Make an existing non-constant tensor a subgraph input (in call order)."""
        self._inputs.append(tensor)

    def mark_output(self, tensor: int) -> None:
        self._outputs.append(tensor)

    def add_operator(
        self,
        op: str | int,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options: dict[str, Any] | None = None,
        *,
        options_type: str | None = None,
        version: int = 1,
    ) -> None:
        """A builtin operator. `inputs` may contain -1 for an omitted optional input
        (e.g. no bias). `options_type` names the options table (e.g. "Pool2DOptions")
        when the op is not in the built-in table."""
        code = _builtin_code(op)
        key = (code, int(version))
        if key not in self._opcodes:
            self._opcodes.append(key)
        n = len(self._tensors)
        for t in [*inputs, *outputs]:
            if not -1 <= t < n:
                raise TfliteBuildError(f"operator {op}: tensor index {t} out of range")
        name = options_type
        if name is None and isinstance(op, str):
            name = _OPTIONS_FOR_OP.get(op.upper())
            if name is None and options and hasattr(BuiltinOptions, f"{_camel(op.lower())}Options"):
                name = f"{_camel(op.lower())}Options"  # e.g. LEAKY_RELU -> LeakyReluOptions
        if name is None and options:
            raise TfliteBuildError(f"operator {op}: give options_type for its options")
        if name is not None and not hasattr(BuiltinOptions, name):
            raise TfliteBuildError(f"unknown TFLite options table {name!r}")
        self._operators.append(
            _Operator(
                self._opcodes.index(key),
                list(inputs),
                list(outputs),
                getattr(BuiltinOptions, name) if name else BuiltinOptions.NONE,
                dict(options or {}),
                name,
            )
        )

    # ---- serialization -------------------------------------------------------------

    def build(self, *, subgraphs: int = 1) -> bytes:
        """The model; `subgraphs` > 1 repeats the subgraph (hostile-input tests)."""
        if not self._inputs or not self._outputs:
            raise TfliteBuildError("a model needs at least one input and one output")
        b = flatbuffers.Builder(1024)
        Buf, Mdl, Opr, Opc, Sg = map(schema, ("Buffer", "Model", "Operator", "OperatorCode", "SubGraph"))

        buffers = []
        for data in self._buffers:
            vec = self._byte_vector(b, data) if data else None
            Buf.Start(b)
            if vec is not None:
                Buf.AddData(b, vec)
            buffers.append(Buf.End(b))
        tensors = [self._tensor(b, t) for t in self._tensors]
        operators = []
        for op in self._operators:
            opts = self._options(b, op) if op.options_module else None
            ins = self._int32_vector(b, op.inputs)
            outs = self._int32_vector(b, op.outputs)
            Opr.Start(b)
            Opr.AddOpcodeIndex(b, op.opcode_index)
            Opr.AddInputs(b, ins)
            Opr.AddOutputs(b, outs)
            if opts is not None:
                Opr.AddBuiltinOptionsType(b, op.options_type)
                Opr.AddBuiltinOptions(b, opts)
            operators.append(Opr.End(b))
        sg_name = b.CreateString("main")
        sg_tensors = self._offset_vector(b, tensors)
        sg_inputs = self._int32_vector(b, self._inputs)
        sg_outputs = self._int32_vector(b, self._outputs)
        sg_ops = self._offset_vector(b, operators)
        Sg.Start(b)
        Sg.AddTensors(b, sg_tensors)
        Sg.AddInputs(b, sg_inputs)
        Sg.AddOutputs(b, sg_outputs)
        Sg.AddOperators(b, sg_ops)
        Sg.AddName(b, sg_name)
        subgraph = Sg.End(b)

        codes = []
        for code, version in self._opcodes:
            Opc.Start(b)
            Opc.AddDeprecatedBuiltinCode(b, min(code, 127))
            Opc.AddBuiltinCode(b, code)
            Opc.AddVersion(b, version)
            codes.append(Opc.End(b))
        codes_vec = self._offset_vector(b, codes)
        subgraphs_vec = self._offset_vector(b, [subgraph] * subgraphs)
        buffers_vec = self._offset_vector(b, buffers)
        desc = b.CreateString(self.description)
        Mdl.Start(b)
        Mdl.AddVersion(b, 3)
        Mdl.AddOperatorCodes(b, codes_vec)
        Mdl.AddSubgraphs(b, subgraphs_vec)
        Mdl.AddDescription(b, desc)
        Mdl.AddBuffers(b, buffers_vec)
        b.Finish(Mdl.End(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def _tensor(self, b: flatbuffers.Builder, t: _Tensor) -> int:
        Qp, Ten = schema("QuantizationParameters"), schema("Tensor")

        quant = None
        if t.scale is not None:
            scale = b.CreateNumpyVector(t.scale.astype("<f4"))
            zp = b.CreateNumpyVector(t.zero_point.astype("<i8"))
            Qp.Start(b)
            Qp.AddScale(b, scale)
            Qp.AddZeroPoint(b, zp)
            Qp.AddQuantizedDimension(b, t.quantized_dimension)
            quant = Qp.End(b)
        name = b.CreateString(t.name)
        shape = self._int32_vector(b, t.shape)
        Ten.Start(b)
        Ten.AddShape(b, shape)
        Ten.AddType(b, _TENSOR_TYPES[t.dtype])
        Ten.AddBuffer(b, t.buffer)
        Ten.AddName(b, name)
        if quant is not None:
            Ten.AddQuantization(b, quant)
        return Ten.End(b)

    @staticmethod
    def _options(b: flatbuffers.Builder, op: _Operator) -> int:
        mod = schema(op.options_module)
        # Vectors must be finished before the options table is started.
        values: dict[str, Any] = {}
        for key, value in op.options.items():
            if isinstance(value, (list, tuple, np.ndarray)):
                values[key] = b.CreateNumpyVector(np.asarray(value, dtype="<i4").ravel())
            elif isinstance(value, str) and key in _ENUM_FIELDS:
                enum_value = getattr(_ENUM_FIELDS[key], value.upper(), None)
                if enum_value is None:
                    raise TfliteBuildError(f"option {key}: unknown value {value!r}")
                values[key] = enum_value
            else:
                values[key] = value
        mod.Start(b)
        for key, value in values.items():
            adder = getattr(mod, f"Add{_camel(key)}", None)
            if adder is None:
                raise TfliteBuildError(f"{op.options_module} has no field {key!r}")
            adder(b, value)
        return mod.End(b)

    @staticmethod
    def _byte_vector(b: flatbuffers.Builder, data: bytes) -> int:
        # 16-byte alignment so that TFLM can read int32/int64 constants in place.
        b.StartVector(1, len(data), 16)
        b.head = b.head - len(data)
        b.Bytes[b.head : b.head + len(data)] = data
        return b.EndVector()

    @staticmethod
    def _int32_vector(b: flatbuffers.Builder, values: Sequence[int]) -> int:
        return b.CreateNumpyVector(np.asarray(list(values), dtype="<i4"))

    @staticmethod
    def _offset_vector(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()
