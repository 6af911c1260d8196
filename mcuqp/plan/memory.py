"""Static memory planner: one int8 arena, one byte offset per activation tensor.

Lifetimes are taken over a sequential execution order (a list of op indices): a
tensor lives from the step of its producer (graph inputs from step 0) through the
step of its last consumer (graph outputs through the last step). Tensors whose
lifetimes share a step never share bytes, except where sharing is exact (aliases). Each
op's module in mcuqp.ops declares its rule (`OpDef.alias`, `OpDef.inplace`); today:

- RESHAPE: the output is a view of its input (row-major data does not move), so
  both name the same bytes; nothing writes those bytes while either is live.
- ADD: the output may overwrite an input whose storage dies at the add; the kernel
  reads element i of both inputs before it writes element i.
- DEPTHWISE_CONV2D (depth multiplier 1, output shape == input shape, int8): the output
  may overwrite its input when the input's storage dies at the op. The in-place kernel
  (mcuqp_depthwise_conv2d_s8_inplace) saves each input channel to an h*w scratch buffer
  before writing that channel's outputs (output channel c reads input channel c only),
  so such an op declares h*w bytes of scratch, planned in the arena like any scratch.
  It is used only where it makes the arena smaller: the regular kernel is faster.
- CONV2D 1x1 (stride 1, dilation 1, no padding, out_c <= in_c, int8): the output may
  overwrite its dying input. The in-place kernel (mcuqp_conv2d_1x1_s8_inplace) copies
  pixel p's in_c input bytes to scratch before writing its out_c outputs at p*out_c, so it
  never reaches an unread pixel; the output is the prefix of the input's bytes (its
  storage group keeps the input's size). Such an op declares in_c bytes of scratch and,
  like the in-place depthwise, is used only where it makes the arena smaller.

A group of tensors sharing storage is a buffer; buffers are placed by several
strategies and the smallest arena wins. For graphs with branches the execution
order is searched too (exhaustively when there are few topological orders).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from mcuqp.errors import McuqpError
from mcuqp.ir import Graph
from mcuqp.ops import registry

InPlaceMode = Literal["auto", "always", "never"]
EXHAUSTIVE_ORDERS = 256  # plan every topological order when there are at most this many
LOCAL_SEARCH_PASSES = 8  # adjacent-swap passes over each heuristic order of a large graph


@dataclass
class StepInfo:
    """What is live while one op runs."""

    op_index: int  # index into graph.ops
    op: str
    kind: str
    live: list[str]  # tensors live at this step
    live_bytes: int  # their summed sizes, no aliasing (the lower-bound measure)
    storage_bytes: int  # distinct live storage: aliases once, sizes rounded to the alignment, plus scratch


@dataclass
class MemoryPlan:
    offsets: dict[str, int]  # every activation tensor -> byte offset in the arena
    arena_bytes: int
    lower_bound_bytes: int  # peak of StepInfo.live_bytes over `order`
    scratch_bytes: int  # largest scratch one op needs (scratch areas are planned in the arena)
    order: list[int]  # op execution order (indices into graph.ops)
    strategy: str  # the placement strategy that won
    aliases: dict[str, str]  # tensor -> the tensor whose storage it shares (the first of its group)
    steps: list[StepInfo]
    lifetimes: dict[str, tuple[int, int]] = field(default_factory=dict)  # first and last step, inclusive
    scratch: dict[int, int] = field(default_factory=dict)  # declared scratch: op index -> bytes
    scratch_offsets: dict[int, int] = field(default_factory=dict)  # op index -> offset of its scratch
    alignment: int = 4
    inplace_depthwise: list[int] = field(default_factory=list)  # depthwise ops (indices) writing over their input
    inplace_conv: list[int] = field(default_factory=list)  # 1x1 conv ops (indices) writing over their input

    @property
    def peak_storage_bytes(self) -> int:
        """The largest live storage at one step: no placement can use less arena."""
        return max((s.storage_bytes for s in self.steps), default=0)

    @property
    def peak_step(self) -> int | None:
        """The step (position in `order`) with the most live storage."""
        if not self.steps:
            return None
        return max(range(len(self.steps)), key=lambda i: self.steps[i].storage_bytes)


# --- graph facts that do not depend on the order ------------------------------------


@dataclass(frozen=True)
class _GraphInfo:
    graph: Graph
    tensors: tuple[str, ...]  # planned activations (produced or graph inputs)
    orphans: tuple[str, ...]  # activations no op and no graph input touches
    nbytes: dict[str, int]
    producer: dict[str, int]  # tensor -> op index
    consumers: dict[str, tuple[int, ...]]  # tensor -> distinct op indices reading it
    act_inputs: tuple[tuple[str, ...], ...]  # per op: activation inputs in operand order
    inputs: frozenset[str]
    outputs: frozenset[str]
    preds: tuple[frozenset[int], ...]  # per op: ops it must follow
    inplace_scratch: dict[int, int]  # depthwise or 1x1 conv op index -> scratch its in-place kernel needs

    @property
    def boundary(self) -> frozenset[str]:
        return self.inputs | self.outputs


def _graph_info(graph: Graph) -> _GraphInfo:
    try:
        graph.validate()
    except ValueError as e:
        raise McuqpError(f"cannot plan memory for an invalid graph: {e}") from e
    if not graph.inputs:
        raise McuqpError("cannot plan memory: the graph has no input tensor")
    acts = {t.name for t in graph.activations()}
    producer: dict[str, int] = {}
    act_inputs: list[tuple[str, ...]] = []
    consumers: dict[str, list[int]] = {}
    for i, op in enumerate(graph.ops):
        ins = tuple(n for n in op.inputs if n and n in acts)
        act_inputs.append(ins)
        for n in dict.fromkeys(ins):
            consumers.setdefault(n, []).append(i)
        for n in op.outputs:
            if n not in acts:
                raise McuqpError(f"op {op.name} writes {n!r}, which is a constant: outputs must be activations")
            if n in producer or n in graph.inputs:
                raise McuqpError(f"tensor {n!r} is written twice (op {op.name}): each tensor needs one producer")
            producer[n] = i
    for n in graph.inputs:
        if n not in acts:
            raise McuqpError(f"graph input {n!r} is a constant: graph inputs must be activations")
    planned = tuple(n for n in graph.tensors if n in acts and (n in producer or n in graph.inputs))
    orphans = tuple(n for n in graph.tensors if n in acts and n not in producer and n not in graph.inputs)
    preds = tuple(frozenset(producer[n] for n in ins if n in producer) for ins in act_inputs)
    inplace = {i: b for i, op in enumerate(graph.ops)
               if (rule := registry.get(op.kind).inplace) is not None and (b := rule.scratch(graph, op)) is not None}
    return _GraphInfo(
        graph=graph,
        tensors=planned,
        orphans=orphans,
        nbytes={n: graph.tensors[n].nbytes for n in acts},
        producer=producer,
        consumers={n: tuple(c) for n, c in consumers.items()},
        act_inputs=tuple(act_inputs),
        inputs=frozenset(graph.inputs),
        outputs=frozenset(graph.outputs),
        preds=preds,
        inplace_scratch=inplace,
    )


# --- lifetimes and aliasing for one order -------------------------------------------


@dataclass(frozen=True)
class _Buffer:
    key: str  # the group's first tensor, or "scratch:<op index>"
    size: int  # bytes rounded up to the alignment
    start: int
    end: int

    def overlaps(self, other: _Buffer) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass
class _Layout:
    order: list[int]
    lifetimes: dict[str, tuple[int, int]]
    root: dict[str, str]  # tensor -> first tensor of its storage group
    buffers: list[_Buffer]
    steps: list[StepInfo]
    lower_bound: int
    peak: int  # largest distinct live storage at one step
    scratch: dict[int, int]  # op index -> scratch bytes, in-place depthwise ops included
    inplace: frozenset[int]  # depthwise / 1x1 conv ops whose output joined their input's storage


def _round_up(n: int, a: int) -> int:
    return -(-n // a) * a


def _lifetimes(info: _GraphInfo, order: list[int]) -> dict[str, tuple[int, int]]:
    pos = {op: s for s, op in enumerate(order)}
    last = max(len(order) - 1, 0)
    out: dict[str, tuple[int, int]] = {}
    for t in info.tensors:
        start = 0 if t in info.inputs else pos[info.producer[t]]
        end = max((pos[c] for c in info.consumers.get(t, ())), default=start)
        if t in info.outputs:
            end = last
        out[t] = (start, max(start, end))
    return out


def _alias_groups(info: _GraphInfo, order: list[int], life: dict[str, tuple[int, int]],
                  inplace: frozenset[int]) -> dict[str, str]:
    """tensor -> first tensor of its storage group, joining exactly where sharing is exact
    (depthwise ops only when listed in `inplace`)."""
    root = {t: t for t in info.tensors}
    members = {t: [t] for t in info.tensors}
    ops = info.graph.ops

    def can_join(r: str, t: str, prefix: bool = False) -> bool:
        """prefix: t may be smaller than the group (a 1x1 conv writing out_c < in_c channels)."""
        group = members[r]
        if any(info.nbytes[m] != info.nbytes[t] and not (prefix and info.nbytes[t] < info.nbytes[m])
               for m in group):
            return False
        # graph input and output bytes are the caller's contract: never two in one buffer
        return sum(m in info.boundary for m in group) + (t in info.boundary) <= 1

    def join(r: str, t: str) -> None:
        members[r].append(t)
        del members[t]
        root[t] = r

    def dies_at(r: str, step: int) -> bool:
        """No member of the group is read after `step` (members of a reshape chain may have died earlier)."""
        return all(life[m][1] <= step and m not in info.outputs for m in members[r])

    for step, oi in enumerate(order):
        op, ins = ops[oi], info.act_inputs[oi]
        if len(op.outputs) != 1:
            continue
        y = op.outputs[0]
        d = registry.get(op.kind)
        if d.alias == "view" and len(ins) == 1:
            r = root[ins[0]]
            if info.graph.tensors[y].dtype == info.graph.tensors[ins[0]].dtype and can_join(r, y):
                join(r, y)
        elif d.alias == "elementwise" and len(ins) == 2:
            for x in dict.fromkeys(ins):
                r = root[x]
                if dies_at(r, step) and can_join(r, y):
                    join(r, y)
                    break
        elif oi in inplace and len(ins) == 1:
            r = root[ins[0]]
            if dies_at(r, step) and can_join(r, y, prefix=d.inplace.prefix):
                join(r, y)
    return root


def _effective_scratch(info: _GraphInfo, root: dict[str, str], allowed: frozenset[int],
                       scratch: Mapping[int, int]) -> tuple[dict[int, int], frozenset[int]]:
    """Scratch per op once the in-place depthwise ops are known (those whose output joined
    their input): each needs at least h*w bytes (one area per op: the larger request)."""
    ops = info.graph.ops
    done = frozenset(oi for oi in allowed if root[ops[oi].outputs[0]] == root[info.act_inputs[oi][0]])
    out = dict(scratch)
    for oi in done:
        out[oi] = max(out.get(oi, 0), info.inplace_scratch[oi])
    return out, done


def _analyze(info: _GraphInfo, order: list[int], alignment: int, requested: Mapping[int, int],
             allowed: frozenset[int]) -> _Layout:
    life = _lifetimes(info, order)
    root = _alias_groups(info, order, life, allowed)
    scratch, inplace = _effective_scratch(info, root, allowed, requested)
    groups: dict[str, list[str]] = {}
    for t in info.tensors:
        groups.setdefault(root[t], []).append(t)
    buffers = [
        _Buffer(
            key=r,
            size=_round_up(max(info.nbytes[m] for m in ms), alignment),
            start=min(life[m][0] for m in ms),
            end=max(life[m][1] for m in ms),
        )
        for r, ms in groups.items()
    ]
    pos = {op: s for s, op in enumerate(order)}
    buffers += [
        _Buffer(f"scratch:{oi}", _round_up(b, alignment), pos[oi], pos[oi]) for oi, b in scratch.items() if b > 0
    ]
    live: list[list[str]] = [[] for _ in order]
    storage = [0] * len(order)
    for t in info.tensors:
        for s in range(life[t][0], min(life[t][1] + 1, len(order))):
            live[s].append(t)
    for b in buffers:
        for s in range(b.start, min(b.end + 1, len(order))):
            storage[s] += b.size
    steps = [
        StepInfo(
            op_index=oi,
            op=info.graph.ops[oi].name,
            kind=info.graph.ops[oi].kind.value,
            live=live[s],
            live_bytes=sum(info.nbytes[t] for t in live[s]),
            storage_bytes=storage[s],
        )
        for s, oi in enumerate(order)
    ]
    if steps:
        lower = max(s.live_bytes for s in steps)
        peak = max(s.storage_bytes for s in steps)
    else:  # no ops: inputs (and outputs) are all there is
        lower = sum(info.nbytes[t] for t in info.tensors)
        peak = sum(b.size for b in buffers)
    return _Layout(order, life, root, buffers, steps, lower, peak, scratch, inplace)


# --- placement strategies: buffers -> offsets ----------------------------------------

Placement = dict[str, int]  # buffer key -> offset
Placed = list[tuple[_Buffer, int]]
Strategy = Callable[[list[_Buffer], int], Placement]  # (buffers, peak live storage) -> placement


def _taken(b: _Buffer, placed: Placed) -> list[tuple[int, int]]:
    """Byte ranges of placed buffers whose lifetimes meet b's, sorted."""
    return sorted((off, off + p.size) for p, off in placed if p.size and p.overlaps(b))


