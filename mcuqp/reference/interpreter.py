"""Execute an integer graph with the numpy reference kernels, exactly as the C does.

Runs a whole batch at once: the batch is the leading axis (the graph itself has batch 1).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind
from mcuqp.quant.fixedpoint import Rounding

Env = dict[str, np.ndarray]


def _const(graph: Graph, name: str) -> np.ndarray:
    return graph.tensors[name].data


def _optional_const(graph: Graph, op: Op, i: int) -> np.ndarray | None:
    return _const(graph, op.inputs[i]) if len(op.inputs) > i and op.inputs[i] else None


def _conv(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.conv2d import conv2d_s8

    return conv2d_s8(env[op.inputs[0]], _const(graph, op.inputs[1]), _optional_const(graph, op, 2), op.attrs, rounding)


def _depthwise(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.depthwise_conv2d import depthwise_conv2d_s8

    return depthwise_conv2d_s8(
        env[op.inputs[0]], _const(graph, op.inputs[1]), _optional_const(graph, op, 2), op.attrs, rounding
    )


def _fc(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.fully_connected import fully_connected_s8

    x = env[op.inputs[0]]
    out_shape = graph.tensors[op.outputs[0]].shape
    y = fully_connected_s8(
        x.reshape(-1, x.shape[-1]), _const(graph, op.inputs[1]), _optional_const(graph, op, 2), op.attrs, rounding
    )
    return y.reshape((x.shape[0], *out_shape[1:])) if len(out_shape) > 1 else y


def _max_pool(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.pooling import max_pool2d_s8

    return max_pool2d_s8(env[op.inputs[0]], op.attrs)


def _avg_pool(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.pooling import avg_pool2d_s8

    return avg_pool2d_s8(env[op.inputs[0]], op.attrs)


def _add(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.add import add_s8

    return add_s8(env[op.inputs[0]], env[op.inputs[1]], op.attrs, rounding)


def _softmax(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.softmax import softmax_s8

    return softmax_s8(env[op.inputs[0]], op.attrs, rounding)


def _reshape(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    x = env[op.inputs[0]]
    out_shape = graph.tensors[op.outputs[0]].shape
    return x.reshape((x.shape[0], *out_shape[1:]))


KERNELS: dict[OpKind, Callable[[Graph, Op, Env, Rounding], np.ndarray]] = {
    OpKind.CONV2D: _conv,
    OpKind.DEPTHWISE_CONV2D: _depthwise,
    OpKind.FULLY_CONNECTED: _fc,
    OpKind.MAX_POOL2D: _max_pool,
    OpKind.AVG_POOL2D: _avg_pool,
    OpKind.ADD: _add,
    OpKind.SOFTMAX: _softmax,
    OpKind.RESHAPE: _reshape,
}


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
        fn = KERNELS.get(op.kind)
        if fn is None:
            raise UnsupportedModelError(f"no reference kernel for op {op.kind.value} ({op.name})")
        y = fn(graph, op, env, rounding)
        expected = graph.tensors[op.outputs[0]].shape
        if tuple(y.shape[1:]) != tuple(expected[1:]):
            raise AssertionError(f"{op.name}: reference produced {y.shape}, graph says {expected}")
        env[op.outputs[0]] = y
    return env


def run(graph: Graph, x: np.ndarray, *, rounding: Rounding = "double") -> np.ndarray:
    """The graph output (int8, batch-first) for input `x`."""
    return run_all(graph, x, rounding=rounding)[graph.outputs[0]]


# ---- ops added for TFLite import: MUL, MEAN, PAD, CONCATENATION, LOGISTIC, QUANTIZE.
# Their inputs may be constants (MUL, CONCATENATION), which are broadcast over the batch.


def _batch_size(op: Op, env: Env) -> int:
    return next(env[name].shape[0] for name in op.inputs if name in env)


def _operand(graph: Graph, env: Env, name: str, rank: int) -> np.ndarray:
    """Input `name`, batch first, with `rank` dimensions: missing leading dimensions of an
    activation go after its batch axis (TFLite extends shapes on the left); a constant's
    leading 1 broadcasts over the batch."""
    if name in env:
        x = env[name]
        return x.reshape((x.shape[0],) + (1,) * (rank - x.ndim) + x.shape[1:])
    data = graph.tensors[name].data
    return data.reshape((1,) * (rank - data.ndim) + data.shape)


def _mul(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.mul import mul_s8

    rank = len(graph.tensors[op.outputs[0]].shape)
    return mul_s8(_operand(graph, env, op.inputs[0], rank), _operand(graph, env, op.inputs[1], rank), op.attrs,
                  rounding)


def _mean(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.mean import mean_s8

    y = mean_s8(env[op.inputs[0]], op.attrs, rounding)
    return y.reshape((y.shape[0], *graph.tensors[op.outputs[0]].shape[1:]))


def _pad(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.pad import pad_s8

    return pad_s8(env[op.inputs[0]], op.attrs)


def _concatenation(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.concatenation import concatenation_s8

    n = _batch_size(op, env)
    xs = [env[name] if name in env else np.broadcast_to(graph.tensors[name].data, (n, *graph.tensors[name].shape[1:]))
          for name in op.inputs]
    return concatenation_s8(xs, op.attrs)


def _logistic(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.logistic import logistic_s8

    return logistic_s8(env[op.inputs[0]], op.attrs, rounding)


def _quantize(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.quantize import quantize_s8

    return quantize_s8(env[op.inputs[0]], op.attrs, rounding)


KERNELS.update({
    OpKind.MUL: _mul,
    OpKind.MEAN: _mean,
    OpKind.PAD: _pad,
    OpKind.CONCATENATION: _concatenation,
    OpKind.LOGISTIC: _logistic,
    OpKind.QUANTIZE: _quantize,
})


# ---- binary activations: SIGN.


def _sign(graph: Graph, op: Op, env: Env, rounding: Rounding) -> np.ndarray:
    from mcuqp.reference.sign import sign_s8

    return sign_s8(env[op.inputs[0]], op.attrs)


KERNELS[OpKind.SIGN] = _sign
