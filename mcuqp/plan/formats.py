"""Weight format of each conv / depthwise / fully connected layer: which packed formats a
layer's effective int8 weights allow, what each costs in flash and in instructions, and
the choice the code generator makes.

Formats (mcuqp/packing.py has the layouts, runtime_c/src/*_{sparse,lowbit,xnor}_s8.c the
kernels): "int8" dense; "sparse" (nonzeros with 8-bit column indices, any weights);
"int4" (every weight in [-8, 7]); "ternary" ({-1, 0, +1}); "binary" ({-1, +1}); "xnor"
(binary weights on the output of a SIGN op: XOR and popcount). Every packed layer
computes exactly what the dense int8 layer computes on the same weights.

Choice (`choose_formats`): per layer the fastest format by the instruction-cost table
below; when the model's flash exceeds the budget, layers move to smaller formats, the
best bytes saved per instruction added first, until it fits; when even the smallest
formats do not fit, every layer takes its smallest. Sparse is chosen only where it is
faster (below the break-even density) or needed to fit.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mcuqp import packing
from mcuqp.errors import McuqpError
from mcuqp.ir import Graph, Op
from mcuqp.ops import registry

DENSE = "int8"
FORMATS = ("int8", "sparse", "int4", "ternary", "binary", "xnor")
# op kind -> the cost-table / packing family of its weights (OHWI rows or a depthwise stream)
_FAMILY = {"fully_connected": "fc", "conv2d": "conv2d", "depthwise_conv2d": "depthwise"}

# Instructions per multiply-accumulate on Cortex-M4 (DSP kernels), fitted on
# benchmarks/results/packed.json (fc 256x256, conv 3x3 32->32 on 16x16, depthwise 3x3 on
# 32x32x32): dense and low-bit formats a constant per MAC; sparse a constant per MAC of the
# dense layer (row and window overhead) plus one per nonzero MAC.
COST_PER_MAC: dict[str, dict[str, float]] = {
    "fc": {"int8": 2.218, "int4": 2.581, "ternary": 2.464, "binary": 2.243, "xnor": 0.779},
    "conv2d": {"int8": 1.456, "int4": 1.741, "ternary": 1.694, "binary": 1.738, "xnor": 0.961},
    "depthwise": {"int8": 4.592, "int4": 4.612, "ternary": 4.612, "binary": 4.612},
}
# Dense int8 on Helium (boards with "mve"; the packed kernels have no Helium variants and cost
# about what they cost on M4): benchmarks/results/mlperf_tiny.json (M55, per op kind) and the
# MNIST-5k MLP of benchmarks/results/compression_packed.json.
DENSE_MVE_COST_PER_MAC: dict[str, float] = {"fc": 0.35, "conv2d": 0.393, "depthwise": 2.445}
SPARSE_COST: dict[str, tuple[float, float]] = {  # (per dense MAC, per nonzero MAC)
    "fc": (0.318, 4.484),
    "conv2d": (0.408, 3.121),
    "depthwise": (2.764, 11.182),
}


@dataclass(frozen=True)
class LayerFormat:
    """One layer in one format: flash bytes of its filter and estimated instructions."""

    format: str
    weight_bytes: int  # filter values (packed words, nonzero values, or int8 weights)
    index_bytes: int  # sparse counts and column indices
    instructions: float

    @property
    def flash_bytes(self) -> int:
        return self.weight_bytes + self.index_bytes


def op_family(op: Op) -> str | None:
    """"fc" | "conv2d" | "depthwise" for a layer with weights, None otherwise."""
    return _FAMILY.get(op.kind.value)


def weights(graph: Graph, op: Op) -> np.ndarray:
    return graph.tensors[op.inputs[1]].data


def _after_sign(graph: Graph, op: Op) -> bool:
    """The op's input is a SIGN output (-1 / +1), possibly through views (reshape)."""
    producers = graph.producers()
    name = op.inputs[0]
    while (p := producers.get(name)) is not None and registry.get(p.kind).alias == "view":
        name = p.inputs[0]
    return p is not None and registry.get(p.kind).sign_output