def _gaps(taken: list[tuple[int, int]]) -> list[tuple[int, int | None]]:
    """Free ranges between taken ranges; the last is unbounded (hi None)."""
    gaps: list[tuple[int, int | None]] = []
    cursor = 0
    for lo, hi in taken:
        if lo > cursor:
            gaps.append((cursor, lo))
        cursor = max(cursor, hi)
    gaps.append((cursor, None))
    return gaps


def _fits(gap: tuple[int, int | None], size: int) -> bool:
    return gap[1] is None or gap[1] - gap[0] >= size


def _first_fit(b: _Buffer, placed: Placed) -> int:
    return next(lo for lo, hi in _gaps(_taken(b, placed)) if _fits((lo, hi), b.size))


def _best_fit(b: _Buffer, placed: Placed) -> int:
    gaps = _gaps(_taken(b, placed))
    bounded = [(hi - lo, lo) for lo, hi in gaps if hi is not None and hi - lo >= b.size]
    return min(bounded)[1] if bounded else gaps[-1][0]


def _greedy(key: Callable[[_Buffer], tuple], place: Callable[[_Buffer, Placed], int]) -> Strategy:
    """Place buffers one by one in `key` order, each where `place` puts it."""

    def strategy(buffers: list[_Buffer], cap: int) -> Placement:
        placed: Placed = []
        for b in sorted(buffers, key=key):
            placed.append((b, 0 if b.size == 0 else place(b, placed)))
        return {b.key: off for b, off in placed}

    return strategy


