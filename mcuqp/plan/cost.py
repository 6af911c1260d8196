"""Arithmetic cost of an integer graph: multiply-accumulates per op (each op's module in
mcuqp.ops counts its own)."""
from __future__ import annotations

import numpy as np

from mcuqp.ir import Graph, Op
from mcuqp.ops import registry


def op_macs(graph: Graph, op: Op) -> int:
    """MACs of one op (conv, depthwise, fully connected; other ops count 0)."""
    return registry.get(op.kind).macs(graph, op)


def graph_macs(graph: Graph) -> int:
    return int(np.sum([op_macs(graph, op) for op in graph.ops], dtype=np.int64))
