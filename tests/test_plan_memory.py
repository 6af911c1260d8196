"""Static memory planner: placement correctness on random DAGs (checked by an
independent overlap check and by simulating execution on a byte arena, in-place
depthwise ops run channel by channel and in-place 1x1 convs pixel by pixel through their
planned scratch), optimality on chains, order search, aliasing, in-place depthwise and
pointwise convolution, scratch, reports."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from mcuqp.errors import McuqpError
from mcuqp.ir import DType, Graph, Op, OpKind, Padding, Tensor
from mcuqp.ops.add import AddAttrs
from mcuqp.ops.conv2d import ConvAttrs, inplace_conv_scratch
from mcuqp.ops.depthwise_conv2d import inplace_depthwise_scratch
from mcuqp.ops.fully_connected import FullyConnectedAttrs
from mcuqp.ops.reshape import ReshapeAttrs
from mcuqp.plan.memory import plan_memory, validate_plan
from mcuqp.plan.report import plan_json, plan_table, plot_plan
import prereq



# --- graph building -----------------------------------------------------------------------


class Builder:
    def __init__(self, name: str = "g"):
        self.g = Graph(name=name)

    def act(self, name: str, shape: tuple[int, ...]) -> str:
        self.g.add_tensor(Tensor(name, shape, DType.INT8))
        return name

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        self.g.inputs.append(self.act(name, shape))
        return name

    def fc(self, name: str, x: str, n_out: int) -> str:
        n_in = self.g.tensors[x].size
        w = self.g.add_tensor(Tensor(f"{name}.w", (n_out, n_in), DType.INT8, data=np.zeros((n_out, n_in), np.int8)))
        y = self.act(name, (1, n_out))
        self.g.ops.append(Op(OpKind.FULLY_CONNECTED, name, [x, w.name], [y], FullyConnectedAttrs()))
        return y

    def conv(self, name: str, x: str, cout: int) -> str:
        _, h, w_, cin = self.g.tensors[x].shape
        w = self.g.add_tensor(Tensor(f"{name}.w", (cout, 1, 1, cin), DType.INT8, data=np.zeros((cout, 1, 1, cin), np.int8)))
        b = self.g.add_tensor(Tensor(f"{name}.b", (cout,), DType.INT32, data=np.zeros(cout, np.int32)))
        y = self.act(name, (1, h, w_, cout))
        self.g.ops.append(Op(OpKind.CONV2D, name, [x, w.name, b.name], [y], ConvAttrs((1, 1), Padding())))
        return y

    def dw(self, name: str, x: str, multiplier: int = 1, stride: int = 1) -> str:
        """3x3 depthwise, SAME padding: stride 1 and multiplier 1 keep the input's shape."""
        _, h, w_, c = self.g.tensors[x].shape
        cout = c * multiplier
        w = self.g.add_tensor(Tensor(f"{name}.w", (1, 3, 3, cout), DType.INT8, data=np.zeros((1, 3, 3, cout), np.int8)))
        b = self.g.add_tensor(Tensor(f"{name}.b", (cout,), DType.INT32, data=np.zeros(cout, np.int32)))
        y = self.act(name, (1, (h - 1) // stride + 1, (w_ - 1) // stride + 1, cout))
        attrs = ConvAttrs((stride, stride), Padding(1, 1, 1, 1), depth_multiplier=multiplier)
        self.g.ops.append(Op(OpKind.DEPTHWISE_CONV2D, name, [x, w.name, b.name], [y], attrs))
        return y

    def add(self, name: str, a: str, b: str) -> str:
        y = self.act(name, self.g.tensors[a].shape)
        self.g.ops.append(Op(OpKind.ADD, name, [a, b], [y], AddAttrs()))
        return y

    def reshape(self, name: str, x: str, shape: tuple[int, ...]) -> str:
        y = self.act(name, shape)
        self.g.ops.append(Op(OpKind.RESHAPE, name, [x], [y], ReshapeAttrs(shape)))
        return y

    def done(self, *outputs: str) -> Graph:
        self.g.outputs = list(outputs)
        self.g.validate()
        return self.g


def nhwc_shape(rng: np.random.Generator, size: int) -> tuple[int, int, int, int]:
    """A random (1, h, w, c) with h * w * c == size."""
    h = int(rng.choice([d for d in range(1, size + 1) if size % d == 0]))
    w = int(rng.choice([d for d in range(1, size // h + 1) if (size // h) % d == 0]))
    return (1, h, w, size // h // w)


def random_dw(b: Builder, rng: np.random.Generator, k: int, x: str) -> str:
    """A depthwise op on x (reshaped to 4-D first if needed): mostly one the in-place
    kernel can run, sometimes a depth multiplier of 2 or stride 2 (it cannot)."""
    if len(b.g.tensors[x].shape) != 4:
        x = b.reshape(f"to4d{k}", x, nhwc_shape(rng, b.g.tensors[x].size))
    r = rng.random()
    if r < 0.75:
        return b.dw(f"dw{k}", x)
    return b.dw(f"dw{k}", x, multiplier=2) if r < 0.88 else b.dw(f"dw{k}", x, stride=2)


def random_pw(b: Builder, rng: np.random.Generator, k: int, x: str) -> str:
    """A 1x1 conv on x (reshaped to 4-D first if needed): mostly out_c <= in_c (the
    in-place kernel can run it), sometimes more output channels (it cannot)."""
    size = b.g.tensors[x].size
    if len(b.g.tensors[x].shape) != 4 or (b.g.tensors[x].shape[3] == 1 and size > 1 and rng.random() < 0.7):
        c = int(rng.choice([d for d in range(2, min(size, 16) + 1) if size % d == 0] or [1]))
        x = b.reshape(f"to4d{k}", x, (1, 1, size // c, c))
    cin = b.g.tensors[x].shape[3]
    r = rng.random()
    cout = cin if r < 0.45 else int(rng.integers(1, cin + 1)) if r < 0.85 else cin + int(rng.integers(1, 4))
    return b.conv(f"pw{k}", x, cout)


def random_dag(rng: np.random.Generator, n_ops: int) -> Graph:
    """Random chains with branches, adds, reshapes, depthwise convs and dead ends; sizes
    from a small set (so adds find partners) including sizes that are not multiples of 4."""
    sizes = [3, 8, 12, 16, 16, 24, 32, 37, 64, 100]
    b = Builder(f"dag{n_ops}")
    avail = [b.input("in", (1, int(rng.choice(sizes))))]
    for k in range(n_ops):
        recent = lambda: avail[-1 - min(int(rng.exponential(1.5)), len(avail) - 1)]  # noqa: E731
        r = rng.random()
        x = recent()
        size = b.g.tensors[x].size
        partners = [t for t in avail if t != x and b.g.tensors[t].size == size]
        if r < 0.25 and partners:
            avail.append(b.add(f"add{k}", x, partners[int(rng.integers(len(partners)))]))
        elif r < 0.3:
            avail.append(b.add(f"add{k}", x, x))
        elif r < 0.42:
            shape = (1, size) if b.g.tensors[x].shape != (1, size) else (1, 1, size)
            avail.append(b.reshape(f"reshape{k}", x, shape))
        elif r < 0.6:
            avail.append(random_dw(b, rng, k, x))
        elif r < 0.72:
            avail.append(random_pw(b, rng, k, x))
        else:
            avail.append(b.fc(f"fc{k}", x, int(rng.choice(sizes))))
    outs = [avail[-1]]
    if rng.random() < 0.3 and len(avail) > 2:
        extra = avail[int(rng.integers(1, len(avail) - 1))]
        if extra != outs[0]:
            outs.append(extra)
    return b.done(*outs)


# --- independent checks -------------------------------------------------------------------


def lifetimes(g: Graph, order: list[int]) -> dict[str, tuple[int, int]]:
    """Recomputed here, independently of the planner."""
    pos = {oi: s for s, oi in enumerate(order)}
    last = max(len(order) - 1, 0)
    life: dict[str, list[int]] = {t: [0, 0] for t in g.inputs}
    for oi in order:
        for y in g.ops[oi].outputs:
            life[y] = [pos[oi], pos[oi]]
    for oi in order:
        for x in g.ops[oi].inputs:
            if x in life:
                life[x][1] = max(life[x][1], pos[oi])
    for t in g.outputs:
        life[t][1] = last
    return {t: (a, b) for t, (a, b) in life.items()}


def root_of(plan, t: str) -> str:
    while t in plan.aliases:
        t = plan.aliases[t]
    return t


def check_no_overlap(g: Graph, plan) -> None:
    life = lifetimes(g, plan.order)
    names = list(life)
    for i, a in enumerate(names):
        assert plan.offsets[a] % plan.alignment == 0
        assert plan.offsets[a] + g.tensors[a].nbytes <= plan.arena_bytes
        for b in names[i + 1:]:
            (s1, e1), (s2, e2) = life[a], life[b]
            oa, ob = plan.offsets[a], plan.offsets[b]
            bytes_meet = oa < ob + g.tensors[b].nbytes and ob < oa + g.tensors[a].nbytes
            if s1 <= e2 and s2 <= e1 and bytes_meet:
                assert root_of(plan, a) == root_of(plan, b), f"{a} and {b} overlap"
                assert oa == ob


def dw_channel(src: np.ndarray, c: int, oi: int) -> np.ndarray:
    """Stand-in depthwise for one channel: every output of channel c depends on every
    input of channel c (and on nothing else)."""
    return ((int(src.astype(np.int64).sum()) + np.arange(src.size) * 7 + c * 3 + oi * 13) % 256).astype(np.uint8)


def run_dw_in_place(g: Graph, plan, oi: int, arena: np.ndarray, view) -> None:
    """The in-place kernel's memory traffic: per channel, copy the channel from the
    buffer into the op's planned scratch, then write its outputs over the channel from
    the scratch alone."""
    op = g.ops[oi]
    _, h, w, c = g.tensors[op.inputs[0]].shape
    assert plan.offsets[op.outputs[0]] == plan.offsets[op.inputs[0]]
    assert plan.scratch[oi] >= h * w
    data = view(op.outputs[0]).reshape(h * w, c)  # a view into the arena
    off = plan.scratch_offsets[oi]
    for ch in range(c):
        arena[off:off + h * w] = data[:, ch]
        data[:, ch] = dw_channel(arena[off:off + h * w].copy(), ch, oi)


def pw_pixel(src: np.ndarray, p: int, cout: int, oi: int) -> np.ndarray:
    """Stand-in 1x1 conv for one pixel: every output of pixel p depends on every input
    byte of pixel p (and on nothing else)."""
    return ((int(src.astype(np.int64).sum()) * 5 + np.arange(cout) * 11 + p * 3 + oi * 13) % 256).astype(np.uint8)


def run_pw_in_place(g: Graph, plan, oi: int, arena: np.ndarray) -> None:
    """The in-place 1x1 kernel's memory traffic: per pixel p in increasing order, copy its
    in_c input bytes into the op's planned scratch, then write its out_c outputs at
    p * out_c from the scratch alone (out_c <= in_c: the output is the input's prefix)."""
    op = g.ops[oi]
    _, h, w, cin = g.tensors[op.inputs[0]].shape
    cout = g.tensors[op.outputs[0]].shape[3]
    base = plan.offsets[op.inputs[0]]
    assert plan.offsets[op.outputs[0]] == base and cout <= cin
    assert plan.scratch[oi] >= cin
    off = plan.scratch_offsets[oi]
    for p in range(h * w):
        arena[off:off + cin] = arena[base + p * cin:base + (p + 1) * cin]
        arena[base + p * cout:base + (p + 1) * cout] = pw_pixel(arena[off:off + cin].copy(), p, cout, oi)


def stand_in(g: Graph, oi: int, ref: dict[str, np.ndarray]) -> np.ndarray:
    """What the stand-in kernel of op oi computes from the reference values of its inputs."""
    op = g.ops[oi]
    ins = [x for x in op.inputs if x in ref]
    n = g.tensors[op.outputs[0]].nbytes
    if op.kind == OpKind.RESHAPE:
        return ref[ins[0]].copy()
    if op.kind == OpKind.ADD:
        return (ref[op.inputs[0]].astype(np.int64) * 3 + ref[op.inputs[1]]).astype(np.uint8)
    if inplace_depthwise_scratch(g, op) is not None:
        _, h, w, c = g.tensors[ins[0]].shape
        x = ref[ins[0]].reshape(h * w, c)
        return np.stack([dw_channel(x[:, ch], ch, oi) for ch in range(c)], axis=1).reshape(-1)
    if inplace_conv_scratch(g, op) is not None:
        _, h, w, cin = g.tensors[ins[0]].shape
        x = ref[ins[0]].reshape(h * w, cin)
        cout = g.tensors[op.outputs[0]].shape[3]
        return np.concatenate([pw_pixel(x[p], p, cout, oi) for p in range(h * w)])
    return ((int(ref[ins[0]].astype(np.int64).sum()) + np.arange(n) * 7 + oi * 13) % 256).astype(np.uint8)


def simulate(g: Graph, plan, rng: np.random.Generator) -> None:
    """Run the graph on a byte arena at the planned offsets with stand-in kernels that
    read every input element; any clobbered input shows up as a wrong value. Non-in-place
    kernels must not write over their inputs; aliased reshapes copy nothing; scratch is
    filled with garbage while the op runs; in-place depthwise ops go through it channel by
    channel."""
    arena = np.zeros(plan.arena_bytes, np.uint8)
    ref: dict[str, np.ndarray] = {}

    def view(t: str) -> np.ndarray:
        return arena[plan.offsets[t]:plan.offsets[t] + g.tensors[t].nbytes]

    for t in g.inputs:
        ref[t] = rng.integers(0, 256, g.tensors[t].nbytes, dtype=np.uint8)
        view(t)[:] = ref[t]
    for step, oi in enumerate(plan.order):
        op = g.ops[oi]
        ins = [x for x in op.inputs if x in ref]
        for x in ins:
            assert np.array_equal(view(x), ref[x]), f"step {step} ({op.name}): input {x} was clobbered"
        if oi in plan.scratch_offsets:
            off = plan.scratch_offsets[oi]
            arena[off:off + plan.scratch[oi]] = rng.integers(0, 256, plan.scratch[oi], dtype=np.uint8)
            for x in ins:
                assert np.array_equal(view(x), ref[x]), f"{op.name}: scratch overlaps input {x}"
        y = op.outputs[0]
        n = g.tensors[y].nbytes
        out = ref[y] = stand_in(g, oi, ref)
        oy = plan.offsets[y]
        in_place = oi in plan.inplace_depthwise or oi in plan.inplace_conv
        for x in ins:  # only add and in-place depthwise / 1x1 conv may write over an input, and only exactly
            ox = plan.offsets[x]
            if oy < ox + g.tensors[x].nbytes and ox < oy + n:
                assert op.kind in (OpKind.ADD, OpKind.RESHAPE) or in_place, f"{op.name} writes over input {x}"
                assert ox == oy, f"{op.name} writes over input {x} at another offset"
        if oi in plan.inplace_conv:
            run_pw_in_place(g, plan, oi, arena)
            assert np.array_equal(view(y), out), f"{op.name}: in-place result differs"
        elif in_place:
            run_dw_in_place(g, plan, oi, arena, view)
            assert np.array_equal(view(y), out), f"{op.name}: in-place result differs"
        elif not (op.kind == OpKind.RESHAPE and oy == plan.offsets[ins[0]]):
            view(y)[:] = out
    for t in g.outputs:
        assert np.array_equal(view(t), ref[t]), f"graph output {t} was clobbered"


def aliased_peak(g: Graph, plan) -> int:
    """Largest sum of distinct live storage (aliases counted once) at one step."""
    life = lifetimes(g, plan.order)
    best = 0
    for s in range(max(len(plan.order), 1)):
        roots = {root_of(plan, t): g.tensors[t].nbytes for t, (a, b) in life.items() if a <= s <= b}
        best = max(best, sum(roots.values()))
    return best


def plain_peak(g: Graph, order: list[int]) -> int:
    life = lifetimes(g, order)
    return max(sum(g.tensors[t].nbytes for t, (a, b) in life.items() if a <= s <= b) for s in range(len(order)))


# --- tests --------------------------------------------------------------------------------


def check_plan(g: Graph, plan, sc: dict[int, int], alignment: int, rng: np.random.Generator) -> None:
    """Everything a plan must satisfy, checked independently of the planner."""
    validate_plan(g, plan)
    check_no_overlap(g, plan)
    simulate(g, plan, rng)
    assert plan.arena_bytes >= aliased_peak(g, plan)
    assert plan.arena_bytes >= max([0, *sc.values(), *plan.scratch.values()])
    assert plan.arena_bytes % alignment == 0
    assert plan.lower_bound_bytes == plain_peak(g, plan.order)
    assert set(plan.offsets) == {t.name for t in g.activations()}
    assert sorted(plan.order) == list(range(len(g.ops)))
    boundary = set(g.inputs) | set(g.outputs)
    producers = {y: i for i, op in enumerate(g.ops) for y in op.outputs}
    for t, r in plan.aliases.items():
        op = g.ops[producers[t]]
        assert op.kind in (OpKind.ADD, OpKind.RESHAPE) or producers[t] in plan.inplace_depthwise + plan.inplace_conv
        assert not (t in boundary and r in boundary)
    for oi in plan.inplace_depthwise:
        need = inplace_depthwise_scratch(g, g.ops[oi])
        assert need is not None and plan.scratch[oi] >= need and plan.scratch[oi] >= sc.get(oi, 0)
    for oi in plan.inplace_conv:
        need = inplace_conv_scratch(g, g.ops[oi])
        assert need is not None and plan.scratch[oi] >= need and plan.scratch[oi] >= sc.get(oi, 0)


@pytest.mark.parametrize("seed", range(6))
def test_random_dags_place_without_overlap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    used = {"auto": 0, "always": 0, "conv": 0, "conv-prefix": 0}
    for _ in range(25):
        g = random_dag(rng, int(rng.integers(1, 14)))
        alignment = int(rng.choice([1, 4, 8]))
        scratch = {int(i): int(rng.integers(1, 50)) for i in rng.choice(len(g.ops), size=min(2, len(g.ops)), replace=False)}
        for sc in ({}, scratch):
            never = plan_memory(g, alignment=alignment, scratch=sc, inplace_depthwise="never", inplace_conv="never")
            check_plan(g, never, sc, alignment, rng)
            assert never.inplace_depthwise == [] and never.inplace_conv == []
            for mode in ("auto", "always"):
                plan = plan_memory(g, alignment=alignment, scratch=sc, inplace_depthwise=mode, inplace_conv="never")
                check_plan(g, plan, sc, alignment, rng)
                used[mode] += bool(plan.inplace_depthwise)
                plan = plan_memory(g, alignment=alignment, scratch=sc, inplace_depthwise="never", inplace_conv=mode)
                check_plan(g, plan, sc, alignment, rng)
                used["conv"] += bool(plan.inplace_conv)
                used["conv-prefix"] += any(g.tensors[g.ops[oi].outputs[0]].nbytes < g.tensors[g.ops[oi].inputs[0]].nbytes
                                           for oi in plan.inplace_conv)
                both = plan_memory(g, alignment=alignment, scratch=sc, inplace_depthwise=mode, inplace_conv=mode)
                check_plan(g, both, sc, alignment, rng)
            # auto runs in place only where that makes the arena smaller (ties: the faster kernel)
            auto = plan_memory(g, alignment=alignment, scratch=sc)
            check_plan(g, auto, sc, alignment, rng)
            assert auto.arena_bytes <= never.arena_bytes
            assert not (auto.inplace_depthwise or auto.inplace_conv) or auto.arena_bytes < never.arena_bytes
            listed = plan_memory(g, order=list(range(len(g.ops))), alignment=alignment, scratch=sc)
            check_plan(g, listed, sc, alignment, rng)
            assert auto.arena_bytes <= listed.arena_bytes  # the order search never loses
    assert used["always"] > 0 and used["conv"] > 0, used  # the sweep exercised in-place depthwise and 1x1 conv
    assert used["conv-prefix"] > 0, used  # ... including out_c < in_c (the output a prefix of the input)


@pytest.mark.parametrize("alignment", [1, 4])
def test_chain_arena_equals_lower_bound(alignment: int) -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        b = Builder("chain")
        x = b.input("in", (1, int(rng.integers(1, 200)) * alignment))
        for k in range(int(rng.integers(1, 12))):
            x = b.fc(f"fc{k}", x, int(rng.integers(1, 200)) * alignment)
        g = b.done(x)
        plan = plan_memory(g, alignment=alignment)
        validate_plan(g, plan)
        assert plan.arena_bytes == plan.lower_bound_bytes == plain_peak(g, plan.order)


def test_chain_where_greedy_by_size_alone_is_not_optimal() -> None:
    # sizes 100, 90, 50, 60, 10: largest-first first-fit puts 50 above 90 (arena 240)
    b = Builder("chain")
    x = b.input("in", (1, 100))
    for k, n in enumerate([90, 50, 60, 10]):
        x = b.fc(f"fc{k}", x, n)
    g = b.done(x)
    plan = plan_memory(g, alignment=1)
    assert plan.arena_bytes == plan.lower_bound_bytes == 190
    assert plan.strategy != "greedy_size_first_fit"


def two_branch_graph() -> Graph:
    """x -> a1 -> a2 and x -> b1 -> b2, add(a2, b2); listed interleaved (a1, b1, a2, b2)."""
    b = Builder("branches")
    x = b.input("x", (1, 8, 8, 16))  # 1024 B
    a1 = b.conv("a1", x, 16)
    b1 = b.conv("b1", x, 16)
    a2 = b.conv("a2", a1, 2)
    b2 = b.conv("b2", b1, 2)
    return b.done(b.add("y", a2, b2))


def test_order_search_lowers_the_peak_of_an_interleaved_branch() -> None:
    g = two_branch_graph()
    listed = plan_memory(g, order=[0, 1, 2, 3, 4], alignment=1, inplace_conv="never")
    assert listed.arena_bytes == 3072  # x, a1, b1 live together
    plan = plan_memory(g, alignment=1, inplace_conv="never")
    validate_plan(g, plan)
    assert plan.arena_bytes == 2176  # one branch at a time: x + a1 + a2
    assert plan.order in ([0, 2, 1, 3, 4], [1, 3, 0, 2, 4])
    assert plan.arena_bytes < listed.arena_bytes


def test_residual_block_keeps_its_only_order_and_adds_in_place() -> None:
    b = Builder("residual")
    x = b.input("x", (1, 8, 8, 8))
    h = b.conv("c1", x, 8)
    h = b.conv("c2", h, 8)
    y = b.add("add", h, x)
    out = b.conv("head", y, 4)
    g = b.done(out)
    plan = plan_memory(g, alignment=4, inplace_conv="never")
    validate_plan(g, plan)
    assert plan.order == [0, 1, 2, 3]
    assert plan.aliases == {"add": "c2"}  # c2 dies at the add; x (a graph input) would also do
    assert plan.offsets["add"] == plan.offsets["c2"]
    assert plan.arena_bytes == plan.peak_storage_bytes == 3 * 512
    assert plan.lower_bound_bytes == 3 * 512


def test_add_does_not_overwrite_an_input_that_is_read_later() -> None:
    b = Builder("g")
    x = b.input("x", (1, 16))
    a = b.fc("a", x, 16)
    s = b.add("s", a, x)
    y = b.fc("y", s, 16)
    z = b.add("z", y, a)  # a is read again after s: s may not overwrite a
    g = b.done(z)
    plan = plan_memory(g, order=[0, 1, 2, 3], alignment=1)
    validate_plan(g, plan)
    assert plan.aliases.get("s") != "a"
    assert plan.aliases.get("s") == "x"  # x dies at s and is not a graph output
    assert plan.aliases["z"] == "y"  # y dies at z (a would too); z is a graph output, y is not


def test_graph_input_and_output_never_share_storage() -> None:
    b = Builder("g")
    x = b.input("x", (1, 4, 4, 2))
    r = b.reshape("r", x, (1, 32))
    g = b.done(r)
    plan = plan_memory(g, alignment=4)
    validate_plan(g, plan)
    assert plan.aliases == {}
    assert plan.offsets["r"] != plan.offsets["x"]

    b = Builder("g")
    x = b.input("x", (1, 16))
    y = b.add("y", x, x)
    g = b.done(y)
    plan = plan_memory(g)
    assert plan.aliases == {}
    assert plan.arena_bytes == 32


def test_reshape_output_aliases_its_input() -> None:
    b = Builder("g")
    x = b.input("x", (1, 2, 2, 3))  # 12 B
    c = b.conv("c", x, 16)  # 64 B
    r = b.reshape("flat", c, (1, 64))
    y = b.fc("fc", r, 10)
    g = b.done(y)
    plan = plan_memory(g, alignment=4)
    validate_plan(g, plan)
    assert plan.aliases == {"flat": "c"}
    assert plan.offsets["flat"] == plan.offsets["c"]
    assert plan.lower_bound_bytes == 128  # no-aliasing measure: c and flat both live at the reshape
    assert plan.steps[1].storage_bytes == 64  # the reshape costs nothing
    assert plan.arena_bytes == 64 + 12  # x + c, or c + fc output (10 B rounded to 12)
    simulate(g, plan, np.random.default_rng(0))

    bad = plan_memory(g, alignment=4)
    bad.aliases = {}  # same bytes without the declared alias: the validator must refuse
    with pytest.raises(McuqpError, match="overlap"):
        validate_plan(g, bad)


def test_validate_plan_rejects_broken_plans() -> None:
    g = two_branch_graph()
    plan = plan_memory(g)
    plan.offsets["a1"] = plan.offsets["x"]  # live together at the first step
    with pytest.raises(McuqpError, match="overlap"):
        validate_plan(g, plan)

    plan = plan_memory(g)
    plan.offsets["a1"] = plan.arena_bytes
    with pytest.raises(McuqpError, match="outside"):
        validate_plan(g, plan)

    plan = plan_memory(g)
    plan.order = [1, 3, 2, 0, 4]
    with pytest.raises(McuqpError, match="before its producer"):
        validate_plan(g, plan)

    plan = plan_memory(g)  # a conv may not alias (it reads while it writes)
    plan.offsets["a2"] = plan.offsets["a1"]
    plan.aliases["a2"] = "a1"
    g.tensors["a2"].shape = g.tensors["a1"].shape
    with pytest.raises(McuqpError, match="cannot write"):
        validate_plan(g, plan)


def test_bad_arguments_raise_one_line_errors() -> None:
    g = two_branch_graph()
    for order in ([0, 1, 2, 3], [0, 0, 1, 2, 3], [2, 0, 1, 3, 4]):
        with pytest.raises(McuqpError):
            plan_memory(g, order=order)
    with pytest.raises(McuqpError, match="alignment"):
        plan_memory(g, alignment=0)
    with pytest.raises(McuqpError, match="scratch"):
        plan_memory(g, scratch={9: 10})
    with pytest.raises(McuqpError, match="inplace_depthwise"):
        plan_memory(g, inplace_depthwise="sometimes")  # type: ignore[arg-type]
    g.ops.reverse()
    with pytest.raises(McuqpError, match="invalid graph"):
        plan_memory(g)


def residual_dw_graph() -> Graph:
    """x -> c1 -> c2 and c1 -> dw, add(c2, dw) -> head: mixed28's shape, where c1 dies at
    the depthwise while c2 waits for the add (three 512 B tensors live without in place)."""
    b = Builder("residual_dw")
    x = b.input("x", (1, 8, 8, 4))  # 256 B
    c1 = b.conv("c1", x, 8)  # 512 B
    c2 = b.conv("c2", c1, 8)
    d = b.dw("dw", c1)
    y = b.add("add", c2, d)
    return b.done(b.conv("head", y, 2))


def test_inplace_depthwise_lowers_the_arena_below_the_lower_bound() -> None:
    g = residual_dw_graph()
    never = plan_memory(g, alignment=4, inplace_depthwise="never", inplace_conv="never")
    assert never.arena_bytes == never.lower_bound_bytes == 3 * 512
    plan = plan_memory(g, alignment=4, inplace_conv="never")
    validate_plan(g, plan)
    assert plan.order == [0, 1, 2, 3, 4]  # c1 must die at the depthwise
    assert plan.inplace_depthwise == [2] and plan.aliases["dw"] == "c1"
    assert plan.offsets["dw"] == plan.offsets["c1"]
    assert plan.scratch == {2: 64} and plan.scratch_bytes == 64  # h * w = 8 * 8
    assert plan.arena_bytes == 2 * 512 + 64 < plan.lower_bound_bytes == 3 * 512
    simulate(g, plan, np.random.default_rng(2))


def test_inplace_depthwise_ties_keep_the_regular_kernel() -> None:
    """A DS-CNN block (KWS): the pointwise conv after the depthwise holds two tensors too,
    so running the depthwise in place saves nothing and the faster kernel stays."""
    b = Builder("dscnn")
    x = b.input("x", (1, 25, 5, 1))
    h = b.conv("c0", x, 64)
    for k in range(2):
        h = b.conv(f"pw{k}", b.dw(f"dw{k}", h), 64)
    g = b.done(h)
    plan = plan_memory(g, inplace_conv="never")
    validate_plan(g, plan)
    assert plan.inplace_depthwise == [] and plan.scratch == {}
    assert plan.arena_bytes == 16000
    forced = plan_memory(g, inplace_depthwise="always", inplace_conv="never")
    validate_plan(g, forced)
    assert forced.inplace_depthwise == [1, 3] and forced.arena_bytes == 16000
    assert forced.scratch == {1: 125, 3: 125}  # h * w; the planned areas are rounded to the alignment
    simulate(g, forced, np.random.default_rng(3))


def test_inplace_pointwise_and_depthwise_take_a_dscnn_below_its_lower_bound() -> None:
    """The DS-CNN block again: with the 1x1 convs in place as well, no step holds two
    8,000 B tensors; either kind alone saves nothing, so auto needs (and keeps) both."""
    b = Builder("dscnn")
    x = b.input("x", (1, 25, 5, 1))
    h = b.conv("c0", x, 64)
    for k in range(2):
        h = b.conv(f"pw{k}", b.dw(f"dw{k}", h), 64)
    g = b.done(b.fc("fc", h, 12))
    assert [inplace_conv_scratch(g, op) for op in g.ops] == [None, None, 64, None, 64, None]  # c0: 1 -> 64 channels
    never = plan_memory(g, inplace_depthwise="never", inplace_conv="never")
    assert never.arena_bytes == never.lower_bound_bytes == 16000
    only_pw = plan_memory(g, inplace_depthwise="never", inplace_conv="always")
    validate_plan(g, only_pw)
    assert only_pw.inplace_conv == [2, 4] and only_pw.arena_bytes >= 16000
    plan = plan_memory(g)
    validate_plan(g, plan)
    assert plan.inplace_depthwise == [1, 3] and plan.inplace_conv == [2, 4]
    assert plan.scratch == {1: 125, 2: 64, 3: 125, 4: 64}
    assert plan.arena_bytes < plan.lower_bound_bytes == 16000
    assert plan.arena_bytes == 8000 + 128  # one 8,000 B tensor plus the largest scratch (125 -> 128)
    simulate(g, plan, np.random.default_rng(8))


def test_inplace_conv_only_where_exact() -> None:
    b = Builder("g")
    x = b.input("x", (1, 4, 4, 8))
    a = b.conv("a", x, 8)
    c = b.conv("c", a, 3)  # out_c < in_c: the output is the prefix of a's bytes
    d = b.conv("d", c, 6)  # out_c > in_c: would overwrite unread pixels
    g = b.done(b.fc("f", d, 4))
    assert [inplace_conv_scratch(g, op) for op in g.ops] == [8, 8, None, None]
    plan = plan_memory(g, inplace_conv="always")
    validate_plan(g, plan)
    assert plan.inplace_conv == [0, 1]  # x, a graph input, may be overwritten by a (not an output)
    assert plan.offsets["c"] == plan.offsets["a"] == plan.offsets["x"]
    simulate(g, plan, np.random.default_rng(9))
    # stride, padding or a bigger filter: not the 1x1 kernel's case
    for attrs in (ConvAttrs((2, 2), Padding()), ConvAttrs((1, 1), Padding(0, 0, 0, 0), dilation=(2, 1))):
        op = Op(OpKind.CONV2D, "s", [a, "a.w"], ["a"], attrs)
        assert inplace_conv_scratch(g, op) is None

    # validate_plan refuses loose in-place convs
    def broken(change):
        p = plan_memory(g, inplace_conv="always")
        change(p)
        return p

    with pytest.raises(McuqpError, match="not listed in inplace_conv"):
        validate_plan(g, broken(lambda p: p.inplace_conv.remove(1)))
    with pytest.raises(McuqpError, match="needs 8 B of scratch"):
        validate_plan(g, broken(lambda p: p.scratch.update({1: 4})))
    never = plan_memory(g, inplace_conv="never")
    never.inplace_conv = [0]
    with pytest.raises(McuqpError, match="does not share"):
        validate_plan(g, never)
    never.inplace_conv = [2]
    with pytest.raises(McuqpError, match="cannot run it"):
        validate_plan(g, never)
    # d (out_c > in_c) forced over c
    p = plan_memory(g, inplace_conv="always")
    p.aliases["d"] = "x"
    p.offsets["d"] = p.offsets["c"]
    p.inplace_conv = [0, 1, 2]
    with pytest.raises(McuqpError):
        validate_plan(g, p)


def test_inplace_depthwise_only_where_exact() -> None:
    b = Builder("g")
    x = b.input("x", (1, 6, 6, 4))
    a = b.conv("a", x, 4)
    d1 = b.dw("d1", a, multiplier=2)  # 8 channels from 4: channel 2c+1 reads channel c
    d2 = b.dw("d2", d1, stride=2)  # smaller output
    c = b.conv("c", d2, 8)
    d3 = b.dw("d3", c)  # c is read again by the add
    s = b.add("s", c, d3)  # in place over c
    d4 = b.dw("d4", s)  # the graph output over s (and c): one boundary tensor in the group
    d5 = b.dw("d5", x)  # graph input to graph output: never one buffer
    g = b.done(d4, d5)
    assert [inplace_depthwise_scratch(g, op) for op in g.ops] == [None, None, None, None, 9, None, 9, 36]
    plan = plan_memory(g, order=list(range(8)), inplace_depthwise="always", inplace_conv="never")
    validate_plan(g, plan)
    assert plan.inplace_depthwise == [6]
    assert plan.aliases["s"] == plan.aliases["d4"] == "c"
    assert plan.scratch == {6: 9}
    simulate(g, plan, np.random.default_rng(4))

    b = Builder("g")
    x = b.input("x", (1, 4, 4, 2))
    y = b.dw("y", x)
    g = b.done(y, x)  # x is a graph output: it must survive
    plan = plan_memory(g, inplace_depthwise="always")
    assert plan.inplace_depthwise == [] and plan.aliases == {}


def test_validate_plan_refuses_loose_inplace_depthwise() -> None:
    g = residual_dw_graph()

    def broken(change) -> None:
        plan = plan_memory(g, alignment=4, inplace_conv="never")
        assert plan.inplace_depthwise == [2]
        change(plan)
        return plan

    plan = broken(lambda p: p.inplace_depthwise.clear())  # codegen would run the regular kernel over its input
    with pytest.raises(McuqpError, match="not listed"):
        validate_plan(g, plan)
    plan = broken(lambda p: p.scratch.update({2: 63}))
    with pytest.raises(McuqpError, match="needs 64 B of scratch"):
        validate_plan(g, plan)
    plan = broken(lambda p: p.scratch_offsets.update({2: p.offsets["c1"]}))
    with pytest.raises(McuqpError, match="overlap"):
        validate_plan(g, plan)

    plan = plan_memory(g, alignment=4, inplace_depthwise="never", inplace_conv="never")
    plan.inplace_depthwise = [2]  # listed but the output has its own storage
    with pytest.raises(McuqpError, match="does not share"):
        validate_plan(g, plan)
    plan.inplace_depthwise = [1]  # not a depthwise op
    with pytest.raises(McuqpError, match="cannot run it"):
        validate_plan(g, plan)

    plan = plan_memory(g, order=[0, 2, 1, 3, 4], alignment=4, inplace_depthwise="always", inplace_conv="never")
    assert plan.inplace_depthwise == []  # c1 is read by c2 after the depthwise
    plan.aliases["dw"] = "c1"
    plan.offsets["dw"] = plan.offsets["c1"]
    plan.inplace_depthwise = [2]
    plan.scratch, plan.scratch_offsets = {2: 64}, {2: plan.arena_bytes}
    plan.arena_bytes += 64
    with pytest.raises(McuqpError, match="still live"):
        validate_plan(g, plan)

    # a depthwise the in-place kernel cannot run, with equal byte sizes: (1, 4, 4, 2) -> (1, 2, 4, 4)
    b = Builder("g")
    x = b.input("x", (1, 4, 4, 2))
    a = b.conv("a", x, 2)
    w = b.g.add_tensor(Tensor("d.w", (1, 3, 3, 4), DType.INT8, data=np.zeros((1, 3, 3, 4), np.int8)))
    y = b.act("d", (1, 2, 4, 4))
    b.g.ops.append(Op(OpKind.DEPTHWISE_CONV2D, "d", [a, w.name], [y],
                      ConvAttrs((2, 1), Padding(1, 1, 1, 1), depth_multiplier=2)))
    g2 = b.done(b.conv("head", y, 2))
    plan = plan_memory(g2, alignment=4, inplace_depthwise="always", inplace_conv="never")
    assert plan.inplace_depthwise == []
    plan.aliases["d"] = "a"
    plan.offsets["d"] = plan.offsets["a"]
    plan.inplace_depthwise = [1]
    plan.scratch, plan.scratch_offsets = {1: 16}, {1: plan.arena_bytes}
    plan.arena_bytes += 16
    with pytest.raises(McuqpError, match="cannot write over its input"):
        validate_plan(g2, plan)


def test_scratch_is_planned_beside_the_live_tensors() -> None:
    g = two_branch_graph()
    plan = plan_memory(g, alignment=4, scratch={0: 100, 4: 30})
    validate_plan(g, plan)
    assert plan.scratch_bytes == 100
    assert set(plan.scratch_offsets) == {0, 4}
    step0 = plan.order.index(0)
    assert plan.steps[step0].storage_bytes == plan.steps[step0].live_bytes + 100
    simulate(g, plan, np.random.default_rng(1))
    plan.scratch_offsets[0] = plan.offsets["x"]  # x is read by op 0 while its scratch is in use
    with pytest.raises(McuqpError, match="overlap"):
        validate_plan(g, plan)


def test_planning_a_40_op_branching_graph_is_fast() -> None:
    rng = np.random.default_rng(3)
    b = Builder("wide")
    x = b.input("in", (1, 64))
    for k in range(10):  # ten blocks of two branches joined by an add: 4 ops each
        p = b.fc(f"p{k}", x, 32)
        q = b.fc(f"q{k}", x, int(rng.choice([16, 32, 48])))
        q = b.fc(f"r{k}", q, 32)
        x = b.add(f"add{k}", p, q)
    g = b.done(x)
    assert len(g.ops) == 40
    t0 = time.process_time()
    plan = plan_memory(g)
    assert time.process_time() - t0 < 1.0
    validate_plan(g, plan)
    assert plan.arena_bytes <= plan_memory(g, order=list(range(40))).arena_bytes


@pytest.mark.parametrize(("model", "bound"), [
    ("kws_ref_model", 16000), ("vww_96_int8", 55296), ("pretrainedResnet_quant", 49152), ("ad01_int8", 768),
])
def test_mlperf_tiny_lower_bounds_match_the_published_numbers(model: str, bound: int) -> None:
    path = prereq.shared_model(f"mlperf_tiny/{model}.tflite")
    from mcuqp.frontends.tflite import load_tflite

    g = load_tflite(str(path))
    listed = plan_memory(g, order=list(range(len(g.ops))))
    assert listed.lower_bound_bytes == bound
    plan = plan_memory(g)
    validate_plan(g, plan)
    assert plan.peak_storage_bytes <= plan.arena_bytes <= listed.arena_bytes
    assert plan.arena_bytes <= bound
    simulate(g, plan, np.random.default_rng(0))


@pytest.mark.parametrize(("model", "arena"), [
    ("fixtures/mixed28_int8", 3332), ("mlperf_tiny/kws_ref_model", 16000), ("mlperf_tiny/vww_96_int8", 55296),
])
def test_shared_models_with_inplace_depthwise(model: str, arena: int) -> None:
    """mixed28's depthwise input dies at it while a branch waits: in place, the arena drops
    below the live lower bound (4,704 B). KWS and VWW peak at pointwise convs, which hold
    two tensors whatever the depthwise does: auto keeps the regular kernel there; forced
    in place, the plans are still exact."""
    path = prereq.shared_model(f"{model}.tflite")
    from mcuqp.frontends.tflite import load_tflite

    g = load_tflite(str(path))
    plan = plan_memory(g, inplace_conv="never")
    validate_plan(g, plan)
    assert plan.arena_bytes == arena
    assert bool(plan.inplace_depthwise) == (arena < plan.lower_bound_bytes)
    forced = plan_memory(g, inplace_depthwise="always", inplace_conv="never")
    validate_plan(g, forced)
    assert forced.inplace_depthwise and forced.arena_bytes >= plan.arena_bytes
    simulate(g, forced, np.random.default_rng(0))


def test_kws_in_place_pointwise_below_its_lower_bound() -> None:
    """KWS alternates depthwise and 1x1 convs on 8,000 B tensors: with both in place the
    arena drops below the 16,000 B live-activation lower bound."""
    path = prereq.shared_model("mlperf_tiny/kws_ref_model.tflite")
    from mcuqp.frontends.tflite import load_tflite

    g = load_tflite(str(path))
    plan = plan_memory(g)
    validate_plan(g, plan)
    assert plan.lower_bound_bytes == 16000 and plan.arena_bytes == 8492
    assert plan.inplace_depthwise == [1, 3, 5, 7] and plan.inplace_conv == [2, 4, 6, 8]
    simulate(g, plan, np.random.default_rng(1))


def test_reports(tmp_path: Path) -> None:
    b = Builder("report")
    x = b.input("x", (1, 4, 4, 3))
    c = b.conv("c", x, 4)
    r = b.reshape("flat", c, (1, 64))
    y = b.fc("fc", r, 10)
    g = b.done(y)
    plan = plan_memory(g, scratch={0: 16}, inplace_conv="never")

    table = plan_table(g, plan)
    lines = table.splitlines()
    assert len(lines) == 1 + len(g.ops) + 1
    peak = plan.peak_step
    assert "<- peak" in lines[1 + peak] and sum("<- peak" in line for line in lines) >= 1
    for op in g.ops:
        assert op.name in table
    assert "flat=c" in table and f"arena {plan.arena_bytes:,} B" in table

    data = json.loads(json.dumps(plan_json(g, plan)))
    assert {"arena_bytes", "scratch_bytes", "lower_bound_bytes", "layers"} <= set(data)
    assert data["arena_bytes"] == plan.arena_bytes and data["scratch_bytes"] == 16
    assert [layer["op"] for layer in data["layers"]] == [g.ops[i].name for i in plan.order]
    assert [layer["live_bytes"] for layer in data["layers"]] == [s.live_bytes for s in plan.steps]
    assert {t["name"]: t["alias_of"] for t in data["tensors"]}["flat"] == "c"

    out = plot_plan(g, plan, tmp_path / "plan.png")
    raw = out.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0  # something was drawn

    g = residual_dw_graph()
    plan = plan_memory(g, inplace_conv="never")
    table = plan_table(g, plan)
    assert sum("(in place)" in line for line in table.splitlines()) == 1 and "1 depthwise op(s) in place" in table
    data = json.loads(json.dumps(plan_json(g, plan)))
    assert data["inplace_depthwise"] == ["dw"]
    assert [layer["in_place"] for layer in data["layers"]] == [False, False, True, False, False]
    assert data["scratch"] == [{"op": "dw", "step": 2, "offset": plan.scratch_offsets[2], "bytes": 64}]
    assert plot_plan(g, plan, tmp_path / "inplace.png").exists()
    g = residual_dw_graph()
    plan = plan_memory(g, inplace_conv="always")
    assert plan.inplace_conv
    assert f"{len(plan.inplace_conv)} 1x1 conv op(s) in place" in plan_table(g, plan)
    data = json.loads(json.dumps(plan_json(g, plan)))
    assert data["inplace_conv"] == [g.ops[oi].name for oi in plan.inplace_conv]