def _largest_free(ranges: list[tuple[int, int]], cap: int) -> int:
    best, cursor = 0, 0
    for lo, hi in sorted(ranges):
        best = max(best, lo - cursor)
        cursor = max(cursor, hi)
    return max(best, cap - cursor)


def _two_sided(buffers: list[_Buffer], cap: int) -> Placement:
    """In order of first use, put each buffer at the bottom or the top of a free gap
    under `cap` (the peak live storage), whichever leaves the largest free block for
    the buffers still live afterwards. Alternating sides makes chains exactly optimal."""
    placed: Placed = []
    for b in sorted(buffers, key=lambda b: (b.start, -b.size, b.key)):
        if b.size == 0:
            placed.append((b, 0))
            continue
        gaps = [g for g in _gaps(_taken(b, placed)) if _fits(g, b.size)]
        candidates = set()
        for lo, hi in gaps:
            candidates.add(lo)
            top = min(cap, hi if hi is not None else cap) - b.size
            if top >= lo:
                candidates.add(top)
        # buffers live after b's first step (all of them meet b: placed ones start no later)
        persistent = [(off, off + p.size) for p, off in placed if p.size and p.end > b.start and p.overlaps(b)]

        def score(off: int) -> tuple[int, int, int]:
            rest = persistent + ([(off, off + b.size)] if b.end > b.start else [])
            return (max(0, off + b.size - cap), -_largest_free(rest, cap), off)

        placed.append((b, min(candidates, key=score)))
    return {b.key: off for b, off in placed}


