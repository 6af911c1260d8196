"""Post-training int8 quantization of a float graph to an integer `ir.Graph`.

The arithmetic follows TFLite's converter (tensorflow/lite/tools/optimize/
quantization_utils.cc), in float32 where it computes in float32, so that a TFLite-style
engine given the same float model and ranges derives the same numbers:
- activations: asymmetric int8, scale = (max - min) / 255, zero point nudged from min,
  round(-128 - min / scale) clamped to [-128, 127]; ranges always include 0;
- weights: per-channel symmetric in [-127, 127], scale = max|w_c| / 127 (conv axis 0,
  depthwise axis 3, fully connected axis 0); a channel whose bias would overflow int32
  gets a larger scale (TFLite's AdjustWeightsForBiasScale); an all-zero channel with zero
  bias gets a tiny positive scale;
- low-bit weights (`mcuqp compress --quant ternary|binary|int2|int4`) keep their levels: a
  layer whose every channel holds one magnitude (sign(w) * alpha_c) gets int8 weights
  -1 / 0 / +1 with scale alpha_c, one whose channels hold multiples k * max_c / 7 gets
  k in [-7, 7] with scale max_c / 7 (`weight_levels`), so the code generator finds the
  ternary, binary or int4 format; the effective weights are the same as on the int8 grid;
- bias: int32, scale input_scale * weight_scale_c, round(b / scale);
- each op's module in `mcuqp.ops` says whether its output quantization is calibrated,
  shared with its input (max/avg pool, reshape) or fixed (softmax (1/256, -128), sign
  (1.0, 0)), and derives its kernel integers from the scales (`OpDef.from_float`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mcuqp import ir
from mcuqp.errors import McuqpError
from mcuqp.frontends.float_graph import FloatGraph, FloatOp, to_graph_layout, to_torch_layout
from mcuqp.frontends.torch_fx import import_torch
from mcuqp.ops import registry
from mcuqp.quant.calibrate import Method, Range, calibrate
from mcuqp.quant.fixedpoint import Rounding, round_half_away
from mcuqp.quant.qparams import activation_qparams

INT32_MAX = (1 << 31) - 1
# Attribute of a saved torch module holding activation ranges ({value name: (min, max)}) to
# quantize with instead of calibrating (`mcuqp compress` stores the ranges QAT learnt).
RANGES_ATTR = "mcuqp_activation_ranges"
ZERO_CHANNEL_SCALE = np.float32(1e-10)  # any positive value: the channel's weights are all 0


# ----------------------------------------------------------------------------- formulas


LOWBIT_MIN_ROW = 4  # shorter channels say nothing about levels (one weight has one magnitude)
INT4_TOLERANCE = 1e-3  # |w / (max / 7) - k|: float32 rounding of k * max / 7 after BN folding


def weight_levels(w: np.ndarray, axis: int) -> int:
    """1 when every channel of `w` along `axis` holds a single nonzero magnitude (ternary,
    binary, int2), 7 when every channel holds multiples of its max / 7 (int4), else 127."""
    w = np.asarray(w, dtype=np.float32)
    rows = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1))
    if rows.size == 0 or rows.shape[1] < LOWBIT_MIN_ROW or not np.any(rows):
        return 127
    top = rows.max(axis=1, keepdims=True)
    if np.all((rows == 0) | (rows == top)):
        return 1
    live = top[:, 0] > 0
    k = rows[live].astype(np.float64) / (top[live].astype(np.float64) / 7.0)
    return 7 if np.all(np.abs(k - np.round(k)) < INT4_TOLERANCE) else 127


def quantize_weights(
    w: np.ndarray,
    axis: int,
    *,
    bias: np.ndarray | None = None,
    input_scale: float | None = None,
    bits: int = 8,
    qmax: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric quantization along `axis`: (int8 weights, float32 scales).

    qmax: the largest level (default 2^(bits-1) - 1; `weight_levels` for low-bit weights).
    With `bias` and `input_scale`, a channel whose int32 bias would overflow gets a larger
    scale, as TFLite's converter does."""
    qmax = (1 << (bits - 1)) - 1 if qmax is None else int(qmax)
    w = np.asarray(w, dtype=np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    half_range = np.abs(moved).max(axis=1).astype(np.float32) if moved.size else np.zeros(w.shape[axis], np.float32)
    if bias is not None and input_scale is not None:
        in_s = float(np.float32(input_scale))
        b = np.abs(np.asarray(bias, dtype=np.float32)).astype(np.float64)
        too_big = b >= 0.5 * in_s * (half_range.astype(np.float64) / qmax) * INT32_MAX
        adjusted = (2.0 * b / INT32_MAX * (qmax / in_s)).astype(np.float32)
        half_range = np.where(too_big & (b > 0), adjusted, half_range)
    scales = (half_range / np.float32(qmax)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(half_range > 0, np.float32(qmax) / half_range, np.float32(0)).astype(np.float32)
    scales = np.where(half_range > 0, scales, ZERO_CHANNEL_SCALE).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    prod = (w * inv.reshape(shape)).astype(np.float32)  # float32 product, as TFLite
    q = np.clip(round_half_away(prod), -qmax, qmax).astype(np.int8)
    return q, scales


def quantize_bias(b: np.ndarray, input_scale: float, weight_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's SymmetricPerChannelBiasQuantize: (int32 bias, float32 bias scales)."""
    scales = (np.float32(input_scale) * np.asarray(weight_scales, dtype=np.float32)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(scales > 0, 1.0 / scales.astype(np.float64), 0.0).astype(np.float32)
    prod = (np.asarray(b, dtype=np.float32) * inv).astype(np.float32)
    q = np.clip(round_half_away(prod), -INT32_MAX, INT32_MAX).astype(np.int32)
    return q, scales


# ----------------------------------------------------------------------------- lowering


def _check_ranges(fg: FloatGraph, ranges: dict[str, Range]) -> None:
    names = set(fg.value_names())
    unknown = sorted(set(ranges) - names)
    if unknown:
        raise McuqpError(
            f"ranges given for unknown values {', '.join(map(repr, unknown))}; the values of {fg.name} are "
            f"{', '.join(fg.value_names())}"
        )
    for k, (lo, hi) in ranges.items():
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise McuqpError(f"range for {k!r} must be finite with min <= max, got ({lo}, {hi})")


def calibrated(op: FloatOp) -> bool:
    """Whether the op's output quantization comes from a calibrated range (not shared with
    its input or fixed by the op)."""
    return registry.get(op.kind).output_qparams == "calibrated"


def _check_finite_weights(fg: FloatGraph) -> None:
    for op in fg.ops:
        for what in ("weight", "bias"):
            v = getattr(op, what, None)
            if v is not None and not np.isfinite(v).all():
                raise McuqpError(f"{op.source}: its {what} contains NaN or infinite values; it cannot be quantized")


def _needs_range(fg: FloatGraph) -> list[str]:
    return [fg.input_name, *(op.name for op in fg.ops if calibrated(op))]


def _add_weights(g: ir.Graph, op: FloatOp, x: ir.Tensor, axis: int) -> tuple[list[str], np.ndarray]:
    """The op's weights and bias quantized for input `x` and added to `g`: (names, weight scales)."""
    in_s = x.quant.s
    wq, ws = quantize_weights(op.weight, axis, bias=op.bias, input_scale=in_s, qmax=weight_levels(op.weight, axis))
    bq, bs = quantize_bias(op.bias, in_s, ws)
    w_name, b_name = f"{op.name}.weight", f"{op.name}.bias"
    g.add_tensor(ir.Tensor(w_name, wq.shape, ir.DType.INT8, ir.QParams(ws, np.zeros_like(ws, np.int32), axis), wq))
    g.add_tensor(ir.Tensor(b_name, bq.shape, ir.DType.INT32, ir.QParams(bs, np.zeros_like(bs, np.int32), 0), bq))
    return [w_name, b_name], ws


def _constant_input(name: str, v: np.ndarray) -> ir.Tensor:
    """A float constant as int8 with per-tensor asymmetric quantization of its range (with 0)."""
    v = np.asarray(v, np.float32)
    scale, zp = activation_qparams(float(v.min()), float(v.max()))
    q = np.clip(round_half_away(v / np.float32(scale)) + zp, -128, 127).astype(np.int8)
    return ir.Tensor(name, q.shape, ir.DType.INT8, ir.QParams(np.float32(scale), zp), q)


def _output_qparams(d: registry.OpDef, x: ir.Tensor, ranges: dict[str, Range], name: str) -> ir.QParams:
    if d.output_qparams == "shared":
        return ir.QParams(x.quant.scale.copy(), x.quant.zero_point.copy())
    if isinstance(d.output_qparams, ir.QParams):
        return ir.QParams(d.output_qparams.scale.copy(), d.output_qparams.zero_point.copy())
    return ir.QParams(*activation_qparams(*ranges[name]))


def lower_to_int8(float_graph: FloatGraph, ranges: dict[str, Range], *, rounding: Rounding = "double") -> ir.Graph:
    """The integer graph for given activation ranges (keyed by value name). Needs a range
    for the input and for every conv, depthwise, linear and add output; ranges of pool,
    reshape, softmax and sign outputs are ignored (their quantization is fixed)."""
    _check_ranges(float_graph, ranges)
    _check_finite_weights(float_graph)
    missing = [n for n in _needs_range(float_graph) if n not in ranges]
    if missing:
        raise McuqpError(f"no activation range for {', '.join(map(repr, missing))}")
    fg = float_graph
    g = ir.Graph(name=fg.name)
    q_in = ir.QParams(*activation_qparams(*ranges[fg.input_name]))
    g.add_tensor(ir.Tensor(fg.input_name, fg.input_shape, ir.DType.INT8, q_in))
    g.inputs.append(fg.input_name)
    for op in fg.ops:
        d = registry.get(op.kind)
        if d.from_float is None:
            raise McuqpError(f"cannot quantize {op.kind.value} {op.source}")
        ins = [g.tensor(n) for n in op.inputs]
        y_q = _output_qparams(d, ins[0], ranges, op.name)
        names, weight_scales = [t.name for t in ins], None
        if d.weight_axis is not None:
            consts, weight_scales = _add_weights(g, op, ins[0], d.weight_axis)
            names += consts
        for i, v in enumerate(d.constant_inputs(op) if d.constant_inputs else ()):
            t = g.add_tensor(_constant_input(f"{op.name}.const{i}", v))
            names.append(t.name)
            ins.append(t)
        attrs = d.from_float(op, ins, y_q, rounding, weight_scales)
        g.add_tensor(ir.Tensor(op.name, op.shape, ir.DType.INT8, y_q))
        g.ops.append(ir.Op(op.kind, op.name, names, [op.name], attrs, op.source))
    g.outputs.append(fg.output_name)
    g.validate()
    return g


def quantize(
    float_graph: FloatGraph,
    calib_inputs: np.ndarray | None,
    *,
    method: Method = "minmax",
    ranges_override: dict[str, tuple[float, float]] | None = None,
    rounding: Rounding = "double",
    percentile: float = 99.99,
) -> ir.Graph:
    """Calibrate on `calib_inputs` (float, torch layout (N, C, H, W) or (N, features)) and
    quantize to int8.

    `ranges_override` sets (min, max) of chosen values, keyed by value name: the torch.fx
    node name of the last layer fused into the op producing it (for conv -> bn -> relu,
    the relu's node, e.g. 'features_2'; the input placeholder's name, e.g. 'x', for the
    input). `FloatGraph.value_names()` lists them. Ranges of pool, reshape and softmax
    outputs are ignored (they share their input's or a fixed quantization). With a range
    for every other value, `calib_inputs` may be None."""
    overrides = {k: (float(v[0]), float(v[1])) for k, v in (ranges_override or {}).items()}
    _check_ranges(float_graph, overrides)
    _check_finite_weights(float_graph)
    if calib_inputs is None:
        ranges: dict[str, Range] = {}
        missing = [n for n in _needs_range(float_graph) if n not in overrides]
        if missing:
            raise McuqpError(f"no calibration data and no range for {', '.join(map(repr, missing))}")
    else:
        ranges = calibrate(float_graph, calib_inputs, method=method, percentile=percentile)
    ranges.update(overrides)
    for k, (lo, hi) in ranges.items():
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise McuqpError(f"{k!r} reaches ({lo}, {hi}) on the calibration data: the float model computes "
                             "NaN or infinite values (check its weights and inputs)")
    return lower_to_int8(float_graph, ranges, rounding=rounding)


def quantize_module(
    module: nn.Module,
    calib_inputs: np.ndarray,
    *,
    method: Method = "minmax",
    ranges_override: dict[str, tuple[float, float]] | None = None,
    rounding: Rounding = "double",
    percentile: float = 99.99,
) -> ir.Graph:
    """`import_torch` then `quantize`, with the calibration data fixing the input shape."""
    x = np.asarray(calib_inputs.detach().cpu() if isinstance(calib_inputs, torch.Tensor) else calib_inputs)
    if x.ndim < 2 or len(x) == 0:
        raise McuqpError(f"calibration data must be a non-empty batch (N, C, H, W) or (N, features), got {x.shape}")
    fg = import_torch(module, torch.as_tensor(x[:1], dtype=torch.float32))
    return quantize(fg, x, method=method, ranges_override=ranges_override, rounding=rounding, percentile=percentile)


# ----------------------------------------------------------------------------- I/O


def quantize_input(graph: ir.Graph, x_nchw: np.ndarray) -> np.ndarray:
    """Float inputs in torch layout -> int8 in the graph's layout (batch-first), as
    TFLite's QUANTIZE does: round(x / scale) half away from zero, + zero point, clamp."""
    inp = graph.input
    x = to_graph_layout(np.asarray(x_nchw, dtype=np.float32))
    if tuple(x.shape[1:]) != tuple(inp.shape[1:]):
        want = to_torch_layout(np.zeros((1, *inp.shape[1:]), np.int8)).shape[1:]
        raise McuqpError(f"input has shape {tuple(np.shape(x_nchw))}; the model expects (N, {', '.join(map(str, want))})")
    q = round_half_away((x / inp.quant.scale[0]).astype(np.float32)) + inp.quant.zp
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize_output(graph: ir.Graph, y: np.ndarray, *, torch_layout: bool = True) -> np.ndarray:
    """int8 outputs (batch-first) -> float32, scale * (q - zero point); 4-D outputs are
    returned NCHW unless `torch_layout` is False."""
    out = graph.output
    y = np.asarray(y)
    f = (float(out.quant.scale[0]) * (y.astype(np.int64) - out.quant.zp)).astype(np.float32)
    return to_torch_layout(f) if torch_layout else f


__all__ = [
    "activation_qparams",
    "quantize_weights",
    "quantize_bias",
    "lower_to_int8",
    "quantize",
    "quantize_module",
    "quantize_input",
    "dequantize_output",
]
