"""Human- and machine-readable views of a MemoryPlan: a per-layer table, a JSON-ready
dict and a plot of the arena (offset against execution step)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mcuqp.ir import Graph
from mcuqp.plan import formats
from mcuqp.plan.memory import MemoryPlan


def short_name(name: str, width: int = 40) -> str:
    """A display name: converters join fused tensor names with ';', keep the first,
    and of its path the last two parts, cut to `width` characters."""
    parts = name.split(";")[0].split("/")
    short = "/".join(parts[-2:])
    return short if len(short) <= width else "…" + short[-(width - 1):]


def _peak_steps(plan: MemoryPlan) -> set[int]:
    peak = plan.peak_storage_bytes
    return {i for i, s in enumerate(plan.steps) if s.storage_bytes == peak and peak > 0}


def plan_table(graph: Graph, plan: MemoryPlan) -> str:
    """One row per executed op: live tensors, their bytes (no aliasing), the distinct
    storage they occupy (aliases once, plus scratch), and a marker on the peak. Ops run in
    place over their input (depthwise, 1x1 conv) are marked "in place"."""
    peaks = _peak_steps(plan)
    name_w = max([len("op"), *(len(short_name(s.op)) for s in plan.steps)])
    kind_w = max([len("kind"), *(len(s.kind) for s in plan.steps)])
    lines = [f"{'step':>4}  {'op':<{name_w}}  {'kind':<{kind_w}}  {'live B':>9}  {'storage B':>9}  live tensors"]
    for i, s in enumerate(plan.steps):
        in_place = s.op_index in plan.inplace_depthwise or s.op_index in plan.inplace_conv
        mark = ("  (in place)" if in_place else "") + ("  <- peak" if i in peaks else "")
        live = ", ".join(
            f"{short_name(t)}={short_name(plan.aliases[t])}" if t in plan.aliases else short_name(t) for t in s.live
        )
        lines.append(f"{i:>4}  {short_name(s.op):<{name_w}}  {s.kind:<{kind_w}}  {s.live_bytes:>9,}  {s.storage_bytes:>9,}  {live}{mark}")
    lines.append(
        f"arena {plan.arena_bytes:,} B (strategy {plan.strategy}, alignment {plan.alignment}); "
        f"live-activation lower bound {plan.lower_bound_bytes:,} B; peak live storage {plan.peak_storage_bytes:,} B; "
        f"scratch {plan.scratch_bytes:,} B"
        + (f"; {len(plan.inplace_depthwise)} depthwise op(s) in place" if plan.inplace_depthwise else "")
        + (f"; {len(plan.inplace_conv)} 1x1 conv op(s) in place" if plan.inplace_conv else "")
    )
    return "\n".join(lines)


def weights_table(graph: Graph, plan: MemoryPlan) -> list[str]:
    """Per layer with weights (in execution order): its weight format and the flash bytes
    of its filter (values and sparse indices)."""
    chosen = formats.summary(graph)
    rows = [(short_name(graph.ops[oi].name), chosen[oi]) for oi in plan.order if oi in chosen]
    if not rows:
        return []
    name_w = max(len("layer"), *(len(n) for n, _ in rows))
    out = [f"{'layer':<{name_w}}  {'format':<7}  {'weight B':>9}  {'index B':>8}"]
    out += [f"{n:<{name_w}}  {f.format:<7}  {f.weight_bytes:>9,}  {f.index_bytes:>8,}" for n, f in rows]
    total_w, total_i = sum(f.weight_bytes for _, f in rows), sum(f.index_bytes for _, f in rows)
    out.append(f"weights {total_w:,} B + indices {total_i:,} B in flash")
    return out


def plan_json(graph: Graph, plan: MemoryPlan) -> dict[str, Any]:
    """The plan as plain JSON types (ints, strings, lists, dicts)."""
    peaks = _peak_steps(plan)
    pos = {oi: i for i, oi in enumerate(plan.order)}
    tensors = [
        {
            "name": t,
            "offset": off,
            "bytes": graph.tensors[t].nbytes,
            "first_step": plan.lifetimes[t][0] if t in plan.lifetimes else None,
            "last_step": plan.lifetimes[t][1] if t in plan.lifetimes else None,
            "alias_of": plan.aliases.get(t),
        }
        for t, off in plan.offsets.items()
    ]
    chosen = formats.summary(graph)
    layers = [
        {
            "step": i,
            "op_index": s.op_index,
            "op": s.op,
            "kind": s.kind,
            "live": list(s.live),
            "live_bytes": s.live_bytes,
            "storage_bytes": s.storage_bytes,
            "scratch_bytes": plan.scratch.get(s.op_index, 0),
            "in_place": s.op_index in plan.inplace_depthwise or s.op_index in plan.inplace_conv,
            "peak": i in peaks,
            "format": chosen[s.op_index].format if s.op_index in chosen else None,
            "weight_bytes": chosen[s.op_index].weight_bytes if s.op_index in chosen else 0,
            "index_bytes": chosen[s.op_index].index_bytes if s.op_index in chosen else 0,
        }
        for i, s in enumerate(plan.steps)
    ]
    return {
        "model": graph.name,
        "arena_bytes": plan.arena_bytes,
        "scratch_bytes": plan.scratch_bytes,
        "lower_bound_bytes": plan.lower_bound_bytes,
        "peak_storage_bytes": plan.peak_storage_bytes,
        "strategy": plan.strategy,
        "alignment": plan.alignment,
        "order": [graph.ops[oi].name for oi in plan.order],
        "inplace_depthwise": [graph.ops[oi].name for oi in plan.inplace_depthwise],
        "inplace_conv": [graph.ops[oi].name for oi in plan.inplace_conv],
        "tensors": tensors,
        "scratch": [
            {"op": graph.ops[oi].name, "step": pos[oi], "offset": off, "bytes": plan.scratch[oi]}
            for oi, off in plan.scratch_offsets.items()
        ],
        "layers": layers,
    }


def plot_plan(graph: Graph, plan: MemoryPlan, path: str | Path) -> Path:
    """Save a PNG of the arena: x is the execution step, y the byte offset, one box per
    tensor over its lifetime (aliases share their group's colour), scratch hatched."""
    # the object API with an Agg canvas: no pyplot state, no GUI backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    n = max(len(plan.steps), 1)
    fig = Figure(figsize=(min(4 + 0.45 * n, 24), 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    palette = [f"C{i}" for i in range(10)]
    roots = list(dict.fromkeys(plan.aliases.get(t, t) for t in plan.lifetimes))
    colour = {r: palette[i % len(palette)] for i, r in enumerate(roots)}
    top = max(plan.arena_bytes, 1)
    for t, (first, last) in plan.lifetimes.items():
        size = graph.tensors[t].nbytes
        if size == 0:
            continue
        off = plan.offsets[t]
        root = plan.aliases.get(t, t)
        ax.add_patch(Rectangle((first - 0.45, off), last - first + 0.9, size, facecolor=colour[root],
                               edgecolor="black", linewidth=0.6, alpha=0.55 if t != root else 0.75))
        if size < 0.03 * top:
            continue  # too thin to label legibly
        label = f"{short_name(t, 24)} ({size} B)" + (f"\n= {short_name(root, 24)}" if t != root else "")
        ax.text((first + last) / 2, off + size / 2, label, ha="center", va="center", fontsize=7, clip_on=True)
    pos = {oi: i for i, oi in enumerate(plan.order)}
    for oi, off in plan.scratch_offsets.items():
        step, size = pos[oi], plan.scratch[oi]
        ax.add_patch(Rectangle((step - 0.45, off), 0.9, size, facecolor="white", edgecolor="grey", hatch="//"))
        ax.text(step, off + size / 2, f"scratch ({size} B)", ha="center", va="center", fontsize=7, clip_on=True)
    ax.axhline(plan.arena_bytes, color="red", linestyle="--", linewidth=1, label=f"arena {plan.arena_bytes:,} B")
    ax.axhline(plan.lower_bound_bytes, color="grey", linestyle=":", linewidth=1,
               label=f"live lower bound {plan.lower_bound_bytes:,} B")
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, max(top, plan.lower_bound_bytes) * 1.05)
    ax.set_xticks(range(len(plan.steps)))
    ax.set_xticklabels([short_name(s.op, 24) for s in plan.steps], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("execution step")
    ax.set_ylabel("arena offset (bytes)")
    ax.set_title(f"{graph.name}: arena {plan.arena_bytes:,} B, strategy {plan.strategy}")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out