STRATEGIES: dict[str, Strategy] = {
    "greedy_size_first_fit": _greedy(lambda b: (-b.size, b.start, b.key), _first_fit),
    "greedy_size_best_fit": _greedy(lambda b: (-b.size, b.start, b.key), _best_fit),
    "lifetime_best_fit": _greedy(lambda b: (b.start, -b.size, b.key), _best_fit),
    "two_sided": _two_sided,
}


def _arena(buffers: list[_Buffer], placement: Placement) -> int:
    return max((placement[b.key] + b.size for b in buffers), default=0)


def _place(layout: _Layout) -> tuple[str, Placement, int]:
    best: tuple[str, Placement, int] | None = None
    for name, strategy in STRATEGIES.items():
        placement = strategy(layout.buffers, layout.peak)
        arena = _arena(layout.buffers, placement)
        if best is None or arena < best[2]:
            best = (name, placement, arena)
        if arena == layout.peak:
            break  # no placement can do better
    assert best is not None
    return best


# --- execution order -----------------------------------------------------------------


def _check_order(info: _GraphInfo, order: list[int]) -> list[int]:
    n = len(info.graph.ops)
    order = [int(i) for i in order]
    if sorted(order) != list(range(n)):
        raise McuqpError(f"execution order must list each of the {n} op indices exactly once, got {order}")
    done: set[int] = set()
    for oi in order:
        missing = info.preds[oi] - done
        if missing:
            before = info.graph.ops[min(missing)].name
            raise McuqpError(f"execution order runs op {info.graph.ops[oi].name} before its producer {before}")
        done.add(oi)
    return order


