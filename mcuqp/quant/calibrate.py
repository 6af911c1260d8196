"""Calibration: the float range of every activation over calibration data.

Methods
- "minmax": the observed min and max (TFLite's converter default).
- "percentile": the `percentile`-th and (100 - `percentile`)-th percentiles, clipping rare outliers.
- "mse": the clip range [lo, hi] minimising the mean squared error of quantizing the
  observed values with 2^bits levels (TFLite-style asymmetric scale and zero point),
  searched over fractions of the observed min and max.

Ranges always include 0 (so that 0 is exactly representable). Values are observed by
running the float graph in batches; percentile and MSE work on a uniform random sample
of at most `max_samples` values per tensor (exact when the data is smaller).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mcuqp.errors import McuqpError
from mcuqp.frontends.float_graph import FloatGraph
from mcuqp.quant.qparams import activation_qparams

Method = Literal["minmax", "percentile", "mse"]
METHODS: tuple[str, ...] = ("minmax", "percentile", "mse")
Range = tuple[float, float]


@dataclass
class Observation:
    """Running statistics of one tensor."""

    min: float = np.inf
    max: float = -np.inf
    count: int = 0
    samples: list[np.ndarray] = field(default_factory=list)

    def values(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(0, dtype=np.float32)


def check_calibration_inputs(float_graph: FloatGraph, x: np.ndarray) -> np.ndarray:
    """Validate user calibration data against the model's input shape (torch layout)."""
    x = np.asarray(x)
    want = float_graph.input_shape_nchw[1:]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
        raise McuqpError(
            f"calibration data has shape {tuple(x.shape)}; the model expects (N, {', '.join(map(str, want))})"
        )
    if len(x) == 0:
        raise McuqpError("calibration data is empty")
    if not np.issubdtype(x.dtype, np.floating):
        raise McuqpError(f"calibration data must be float (the model's input), got {x.dtype}")
    if not np.isfinite(x).all():
        raise McuqpError("calibration data contains NaN or infinite values")
    return x.astype(np.float32)


def observe(
    float_graph: FloatGraph,
    calib_inputs: np.ndarray,
    *,
    batch_size: int = 64,
    max_samples: int = 1 << 20,
    seed: int = 0,
) -> dict[str, Observation]:
    """Run the float graph over `calib_inputs` (torch layout) and record every value."""
    x = check_calibration_inputs(float_graph, calib_inputs)
    rng = np.random.default_rng(seed)
    obs = {name: Observation() for name in float_graph.value_names()}
    for i in range(0, len(x), batch_size):
        env = float_graph.run_all(x[i : i + batch_size])
        for name, o in obs.items():
            v = env[name].ravel()
            o.min = min(o.min, float(v.min()))
            o.max = max(o.max, float(v.max()))
            o.count += v.size
            if max_samples <= 0:
                continue
            keep = max_samples / ((v.size // len(env[name])) * len(x))
            o.samples.append(v if keep >= 1.0 else v[rng.random(v.size) < keep])
    return obs


def _with_zero(lo: float, hi: float) -> Range:
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0.0:
        # A tensor that was always 0: any scale represents it exactly; pick [0, 1].
        hi = lo + 1.0
    return lo, hi


def quantize_dequantize(v: np.ndarray, lo: float, hi: float, bits: int = 8) -> np.ndarray:
    """Fake-quantize `v` with the asymmetric scale and zero point of range [lo, hi]."""
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scale, zp = activation_qparams(lo, hi, bits)
    q = np.clip(np.round(v / scale) + zp, qmin, qmax)
    return (q - zp) * scale


def mse_range(values: np.ndarray, bits: int = 8, *, grid: int = 256, rounds: int = 2) -> Range:
    """The clip range [lo, hi] minimising the quantization MSE of `values`.

    The error of a candidate is exact for the clipped values (prefix sums over the sorted
    values, against the range actually representable after zero-point nudging) and
    scale^2 / 12 for each non-zero value inside (zeros are exact). Candidates are
    geometric fractions (1/1000 .. 1) of the observed min and max: first both scaled
    together, then `rounds` of coordinate descent on lo and hi separately."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = v.size
    if n == 0:
        return 0.0, 1.0
    lo0, hi0 = _with_zero(v[0], v[-1])
    s1 = np.concatenate([[0.0], np.cumsum(v)])
    s2 = np.concatenate([[0.0], np.cumsum(v * v)])
    zeros = int(np.searchsorted(v, 0.0, "right") - np.searchsorted(v, 0.0, "left"))
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def err(r: Range) -> float:
        scale, zp = activation_qparams(r[0], r[1], bits)
        s = float(scale)
        a, b = (qmin - zp) * s, (qmax - zp) * s
        i = int(np.searchsorted(v, a, "left"))  # v[:i] < a are clipped up to a
        j = int(np.searchsorted(v, b, "right"))  # v[j:] > b are clipped down to b
        below = s2[i] - 2 * a * s1[i] + a * a * i
        above = (s2[n] - s2[j]) - 2 * b * (s1[n] - s1[j]) + b * b * (n - j)
        inside = (j - i - zeros) * s * s / 12.0
        return float(below + above + inside) / n

    fracs = np.geomspace(1e-3, 1.0, grid)
    lo, hi = min(((lo0 * f, hi0 * f) for f in fracs), key=err)
    for _ in range(rounds):
        if lo0 < 0:
            lo, hi = min(((lo0 * f, hi) for f in fracs), key=err)
        if hi0 > 0:
            lo, hi = min(((lo, hi0 * f) for f in fracs), key=err)
    return float(lo), float(hi)


def choose_range(o: Observation, method: Method = "minmax", *, percentile: float = 99.99, bits: int = 8) -> Range:
    if method == "minmax":
        return _with_zero(o.min, o.max)
    if method == "percentile":
        v = o.values()
        if not 50.0 < percentile <= 100.0:
            raise McuqpError(f"percentile must be in (50, 100], got {percentile}")
        return _with_zero(np.percentile(v, 100.0 - percentile), np.percentile(v, percentile))
    if method == "mse":
        return _with_zero(*mse_range(o.values(), bits))
    raise McuqpError(f"unknown calibration method {method!r}: choose one of {', '.join(METHODS)}")


def calibrate(
    float_graph: FloatGraph,
    calib_inputs: np.ndarray,
    *,
    method: Method = "minmax",
    percentile: float = 99.99,
    bits: int = 8,
    batch_size: int = 64,
) -> dict[str, Range]:
    """The chosen (min, max) of every value of the float graph, keyed by value name
    (the fx node names; see `FloatGraph.value_names`)."""
    if method not in METHODS:
        raise McuqpError(f"unknown calibration method {method!r}: choose one of {', '.join(METHODS)}")
    obs = observe(float_graph, calib_inputs, batch_size=batch_size, max_samples=(1 << 20) if method != "minmax" else 0)
    return {name: choose_range(o, method, percentile=percentile, bits=bits) for name, o in obs.items()}


def format_ranges(ranges: dict[str, Range], observed: dict[str, Observation] | None = None, bits: int = 8) -> str:
    """A printable table: value, chosen range, scale and zero point (and observed range)."""
    rows = [("value", "min", "max", "scale", "zero point") + (("observed min", "observed max") if observed else ())]
    for name, (lo, hi) in ranges.items():
        scale, zp = activation_qparams(lo, hi, bits)
        row = (name, f"{lo:.6g}", f"{hi:.6g}", f"{scale:.6g}", str(zp))
        if observed and name in observed:
            row += (f"{observed[name].min:.6g}", f"{observed[name].max:.6g}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
