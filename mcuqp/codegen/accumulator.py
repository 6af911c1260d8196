"""Refuse layers whose int32 accumulator can overflow, before any code is generated.

A conv, depthwise or fully-connected output is acc = bias + sum_i (w_i + filter_offset) *
(x_i + input_offset) for int8 x_i. The kernels (and the numpy twins) add modulo 2^32, so
the result is exact whenever the final value fits in int32 whatever the order of the
additions; when it does not, the layer would silently compute garbage. The extremes of
acc over all int8 inputs are exact here: each term reaches its own minimum and maximum at
x_i = -128 or x_i = 127, independently of the others (padding only removes terms).
"""
from __future__ import annotations

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op
from mcuqp.ops import registry

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1



def accumulator_range(graph: Graph, op: Op) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) accumulator value per output channel over all int8 inputs, as int64."""
    w = graph.tensors[op.inputs[1]].data.astype(np.int64) + int(getattr(op.attrs, "filter_offset", 0))
    x_lo, x_hi = -128 + int(op.attrs.input_offset), 127 + int(op.attrs.input_offset)
    axes = registry.get(op.kind).accumulator_axes
    hi = np.maximum(w * x_lo, w * x_hi).sum(axis=axes)
    lo = np.minimum(w * x_lo, w * x_hi).sum(axis=axes)
    if len(op.inputs) > 2 and op.inputs[2]:
        bias = graph.tensors[op.inputs[2]].data.astype(np.int64).reshape(-1)
        hi, lo = hi + bias, lo + bias
    return lo.reshape(-1), hi.reshape(-1)


def check_accumulators(graph: Graph) -> None:
    """Raise UnsupportedModelError naming the first layer that can overflow int32."""
    for op in graph.ops:
        if registry.get(op.kind).accumulator_axes is None:
            continue
        lo, hi = accumulator_range(graph, op)
        bad = np.flatnonzero((hi > INT32_MAX) | (lo < INT32_MIN))
        if bad.size:
            c = int(bad[0])
            reach = int(hi[c]) if hi[c] > INT32_MAX else int(lo[c])
            raise UnsupportedModelError(
                f"{op.name} ({op.source}): output channel {c} can reach {reach:,} in its int32 accumulator "
                f"({bad.size} channel{'s' if bad.size > 1 else ''} can overflow); split the layer or retrain it "
                "with smaller weights")