def allowed(graph: Graph, op: Op) -> tuple[str, ...]:
    """The formats `op`'s effective int8 weights allow ("int8" always first)."""
    fam = op_family(op)
    if fam is None:
        return ()
    w = weights(graph, op)
    if w is None or w.dtype != np.int8 or getattr(op.attrs, "filter_offset", 0) != 0:
        return (DENSE,)
    kernels = {k.weight_format for k in registry.get(op.kind).kernels}
    out = [DENSE]
    if fam != "depthwise" or w.shape[1] * w.shape[2] <= 255:
        out.append("sparse")
    lo, hi = int(w.min()), int(w.max())
    if lo >= -8 and hi <= 7:
        out.append("int4")
    if lo >= -1 and hi <= 1:
        out.append("ternary")
        if not np.any(w == 0):
            out.append("binary")
            if op.attrs.input_offset == 0 and _after_sign(graph, op):
                out.append("xnor")
    return tuple(f for f in out if f in kernels)


def macs(graph: Graph, op: Op) -> int:
    return int(registry.get(op.kind).macs(graph, op))


def layer_format(graph: Graph, op: Op, fmt: str, features: frozenset[str] = frozenset()) -> LayerFormat:
    """Bytes (from the real packing) and estimated instructions of `op` in format `fmt` on a
    CPU with `features`."""
    fam, w = op_family(op), weights(graph, op)
    n = macs(graph, op)
    if fmt == DENSE:
        per_mac = DENSE_MVE_COST_PER_MAC[fam] if "mve" in features else COST_PER_MAC[fam][DENSE]
        return LayerFormat(fmt, int(w.size), 0, per_mac * n)
    if fmt == "sparse":
        p = packing.pack_sparse_depthwise(w) if fam == "depthwise" else packing.pack_sparse_rows(w)
        per_mac, per_nonzero = SPARSE_COST[fam]
        density = float(np.count_nonzero(w)) / w.size
        return LayerFormat(fmt, p.weight_bytes, p.index_bytes, n * (per_mac + per_nonzero * density))
    p = packing.pack_lowbit(w, "binary" if fmt == "xnor" else fmt, depthwise=fam == "depthwise")
    return LayerFormat(fmt, p.weight_bytes, p.index_bytes, COST_PER_MAC[fam][fmt] * n)


def options(graph: Graph, op: Op, features: frozenset[str] = frozenset()) -> dict[str, LayerFormat]:
    return {f: layer_format(graph, op, f, features) for f in allowed(graph, op)}


def _fastest(opts: Mapping[str, LayerFormat]) -> str:
    return min(opts, key=lambda f: (opts[f].instructions, opts[f].flash_bytes))


def _smallest(opts: Mapping[str, LayerFormat]) -> str:
    return min(opts, key=lambda f: (opts[f].flash_bytes, opts[f].instructions))


def layer_names(graph: Graph) -> dict[str, int]:
    """Op name -> index of every layer with weights (what `--format NAME=FORMAT` names)."""
    return {op.name: i for i, op in enumerate(graph.ops) if op_family(op) is not None}


def check_overrides(graph: Graph, overrides: Mapping[str, str]) -> dict[int, str]:
    """`--format` overrides (op name -> format) as op index -> format; McuqpError (one line)
    for an unknown layer or a format its weights do not allow. Name "*": every layer whose
    weights allow the format (named layers override it)."""
    names = layer_names(graph)
    out: dict[int, str] = {}
    if "*" in overrides:
        fmt = overrides["*"]
        if fmt not in FORMATS:
            raise McuqpError(f"--format *={fmt}: unknown format (one of {', '.join(FORMATS)})")
        out = {i: fmt for i in names.values() if fmt in allowed(graph, graph.ops[i])}
        if not out:
            raise McuqpError(f"--format *={fmt}: no layer's weights allow {fmt}")
    for name, fmt in overrides.items():
        if name == "*":
            continue
        if name not in names:
            known = ", ".join(names) or "none"
            raise McuqpError(f"--format: no layer named {name!r} with weights (layers: {known})")
        if fmt not in FORMATS:
            raise McuqpError(f"--format {name}={fmt}: unknown format (one of {', '.join(FORMATS)})")
        ok = allowed(graph, graph.ops[names[name]])
        if fmt not in ok:
            raise McuqpError(f"--format {name}={fmt}: the layer's weights allow {', '.join(ok)} only")
        out[names[name]] = fmt
    return out