def _topological_orders(info: _GraphInfo, limit: int) -> list[list[int]] | None:
    """All topological orders, or None when there are more than `limit`."""
    n = len(info.preds)
    succs: list[list[int]] = [[] for _ in range(n)]
    indeg = [len(p) for p in info.preds]
    for i, ps in enumerate(info.preds):
        for p in ps:
            succs[p].append(i)
    orders: list[list[int]] = []
    prefix: list[int] = []

    def visit(ready: list[int]) -> bool:
        if len(prefix) == n:
            orders.append(list(prefix))
            return len(orders) <= limit
        for k, oi in enumerate(ready):
            nxt = ready[:k] + ready[k + 1:]
            for s in succs[oi]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    nxt.append(s)
            prefix.append(oi)
            ok = visit(sorted(nxt))
            prefix.pop()
            for s in succs[oi]:
                indeg[s] += 1
            if not ok:
                return False
        return True

    if not visit([i for i in range(n) if indeg[i] == 0]):
        return None
    return orders


def _greedy_order(info: _GraphInfo, prefer_step: bool) -> list[int]:
    """List scheduling that keeps live bytes low: among ready ops run the one that
    adds the least memory (approximate: no aliasing)."""
    n = len(info.preds)
    remaining = {t: len(c) for t, c in info.consumers.items()}
    live = sum(info.nbytes[t] for t in info.inputs)
    done: set[int] = set()
    order: list[int] = []
    while len(order) < n:
        best: tuple | None = None
        for oi in range(n):
            if oi in done or not info.preds[oi] <= done:
                continue
            produced = sum(info.nbytes[t] for t in info.graph.ops[oi].outputs)
            freed = sum(
                info.nbytes[t] for t in dict.fromkeys(info.act_inputs[oi])
                if remaining.get(t) == 1 and t not in info.outputs
            )
            delta, step = produced - freed, live + produced
            key = (step, delta, oi) if prefer_step else (delta, step, oi)
            if best is None or key < best[0]:
                best = (key, oi, delta)
        assert best is not None
        _, oi, delta = best
        for t in dict.fromkeys(info.act_inputs[oi]):
            remaining[t] -= 1
        live += delta
        done.add(oi)
        order.append(oi)
    return order


def _objective(layout: _Layout) -> tuple[int, int]:
    return (layout.peak, sum(s.storage_bytes for s in layout.steps))


def _local_search(info: _GraphInfo, order: list[int], evaluate: Callable[[list[int]], _Layout]) -> list[int]:
    """Swap adjacent independent ops while that lowers (peak, summed) live storage."""
    best = _objective(evaluate(order))
    for _ in range(LOCAL_SEARCH_PASSES):
        improved = False
        for i in range(len(order) - 1):
            a, b = order[i], order[i + 1]
            if a in info.preds[b]:
                continue
            trial = order[:i] + [b, a] + order[i + 2:]
            obj = _objective(evaluate(trial))
            if obj < best:
                order, best, improved = trial, obj, True
        if not improved:
            break
    return order


def _candidate_orders(info: _GraphInfo, evaluate: Callable[[list[int]], _Layout]) -> list[list[int]]:
    listed = list(range(len(info.graph.ops)))
    every = _topological_orders(info, EXHAUSTIVE_ORDERS)
    if every is not None:
        return every
    seeds = [listed, _greedy_order(info, True), _greedy_order(info, False)]
    found = seeds + [_local_search(info, s, evaluate) for s in seeds]
    return list({tuple(o): o for o in found}.values())


# --- public API ------------------------------------------------------------------------


