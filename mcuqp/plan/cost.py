"""Arithmetic cost of an integer graph: multiply-accumulates per op."""
from __future__ import annotations

import numpy as np

from mcuqp.ir import Graph, Op, OpKind


def op_macs(graph: Graph, op: Op) -> int:
    """MACs of one op (conv, depthwise, fully connected; other ops count 0)."""
    y = graph.tensors[op.outputs[0]]
    if op.kind in (OpKind.CONV2D, OpKind.DEPTHWISE_CONV2D, OpKind.FULLY_CONNECTED):
        w = graph.tensors[op.inputs[1]]
        if op.kind == OpKind.FULLY_CONNECTED:
            return int(y.size * w.shape[1])
        _, kh, kw, cin = w.shape
        per_output = kh * kw * (cin if op.kind == OpKind.CONV2D else 1)
        return int(y.size * per_output)
    return 0


def graph_macs(graph: Graph) -> int:
    return int(np.sum([op_macs(graph, op) for op in graph.ops], dtype=np.int64))