def choose_formats(graph: Graph, *, overrides: Mapping[str, str] | None = None, excess_bytes: int = 0,
                   features: frozenset[str] = frozenset()) -> dict[int, str]:
    """Op index -> format for every layer with weights, for a CPU with `features`.
    `excess_bytes`: by how much the model with each layer's fastest format exceeds the
    flash budget (0: it fits)."""
    fixed = check_overrides(graph, overrides or {})
    opts = {i: options(graph, op, features) for i, op in enumerate(graph.ops) if op_family(op) is not None}
    chosen = {i: fixed.get(i) or _fastest(o) for i, o in opts.items()}
    if excess_bytes <= 0:
        return chosen
    # moves to a smaller format: (instructions added per byte saved, op index, format)
    free = [i for i in opts if i not in fixed]
    saved = 0
    while saved < excess_bytes:
        moves = []
        for i in free:
            cur = opts[i][chosen[i]]
            for f, lf in opts[i].items():
                gain = cur.flash_bytes - lf.flash_bytes
                if gain > 0:
                    moves.append((max(lf.instructions - cur.instructions, 0.0) / gain, -gain, i, f))
        if not moves:
            break
        _, neg_gain, i, f = min(moves)
        chosen[i] = f
        saved -= neg_gain
    if saved < excess_bytes:  # does not fit anyway: the smallest model
        chosen.update({i: _smallest(opts[i]) for i in free})
    return chosen


def apply_formats(graph: Graph, formats: Mapping[int, str]) -> Graph:
    """A copy of `graph` whose layers carry their weight format in their attrs (tensors
    shared; the integer results are the same in every format)."""
    ops = [dataclasses.replace(op, attrs=dataclasses.replace(op.attrs, weight_format=formats[i]))
           if i in formats else op for i, op in enumerate(graph.ops)]
    return dataclasses.replace(graph, ops=ops)


def weight_format(op: Op) -> str:
    return getattr(op.attrs, "weight_format", DENSE)


def scratch_bytes(graph: Graph, op: Op) -> int:
    """Bytes of arena scratch the packed kernel of `op` needs (its *_get_buffer_size())."""
    fmt, fam = weight_format(op), op_family(op)
    if fmt == DENSE or fam is None:
        return 0
    return kernel_scratch_bytes(fam, fmt, tuple(weights(graph, op).shape))


def kernel_scratch_bytes(fam: str, fmt: str, w_shape: tuple[int, ...]) -> int:
    """What the `fam` ("fc" | "conv2d" | "depthwise") kernel of format `fmt` returns from its
    *_get_buffer_size() for weights of shape `w_shape` (0 for dense int8)."""
    if fmt == DENSE:
        return 0
    w = np.empty(w_shape, dtype=np.int8)
    k = int(w.size) if fam == "depthwise" else int(np.prod(w.shape[1:]))
    taps = 1 if fam == "fc" else int(w.shape[1] * w.shape[2])
    if fmt == "sparse":
        return {"fc": 2 * k, "conv2d": 4 * k, "depthwise": 6 * taps}[fam]
    if fmt == "xnor":
        return 4 * (-(-k // 32)) * (1 if fam == "fc" else 2)
    if fam == "depthwise":
        return -(-k // 4) * 4
    return (2 if fam == "fc" else 4) * (-(-k // 32)) * 32


def scratch_requests(graph: Graph) -> dict[int, int]:
    """Op index -> scratch bytes of every packed layer (for plan_memory)."""
    return {i: b for i, op in enumerate(graph.ops) if (b := scratch_bytes(graph, op)) > 0}


def summary(graph: Graph, features: frozenset[str] = frozenset()) -> dict[int, LayerFormat]:
    """Op index -> the chosen format's bytes and instructions of every layer with weights."""
    return {i: layer_format(graph, op, weight_format(op), features) for i, op in enumerate(graph.ops)
            if op_family(op) is not None}
