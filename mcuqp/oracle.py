"""TFLite Micro as the oracle: run a .tflite file with TFLM's reference kernels.

`tflm_run` gives the model output for a batch of int8 inputs, `tflm_run_all_tensors`
every tensor TFLM computed (its preserve-all-tensors mode), and `first_mismatch` the
first op of an imported graph whose numpy-reference output differs from TFLM's.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mcuqp.errors import McuqpError, ToolchainError
from mcuqp.frontends.tflite import TfModel, parse_tflite, unique_tensor_names
from mcuqp.ir import Graph
from mcuqp.reference.interpreter import run_all

_MIN_ARENA = 1 << 20


def _runtime():
    try:
        from tflite_micro import runtime  # noqa: PLC0415  (optional dependency, test extra)
    except ImportError as e:
        raise ToolchainError(f"the TFLite Micro oracle needs the tflite-micro package ({e})") from None
    return runtime


def _interpreter(raw: bytes, preserve_all: bool):
    runtime = _runtime()
    config = runtime.InterpreterConfig.kPreserveAllTensors if preserve_all else runtime.InterpreterConfig.kAllocationRecording
    try:
        return runtime.Interpreter.from_bytes(raw, arena_size=max(_MIN_ARENA, 10 * len(raw)), intrepreter_config=config)
    except (RuntimeError, ValueError) as e:
        raise McuqpError(f"TFLite Micro cannot load the model: {e}") from None


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise McuqpError(f"cannot read {path}: {e.strerror}") from None


def _check_batch(model: TfModel, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    shape = model.tensors[model.inputs[0]].shape
    if x.dtype != np.int8:
        raise ValueError(f"oracle input must be int8, got {x.dtype}")
    if tuple(x.shape[1:]) != tuple(shape[1:]):
        raise ValueError(f"input shape {x.shape} does not match the model's {shape} (batch first)")
    return x


def _invocations(interp, x: np.ndarray) -> Iterator[None]:
    for i in range(x.shape[0]):
        interp.set_input(np.ascontiguousarray(x[i: i + 1]), 0)
        try:
            interp.invoke()
        except RuntimeError as e:
            raise McuqpError(f"TFLite Micro failed on input {i}: {e}") from None
        yield


def tflm_run(path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """TFLite Micro's output (int8, (N, *output_shape[1:])) for int8 inputs (N, *input_shape[1:])."""
    raw = _read(path)
    model = parse_tflite(raw, str(path))
    x = _check_batch(model, inputs)
    interp = _interpreter(raw, preserve_all=False)
    out_shape = model.tensors[model.outputs[0]].shape
    outs = [np.array(interp.get_output(0)).reshape(out_shape) for _ in _invocations(interp, x)]
    if not outs:
        return np.zeros((0, *out_shape[1:]), dtype=np.int8)
    return np.concatenate(outs, axis=0)


def tflm_run_all_tensors(path: str | Path, x: np.ndarray) -> dict[int, np.ndarray]:
    """Every non-constant tensor TFLite Micro computed, by TFLite tensor index, batch first
    ((N, *shape[1:])). Uses TFLM's preserve-all-tensors interpreter."""
    raw = _read(path)
    model = parse_tflite(raw, str(path))
    x = _check_batch(model, x)
    interp = _interpreter(raw, preserve_all=True)
    # batch-first tensors, and rank-1 vectors (C,) as (1, C) like the importer
    activations = [t for t in model.tensors if t.data is None and t.shape and (t.shape[0] == 1 or len(t.shape) == 1)]
    values: dict[int, list[np.ndarray]] = {t.index: [] for t in activations}
    for _ in _invocations(interp, x):
        for t in activations:
            data = interp.GetTensor(t.index, 0)["tensor_data"]
            values[t.index].append(np.array(data).reshape((1, *t.shape) if len(t.shape) == 1 else t.shape))
    return {i: np.concatenate(v, axis=0) for i, v in values.items() if v}


def tensor_index_by_name(path: str | Path) -> dict[str, int]:
    """IR tensor name -> TFLite tensor index for a model imported with `load_tflite`."""
    model = parse_tflite(_read(path), str(path))
    return {name: i for i, name in enumerate(unique_tensor_names(model))}


def first_mismatch(graph: Graph, path: str | Path, x: np.ndarray) -> tuple[str, str, int] | None:
    """The first op (in execution order) whose output differs between the numpy
    reference and TFLite Micro: (op name, tensor name, number of differing values), or
    None when every tensor with a TFLite twin matches exactly."""
    index = tensor_index_by_name(path)
    ours = run_all(graph, x)
    theirs = tflm_run_all_tensors(path, x)
    for op in graph.ops:
        for name in op.outputs:
            i = index.get(name)
            if i is None or i not in theirs:
                continue  # a helper tensor the importer added: checked through its consumers
            a, b = ours[name], theirs[i]
            if a.shape != b.shape:
                return op.name, name, int(max(a.size, b.size))
            n = int(np.count_nonzero(a != b))
            if n:
                return op.name, name, n
    return None
