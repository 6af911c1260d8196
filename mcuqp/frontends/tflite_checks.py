"""Validation of an untrusted .tflite file, before anything is lowered.

The flatbuffer bindings do not bounds-check indices stored in the file (an operator's
opcode index, a tensor's buffer index) and the lowerers assume a well-formed graph. These
checks run at load time, so a hostile or corrupt file fails with one line naming the
problem instead of being read as garbage or failing deep inside a lowerer:

- `check_flatbuffer(raw)`: the cross-references inside the file (subgraph count, opcode
  and buffer indices, operator tensor indices);
- `check_model(model)`: what mcuqp needs of the parsed graph (positive, bounded shapes;
  complete, finite, positive quantization; every tensor produced once; no cycle).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import tflite

from mcuqp.errors import McuqpError, UnsupportedModelError

if TYPE_CHECKING:  # tflite.py imports this module
    from mcuqp.frontends.tflite import TfModel, TfTensor

MAX_ELEMENTS = 1 << 28  # 256 Mi elements: far beyond any microcontroller, small enough to index with int32
_INT8, _INT32 = 9, 2
_ZERO_POINT_RANGE = {_INT8: (-128, 127), _INT32: (0, 0)}  # TFLite's int8 spec: int32 biases are symmetric


def _corrupt(label: str, what: str) -> McuqpError:
    return McuqpError(f"corrupt TFLite model {label}: {what}; re-export it from the converter")


def check_flatbuffer(raw: bytes, label: str) -> None:
    """Indices stored in the file point inside their tables. Call after the 'TFL3'
    identifier check and before `parse_tflite`."""
    try:
        model = tflite.Model.GetRootAsModel(raw, 0)
        n_subgraphs = model.SubgraphsLength()
        if n_subgraphs > 1:
            raise UnsupportedModelError(
                f"{label} has {n_subgraphs} subgraphs (control flow or several signatures); mcuqp compiles "
                "single-subgraph models: convert without control flow")
        if n_subgraphs == 0:
            raise _corrupt(label, "the model has no subgraph")
        n_codes, n_buffers = model.OperatorCodesLength(), model.BuffersLength()
        g = model.Subgraphs(0)
        n_tensors = g.TensorsLength()
        for i in range(n_tensors):
            b = g.Tensors(i).Buffer()
            if not 0 <= b < max(n_buffers, 1):
                raise _corrupt(label, f"tensor {i} refers to buffer {b} of {n_buffers}")
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            if not 0 <= op.OpcodeIndex() < n_codes:
                raise _corrupt(label, f"operator {i} refers to opcode {op.OpcodeIndex()} of {n_codes}")
            ins = op.InputsAsNumpy() if op.InputsLength() else ()
            outs = op.OutputsAsNumpy() if op.OutputsLength() else ()
            _check_indices(label, f"operator {i} input", ins, n_tensors, optional=True)
            _check_indices(label, f"operator {i} output", outs, n_tensors, optional=False)
        _check_indices(label, "subgraph input", g.InputsAsNumpy() if g.InputsLength() else (), n_tensors, False)
        _check_indices(label, "subgraph output", g.OutputsAsNumpy() if g.OutputsLength() else (), n_tensors, False)
    except McuqpError:
        raise
    except Exception as e:  # noqa: BLE001 - the bindings raise anything on corrupt offsets
        raise McuqpError(f"not a TFLite flatbuffer: {label} ({type(e).__name__}: {e})") from None


def _check_indices(label: str, role: str, indices: Iterable[Any], n: int, optional: bool) -> None:
    for t in indices:
        t = int(t)
        if not (0 <= t < n or (optional and t == -1)):
            raise _corrupt(label, f"{role} refers to tensor {t} of {n}")


def check_model(model: TfModel, label: str) -> None:
    """The parsed graph is one mcuqp can reason about; raises a one-line McuqpError."""
    for t in model.tensors:
        _check_shape(t, label)
        _check_quantization(t, label)
    _check_dataflow(model, label)


def _check_shape(t: TfTensor, label: str) -> None:
    if any(d <= 0 for d in t.shape):
        raise UnsupportedModelError(
            f"{label}: tensor {t.index} '{t.name}' has shape {list(t.shape)}; mcuqp needs fixed, positive "
            "dimensions (convert with a fixed batch size of 1)")
    n = math.prod(t.shape)
    if n > MAX_ELEMENTS:
        raise UnsupportedModelError(
            f"{label}: tensor {t.index} '{t.name}' has {n:,} elements (shape {list(t.shape)}), far more than "
            "a microcontroller holds")


def _check_quantization(t: TfTensor, label: str) -> None:
    if t.scale is None or t.scale.size == 0:
        return  # unquantized tensors are reported by the lowerer of the op using them
    where = f"{label}: tensor {t.index} '{t.name}'"
    if t.zero_point is not None and t.zero_point.size not in (0, t.scale.size):
        raise _corrupt(label, f"tensor {t.index} '{t.name}' has {t.scale.size} scales but "
                              f"{t.zero_point.size} zero points")
    bad = t.scale[~(np.isfinite(t.scale) & (t.scale > 0))]
    if bad.size:
        raise UnsupportedModelError(f"{where} has quantization scale {float(bad[0])!r}; scales must be finite "
                                    "and positive (re-run the converter's calibration)")
    if t.scale.size > 1:
        if not 0 <= t.quantized_dimension < len(t.shape):
            raise _corrupt(label, f"tensor {t.index} '{t.name}' is quantized along axis {t.quantized_dimension} "
                                  f"of a rank-{len(t.shape)} tensor")
        if t.shape[t.quantized_dimension] != t.scale.size:
            raise _corrupt(label, f"tensor {t.index} '{t.name}' has {t.scale.size} scales for "
                                  f"{t.shape[t.quantized_dimension]} channels along axis {t.quantized_dimension}")
    lo_hi = _ZERO_POINT_RANGE.get(t.type)
    if lo_hi is not None and t.zero_point is not None and t.zero_point.size:
        lo, hi = lo_hi
        bad_zp = t.zero_point[(t.zero_point < lo) | (t.zero_point > hi)]
        if bad_zp.size:
            raise UnsupportedModelError(f"{where} ({t.type_name}) has zero point {int(bad_zp[0])}, outside "
                                        f"[{lo}, {hi}]")


def _check_dataflow(model: TfModel, label: str) -> None:
    """Every tensor has at most one producer and the operators form no cycle. (An input
    that nothing computes is reported by the lowerer of the op reading it.)"""
    producer: dict[int, int] = {}
    for op in model.ops:
        for t in op.outputs:
            if t in producer:
                raise _corrupt(label, f"tensor {t} is written by operators {producer[t]} and {op.index}")
            if t in model.inputs:
                raise _corrupt(label, f"operator {op.index} writes the graph input tensor {t}")
            producer[t] = op.index
    for t in model.inputs:
        if model.tensors[t].data is not None:
            raise _corrupt(label, f"graph input tensor {t} is a constant")
    # Kahn's algorithm over operators: what is left over sits on a cycle.
    deps = {op.index: {producer[t] for t in op.inputs if t in producer} for op in model.ops}
    users: dict[int, list[int]] = {i: [] for i in deps}
    for i, ds in deps.items():
        for d in ds:
            users[d].append(i)
    ready = [i for i, ds in deps.items() if not ds]
    pending = {i: len(ds) for i, ds in deps.items()}
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for u in users[i]:
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(u)
    if done != len(deps):
        cycle = sorted(i for i, n in pending.items() if n > 0)
        raise _corrupt(label, f"operators {cycle} form a cycle")