def _finish(info: _GraphInfo, layout: _Layout, strategy: str, placement: Placement, arena: int,
            alignment: int) -> MemoryPlan:
    offsets = {t: placement[layout.root[t]] for t in info.tensors}
    offsets.update({t: 0 for t in info.orphans})  # nothing reads or writes them
    scratch = layout.scratch
    return MemoryPlan(
        offsets=offsets,
        arena_bytes=arena,
        lower_bound_bytes=layout.lower_bound,
        scratch_bytes=max(scratch.values(), default=0),
        order=list(layout.order),
        strategy=strategy,
        aliases={t: r for t, r in layout.root.items() if t != r},
        steps=layout.steps,
        lifetimes=dict(layout.lifetimes),
        scratch=dict(scratch),
        scratch_offsets={oi: placement[f"scratch:{oi}"] for oi, b in scratch.items() if b > 0},
        alignment=alignment,
        inplace_depthwise=sorted(oi for oi in layout.inplace if _plan_field(info, oi) == "inplace_depthwise"),
        inplace_conv=sorted(oi for oi in layout.inplace if _plan_field(info, oi) == "inplace_conv"),
    )


def _search(info: _GraphInfo, order: list[int] | None, alignment: int, need: dict[int, int],
            allowed: frozenset[int]) -> MemoryPlan:
    """The smallest arena over execution orders (or for `order`), with the depthwise ops in
    `allowed` run in place wherever their input dies at them."""
    cache: dict[tuple[int, ...], _Layout] = {}

    def evaluate(o: list[int]) -> _Layout:
        key = tuple(o)
        if key not in cache:
            cache[key] = _analyze(info, o, alignment, need, allowed)
        return cache[key]

    def plan_for(o: list[int]) -> MemoryPlan:
        layout = evaluate(o)
        return _finish(info, layout, *_place(layout), alignment)

    if order is not None:
        return plan_for(order)

    best = plan_for(list(range(len(info.graph.ops))))
    layouts = sorted((evaluate(o) for o in _candidate_orders(info, evaluate)), key=_objective)
    for layout in layouts:
        if layout.peak >= best.arena_bytes:
            break  # the arena is at least the peak: no later order can win
        plan = plan_for(layout.order)
        if plan.arena_bytes < best.arena_bytes:
            best = plan
    return best


def _search_inplace(info: _GraphInfo, order: list[int] | None, alignment: int, need: dict[int, int],
                    forced: frozenset[int], optional: frozenset[int]) -> MemoryPlan:
    """Plan with the `forced` in-place ops, without and with the `optional` ones; keep an
    optional op in place only where that lowers the arena. Ties go to the regular (faster)
    kernel: starting from every candidate in place, each optional in-place op is dropped
    again when the arena does not grow without it."""
    best = _search(info, order, alignment, need, forced)
    if not optional:
        return best
    trial = _search(info, order, alignment, need, forced | optional)
    if trial.arena_bytes >= best.arena_bytes:
        return best
    for oi in sorted(plan_in_place(trial) & optional):
        if oi not in plan_in_place(trial):
            continue
        fewer = _search(info, order, alignment, need, frozenset(plan_in_place(trial)) - {oi})
        if fewer.arena_bytes <= trial.arena_bytes:
            trial = fewer
    return trial


def _plan_field(info: _GraphInfo, oi: int) -> str | None:
    """The MemoryPlan list recording op `oi` when it runs in place (None: it cannot)."""
    rule = registry.get(info.graph.ops[oi].kind).inplace
    return rule.plan_field if rule is not None else None


def plan_in_place(plan: MemoryPlan) -> frozenset[int]:
    """Indices of the ops the plan runs over their own input (their in-place kernels)."""
    return frozenset(plan.inplace_depthwise) | frozenset(plan.inplace_conv)



