"""Execute an integer graph with the numpy reference kernels, exactly as the C does.

Runs a whole batch at once: the batch is the leading axis (the graph itself has batch 1).
Each op's reference lives in its module in `mcuqp.ops`; this only walks the graph.
"""
from __future__ import annotations

import numpy as np

from mcuqp.ir import Graph
from mcuqp.ops import registry
from mcuqp.quant.fixedpoint import Rounding

Env = dict[str, np.ndarray]


def run_all(graph: Graph, x: np.ndarray, *, rounding: Rounding = "double") -> Env:
    """Every tensor's value (batch-first) after running `x` (int8, (N, *input_shape[1:]))."""
    inp = graph.input
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ValueError(f"reference input must be int8, got {x.dtype}")
    if tuple(x.shape[1:]) != tuple(inp.shape[1:]):
        raise ValueError(f"input shape {x.shape} does not match the model's {inp.shape} (batch first)")
    env: Env = {inp.name: x}
    for op in graph.ops:
        y = registry.get(op.kind).reference(graph, op, env, rounding)
        expected = graph.tensors[op.outputs[0]].shape
        if tuple(y.shape[1:]) != tuple(expected[1:]):
            raise AssertionError(f"{op.name}: reference produced {y.shape}, graph says {expected}")
        env[op.outputs[0]] = y
    return env


def run(graph: Graph, x: np.ndarray, *, rounding: Rounding = "double") -> np.ndarray:
    """The graph output (int8, batch-first) for input `x`."""
    return run_all(graph, x, rounding=rounding)[graph.outputs[0]]
