"""Test helpers around the package's .tflite writer (mcuqp.export.tflite): `ModelBuilder`
builds single-op oracle models and hand-made test models, `run_tflm` runs them on TFLite
Micro. Example::

    b = ModelBuilder()
    x = b.add_input("x", (1, 10), scale=0.05, zero_point=3)
    y = b.add_tensor("y", (1, 10), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [x], [y], {"beta": 1.0})
    b.mark_output(y)
    (out,) = run_tflm(b.build(), [np.zeros((1, 10), np.int8)])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mcuqp.errors import McuqpError
from mcuqp.export.tflite import ModelBuilder, TfliteBuildError, schema

__all__ = ["ModelBuilder", "TfliteBuildError", "run_tflm", "tflm_interpreter"]


def tflm_interpreter(model: bytes, arena_size: int | None = None) -> Any:
    """A TFLite Micro interpreter for `model` (needs the `tflite_micro` test dependency)."""
    try:
        from tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise McuqpError("TFLite Micro is not installed: pip install tflite-micro") from e
    if arena_size is None:
        arena_size = max(64 * 1024, 16 * len(model))
    return runtime.Interpreter.from_bytes(model, arena_size=arena_size)


def run_tflm(model: bytes, inputs: Sequence[np.ndarray], *, interpreter: Any = None) -> list[np.ndarray]:
    """Invoke TFLite Micro once on `inputs` (one array per subgraph input, exact shape and
    dtype) and return copies of all outputs. Pass `interpreter=tflm_interpreter(model)`
    to reuse one interpreter across calls."""
    interp = tflm_interpreter(model) if interpreter is None else interpreter
    for i, x in enumerate(inputs):
        interp.set_input(np.ascontiguousarray(x), i)
    interp.invoke()
    num_outputs = schema("Model").Model.GetRootAs(model, 0).Subgraphs(0).OutputsLength()
    return [np.array(interp.get_output(i), copy=True) for i in range(num_outputs)]