def plan_memory(
    graph: Graph,
    *,
    order: list[int] | None = None,
    alignment: int = 4,
    scratch: Mapping[int, int] | None = None,
    inplace_depthwise: InPlaceMode = "auto",
    inplace_conv: InPlaceMode = "auto",
) -> MemoryPlan:
    """Place every activation tensor of `graph` in one arena.

    order: the op execution order to use; None searches topological orders for the
        smallest arena (the graph's own order wins ties).
    alignment: every offset is a multiple of it (and so is the arena size).
    scratch: op index -> bytes of scratch the op's kernel needs while it runs (an
        in-place depthwise op gets at least its h*w bytes in the same area).
    inplace_depthwise: "auto" runs a depthwise conv in place (output over its dying
        input, h*w bytes of scratch) only where that lowers the arena; "always" wherever
        it is exact; "never" not at all. `MemoryPlan.inplace_depthwise` lists them.
    inplace_conv: the same for 1x1 convs (output over the dying input, in_c bytes of
        scratch; out_c <= in_c). `MemoryPlan.inplace_conv` lists them.
    """
    if not isinstance(alignment, int) or alignment < 1:
        raise McuqpError(f"alignment must be a positive integer, got {alignment!r}")
    if inplace_depthwise not in ("auto", "always", "never"):
        raise McuqpError(f"inplace_depthwise must be 'auto', 'always' or 'never', got {inplace_depthwise!r}")
    if inplace_conv not in ("auto", "always", "never"):
        raise McuqpError(f"inplace_conv must be 'auto', 'always' or 'never', got {inplace_conv!r}")
    info = _graph_info(graph)
    need = {int(k): int(v) for k, v in (scratch or {}).items()}
    for oi, b in need.items():
        if not 0 <= oi < len(graph.ops) or b < 0:
            raise McuqpError(f"scratch request {oi} -> {b}: needs an op index below {len(graph.ops)} and bytes >= 0")
    fixed = None if order is None else _check_order(info, order)
    forced: set[int] = set()
    optional: set[int] = set()
    modes = {"inplace_depthwise": inplace_depthwise, "inplace_conv": inplace_conv}
    for oi in info.inplace_scratch:
        mode = modes[_plan_field(info, oi)]
        if mode == "always":
            forced.add(oi)
        elif mode == "auto":
            optional.add(oi)
    return _search_inplace(info, fixed, alignment, need, frozenset(forced), frozenset(optional))


def validate_plan(graph: Graph, plan: MemoryPlan) -> None:
    """Raise McuqpError unless `plan` is a correct placement for `graph`.

    Checks: the order is topological; every activation has an aligned offset inside
    the arena; tensors live at the same step never share bytes unless they are
    declared aliases whose sharing is exact (a reshape view, an add writing over storage
    that dies at that add, a depthwise op listed in `inplace_depthwise` that the in-place
    kernel supports, writing over its input's dying storage with its h*w bytes of scratch,
    or likewise a 1x1 conv listed in `inplace_conv` with its in_c bytes, its output at most
    its input's size, at the input's offset);
    scratch areas overlap nothing live at their step.
    """
    info = _graph_info(graph)
    _check_order(info, plan.order)
    life = _lifetimes(info, plan.order)
    a = plan.alignment
    for t in info.tensors + info.orphans:
        if t not in plan.offsets:
            raise McuqpError(f"plan has no offset for tensor {t!r}")
    for t in info.tensors:
        off = plan.offsets[t]
        if off < 0 or off % a or off + info.nbytes[t] > plan.arena_bytes:
            raise McuqpError(f"tensor {t!r} at offset {off} ({info.nbytes[t]} B) is misaligned or outside the "
                             f"{plan.arena_bytes} B arena")
    root = {t: t for t in info.tensors}
    for t, r in plan.aliases.items():
        if t not in root or r not in root:
            raise McuqpError(f"alias {t!r} -> {r!r} names a tensor that is not a planned activation")
        root[t] = plan.aliases.get(r, r)
    groups: dict[str, list[str]] = {}
    for t in info.tensors:
        groups.setdefault(root[t], []).append(t)
    for r, ms in groups.items():
        _check_group(info, plan, life, sorted(ms, key=lambda m: (life[m][0], m in info.producer)))
    _check_inplace_listed(info, plan, root)

    def meet(x: tuple[int, int], y: tuple[int, int]) -> bool:
        return x[0] <= y[1] and y[0] <= x[1]

    ranges = [(t, plan.offsets[t], plan.offsets[t] + info.nbytes[t], life[t]) for t in info.tensors if info.nbytes[t]]
    pos = {oi: s for s, oi in enumerate(plan.order)}
    for oi, off in plan.scratch_offsets.items():
        size = plan.scratch.get(oi, 0)
        if off < 0 or off % a or off + size > plan.arena_bytes:
            raise McuqpError(f"scratch of op {graph.ops[oi].name} at {off} ({size} B) is misaligned or outside the arena")
        ranges.append((f"scratch of {graph.ops[oi].name}", off, off + size, (pos[oi], pos[oi])))
    for oi, size in plan.scratch.items():
        if size > 0 and oi not in plan.scratch_offsets:
            raise McuqpError(f"op {graph.ops[oi].name} declares {size} B of scratch but the plan places none")
    for i, (t1, lo1, hi1, l1) in enumerate(ranges):
        for t2, lo2, hi2, l2 in ranges[i + 1:]:
            if lo1 < hi2 and lo2 < hi1 and meet(l1, l2) and not (t1 in root and t2 in root and root[t1] == root[t2]):
                raise McuqpError(f"{t1} [{lo1}, {hi1}) and {t2} [{lo2}, {hi2}) overlap while both are live")


