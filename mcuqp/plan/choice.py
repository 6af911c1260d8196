"""Which memory plan a model gets: the fastest, the smallest, or (default) the fastest that fits.

- "fastest": every depthwise and 1x1 conv on its out-of-place kernel (more RAM, faster).
- "smallest": those convs run over their dying input wherever that lowers the arena
  (see mcuqp.plan.memory); the in-place kernels are slower.
- "auto": the fastest plan when it fits the RAM budget, else the smallest. What "fits"
  means is the caller's: `compile` asks the linker (static RAM incl. the arena, plus the
  reserved stack, plus the measured stack bound), `plan` asks arena + reserved stack.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from mcuqp.errors import McuqpError
from mcuqp.ir import Graph
from mcuqp.plan.formats import scratch_requests
from mcuqp.plan.memory import MemoryPlan, plan_memory

PlanMode = Literal["auto", "fastest", "smallest"]
PlanKind = Literal["fastest", "smallest"]
PLAN_MODES: tuple[str, ...] = get_args(PlanMode)


def resolve_mode(plan: str, inplace: bool | None = None) -> PlanMode:
    """The plan mode asked for; `inplace` (the older flag) wins when given: True is
    "smallest", False "fastest"."""
    if inplace is not None:
        return "smallest" if inplace else "fastest"
    if plan not in PLAN_MODES:
        raise McuqpError(f"unknown plan {plan!r}: give one of {', '.join(PLAN_MODES)}")
    return plan  # type: ignore[return-value]


def plan_of_kind(graph: Graph, kind: PlanKind) -> MemoryPlan:
    """The plan of that kind, with the scratch the graph's packed layers ask for."""
    mode = "auto" if kind == "smallest" else "never"
    return plan_memory(graph, inplace_depthwise=mode, inplace_conv=mode, scratch=scratch_requests(graph))


def choose_plan(graph: Graph, mode: PlanMode,
                fits: Callable[[PlanKind, MemoryPlan], bool]) -> tuple[PlanKind, MemoryPlan]:
    """The plan for `mode` and its kind. "auto" takes the fastest plan when `fits` accepts
    it; otherwise the smallest, unless that saves no arena (then the fastest, which the
    budget check will refuse with the real figures)."""
    if mode != "auto":
        return mode, plan_of_kind(graph, mode)
    fastest = plan_of_kind(graph, "fastest")
    if fits("fastest", fastest):
        return "fastest", fastest
    smallest = plan_of_kind(graph, "smallest")
    if smallest.arena_bytes < fastest.arena_bytes:
        return "smallest", smallest
    return "fastest", fastest


def arena_and_stack_fit(ram_budget: int, stack_bytes: int) -> Callable[[PlanKind, MemoryPlan], bool]:
    """`fits` for a RAM budget without a link: the arena plus the reserved stack."""
    return lambda _kind, p: p.arena_bytes + stack_bytes <= ram_budget
