"""TFLite broadcasting shared by the binary ops (ADD, SUB, MUL, MAXIMUM, MINIMUM, PRELU):
shapes right-aligned, a dimension of 1 repeats. The C kernels walk the output with one
`mcuqp_broadcast` (output shape reduced to rank 6 and each input's element strides, 0 along
a broadcast dimension); the numpy twins broadcast like numpy, which is the same rule.

Not an op module (no `OPS`): the lowering check, the reference operands and the emitter's
struct live here once.
"""
from __future__ import annotations

import numpy as np

from mcuqp.ir import Graph, Op
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.registry import EmitContext, Env

MAX_RANK = 6  # mcuqp_broadcast's rank (MCUQP_BROADCAST_MAX_RANK)


def walk(a: tuple[int, ...], b: tuple[int, ...], y: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
    """(output shape, input-1 strides, input-2 strides) of an mcuqp_broadcast, each of rank 6.

    Like TFLite Micro, the broadcast is first reduced: output dimensions of 1 are dropped and
    neighbouring dimensions that both inputs read the same way (each either broadcasts along
    both or along neither) merge into one. A shape pair reduces to at most 6 dimensions exactly
    when TFLite Micro runs it; more raise tfl.Reject."""
    r = len(y)
    a = (1,) * (r - len(a)) + tuple(int(d) for d in a)
    b = (1,) * (r - len(b)) + tuple(int(d) for d in b)
    dims: list[list[int]] = []  # [size, input 1 broadcasts, input 2 broadcasts]
    for d in range(r):
        if y[d] == 1:
            continue
        kind = [int(a[d] == 1), int(b[d] == 1)]
        if dims and dims[-1][1:] == kind:
            dims[-1][0] *= int(y[d])
        else:
            dims.append([int(y[d]), *kind])
    if len(dims) > MAX_RANK:
        raise tfl.Reject(f"broadcasting {list(a)} with {list(b)} needs {len(dims)} dimensions, "
                         f"TFLite Micro and mcuqp run at most {MAX_RANK}")
    dims = [[1, 1, 1]] * (MAX_RANK - len(dims)) + dims
    shape = [d[0] for d in dims]

    def strides(which: int) -> list[int]:
        out, step = [0] * MAX_RANK, 1
        for k in range(MAX_RANK - 1, -1, -1):
            if not dims[k][which] and shape[k] != 1:
                out[k], step = step, step * shape[k]
        return out

    return shape, strides(1), strides(2)


def output_shape(a: tuple[int, ...], b: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast shape of `a` and `b`, checked against the output `y` and reducible to
    mcuqp_broadcast's rank (tfl.Reject otherwise)."""
    try:
        shape = tuple(int(d) for d in np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        raise tfl.Reject(f"shapes {list(a)} and {list(b)} do not broadcast") from None
    if shape != tuple(y):
        raise tfl.Reject(f"output shape {list(y)}, expected {list(shape)}")
    walk(a, b, y)
    return shape


def operand(graph: Graph, env: Env, name: str, rank: int) -> np.ndarray:
    """Input `name`, batch first, with `rank` dimensions: missing leading dimensions of an
    activation go after its batch axis (TFLite extends shapes on the left and the graph's
    batch is 1); a constant's leading 1s broadcast over the batch."""
    if name in env:
        x = env[name]
        return x.reshape((x.shape[0],) + (1,) * (rank - x.ndim) + x.shape[1:])
    data = graph.tensors[name].data
    return data.reshape((1,) * (rank - data.ndim) + data.shape)


def operands(graph: Graph, op: Op, env: Env) -> tuple[np.ndarray, np.ndarray]:
    rank = len(graph.tensors[op.outputs[0]].shape)
    return operand(graph, env, op.inputs[0], rank), operand(graph, env, op.inputs[1], rank)


def emit(e: EmitContext, layer, op: Op) -> str:
    """The op's `static const mcuqp_broadcast` (named l<index>_bcast); returns `&name`."""
    a, b, y = (e.graph.tensors[n].shape for n in (*op.inputs[:2], op.outputs[0]))
    shape, s1, s2 = walk(a, b, y)
    name = f"l{layer.index}_bcast"

    def row(v: list[int]) -> str:
        return "{" + ", ".join(map(str, v)) + "}"

    e.decl(layer, f"static const mcuqp_broadcast {name} = {{{row(shape)}, {row(s1)}, {row(s2)}}};\n",
           4 * 3 * MAX_RANK)
    return f"&{name}"