def _check_group(info: _GraphInfo, plan: MemoryPlan, life: dict[str, tuple[int, int]], members: list[str]) -> None:
    """Members of one storage group (first use first) must share storage exactly."""
    first = members[0]
    if sum(m in info.boundary for m in members) > 1:
        raise McuqpError(f"graph inputs/outputs {[m for m in members if m in info.boundary]} share storage")
    pos = {oi: s for s, oi in enumerate(plan.order)}
    for m in members[1:]:
        if m not in info.producer:
            raise McuqpError(f"graph input {m!r} cannot alias {first!r}")
        op = info.graph.ops[info.producer[m]]
        ins = [x for x in info.act_inputs[info.producer[m]] if x in members]
        # only a 1x1 conv (out_c < in_c, checked below) writes a smaller prefix of the group's bytes
        same = all(info.nbytes[x] == info.nbytes[m] for x in ins) and info.nbytes[m] == info.nbytes[first]
        d = registry.get(op.kind)
        prefix = d.inplace is not None and d.inplace.prefix and all(info.nbytes[x] >= info.nbytes[m] for x in ins)
        if plan.offsets[m] != plan.offsets[first] or not (same or prefix):
            raise McuqpError(f"alias {m!r} of {first!r} differs in offset or size")
        step = pos[info.producer[m]]
        ins = [x for x in info.act_inputs[info.producer[m]] if x in members]
        if d.alias == "view" and ins:
            continue  # a view: writes nothing
        if d.inplace is not None and ins:
            _check_inplace(info, plan, info.producer[m])
        elif d.alias != "elementwise" or not ins:
            raise McuqpError(f"{op.kind.value} {op.name} cannot write {m!r} over {first!r}: only views (reshape), "
                             f"elementwise ops (add) and ops with an in-place kernel alias")
        # it overwrites the group: every earlier member must be dead after this op
        alive = [x for x in members
                 if x != m and life[x][0] <= step and (life[x][1] > step or x in info.outputs)]
        if alive:
            raise McuqpError(f"in-place {op.name} overwrites {alive} while they are still live")


def _check_inplace(info: _GraphInfo, plan: MemoryPlan, oi: int) -> None:
    """An op writing over its input: its in-place kernel must support it, the plan must say
    so (codegen emits that kernel) and give it the kernel's scratch."""
    op = info.graph.ops[oi]
    need = info.inplace_scratch.get(oi)
    field_name = _plan_field(info, oi)
    if need is None:
        raise McuqpError(f"{op.kind} {op.name} cannot write over its input: its in-place kernel does not run it "
                         f"(see mcuqp.ops.{op.kind} for the shapes it takes)")
    if oi not in getattr(plan, field_name):
        raise McuqpError(f"{op.kind} {op.name} writes over its input but is not listed in {field_name}")
    if plan.scratch.get(oi, 0) < need:
        raise McuqpError(f"in-place {op.kind} {op.name} needs {need} B of scratch, the plan gives "
                         f"{plan.scratch.get(oi, 0)} B")


def _check_inplace_listed(info: _GraphInfo, plan: MemoryPlan, root: dict[str, str]) -> None:
    """Every op listed in inplace_depthwise / inplace_conv really shares storage with its input."""
    listed = [(oi, "inplace_depthwise") for oi in plan.inplace_depthwise]
    listed += [(oi, "inplace_conv") for oi in plan.inplace_conv]
    for oi, field_name in listed:
        if not 0 <= oi < len(info.graph.ops) or oi not in info.inplace_scratch or _plan_field(info, oi) != field_name:
            raise McuqpError(f"op {oi} is listed in {field_name} but its in-place kernel cannot run it")
        op = info.graph.ops[oi]
        x, y = info.act_inputs[oi][0], op.outputs[0]
        if root[x] != root[y]:
            raise McuqpError(f"in-place {op.kind} {op.name}: output {y!r} does not share its "
                             f"input {x!r}'s storage")

