"""Channel dependency analysis and channel removal with torch.fx — the machinery behind every
structured (filter/channel) pruning method.

A *channel space* is a set of channels that must be pruned together: the output channels of
one or more producers (Conv2d/Linear), followed through channel-wise ops (batch norm,
depthwise conv, zero-preserving activations, pooling, dropout) and merged across residual
adds. Removing channel c of a space removes the c-th filter (and bias) of every producer,
the c-th entry of every batch norm and depthwise filter on the way, and the c-th input channel
of every consumer conv — or the c-th group of H*W columns of a Linear fed through a flatten.

A space is prunable only when every use is understood: it must not reach the network output,
feed a concatenation, a grouped conv, an op that maps zero to non-zero (sigmoid, adding a
constant) or any op this analysis does not know. Because every op on the way maps 0 to 0,
zeroing a channel's producers (and its batch-norm scale and shift) gives exactly the function
of the network with that channel removed.
"""
from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils import parametrize

from mcuqp.errors import McuqpError, UnsupportedModelError

# Modules and functions that act on each channel separately and map 0 to 0.
_CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.Tanh, nn.GELU, nn.SiLU, nn.Hardswish, nn.ELU,
    nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_CHANNELWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.hardtanh, F.gelu, F.silu, F.hardswish, F.elu, F.dropout,
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.relu, torch.tanh,
    F.tanh, torch.nn.functional.dropout2d,
}
_CHANNELWISE_METHODS = {"relu", "relu_", "tanh", "contiguous", "clone"}
_ADDS = {operator.add, operator.iadd, torch.add}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}


@dataclass
class Consumer:
    """A conv/linear reading the space: each space channel is `mult` consecutive input channels
    of the layer (mult > 1 behind a depthwise conv with a channel multiplier), and each of those
    is `hw` consecutive columns of a Linear fed through a flatten."""

    layer: str
    hw: int = 1
    mult: int = 1

    @property
    def width(self) -> int:
        """Input columns (Linear) or input channels x hw (conv) per space channel."""
        return self.mult * self.hw


@dataclass
class Member:
    """A batch norm or depthwise conv whose output channels c*mult .. c*mult+mult-1 belong to
    space channel c."""

    layer: str
    mult: int = 1


@dataclass
class ChannelSpace:
    key: str  # name of the first producer
    size: int
    producers: list[str] = field(default_factory=list)
    channelwise: list[Member] = field(default_factory=list)  # batch norms and depthwise convs
    consumers: list[Consumer] = field(default_factory=list)
    blocked: str = ""  # why the space cannot be pruned ("" = prunable)

    @property
    def prunable(self) -> bool:
        return not self.blocked and bool(self.producers)


@dataclass
class ChannelGraph:
    spaces: dict[str, ChannelSpace]  # by key, in topological order
    traced: fx.GraphModule
    fixed_reshapes: list[str]  # view/reshape nodes with literal sizes (rewritten when pruning)

    def prunable(self) -> list[ChannelSpace]:
        return [s for s in self.spaces.values() if s.prunable]


@dataclass
class _View:
    """How a tensor's axis 1 relates to a space: `mult` consecutive channels per space channel,
    per-channel (hw=0) or flattened (hw columns per channel)."""

    sid: int
    hw: int = 0
    mult: int = 1


class _Spaces:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.info: list[ChannelSpace] = []

    def new(self, key: str, size: int, blocked: str = "") -> int:
        self.parent.append(len(self.parent))
        self.info.append(ChannelSpace(key, size, blocked=blocked))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def get(self, i: int) -> ChannelSpace:
        return self.info[self.find(i)]

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        lo, hi = min(ra, rb), max(ra, rb)  # keep the earlier space as the root (stable key)
        s, t = self.info[lo], self.info[hi]
        if s.size != t.size:
            raise UnsupportedModelError(f"adding tensors of {s.size} and {t.size} channels")
        s.producers += t.producers
        s.channelwise += t.channelwise
        s.consumers += t.consumers
        s.blocked = s.blocked or t.blocked
        self.parent[hi] = lo
        return lo

    def block(self, i: int, why: str) -> None:
        s = self.get(i)
        s.blocked = s.blocked or why


def _is_depthwise(m: nn.Conv2d) -> bool:
    """Depthwise, with any channel multiplier (output channel c*k + j reads input channel c)."""
    return m.groups > 1 and m.groups == m.in_channels and m.out_channels % m.in_channels == 0


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure means the model is dynamic
        raise UnsupportedModelError(f"cannot trace the model with torch.fx: {str(e).splitlines()[0]}") from None


def analyze(model: nn.Module, example: torch.Tensor) -> ChannelGraph:
    """Find the channel spaces of `model`; `example` is one input batch (shapes only)."""
    gm = trace(model)
    was_training = model.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example[:1])
    model.train(was_training)
    modules = dict(gm.named_modules())
    sp = _Spaces()
    env: dict[fx.Node, _View] = {}
    fixed: list[str] = []
    called: set[str] = set()
    shared: set[str] = set()

    def block_inputs(node: fx.Node, why: str) -> None:
        for a in node.all_input_nodes:
            if a in env:
                sp.block(env[a].sid, why)

    for node in gm.graph.nodes:
        shape = _shape(node)
        if node.op == "placeholder":
            if shape is not None and len(shape) >= 2:
                env[node] = _View(sp.new("input", shape[1], blocked="network input"))
            continue
        if node.op == "output":
            block_inputs(node, "reaches the network output")
            continue
        src = env.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
        if node.op == "call_module":
            m = modules[node.target]
            name = str(node.target)
            if name in called:
                shared.add(name)
            called.add(name)
            if parametrize.is_parametrized(m):
                raise McuqpError(f"{name} has a weight parametrization: prune channels before quantizing")
            if isinstance(m, nn.Conv2d) and m.groups == 1 and src is not None and src.hw == 0:
                sp.get(src.sid).consumers.append(Consumer(name, 1, src.mult))
                sid = sp.new(name, m.out_channels)
                sp.get(sid).producers.append(name)
                env[node] = _View(sid)
            elif isinstance(m, nn.Conv2d) and _is_depthwise(m) and src is not None and src.hw == 0:
                mult = src.mult * (m.out_channels // m.in_channels)
                sp.get(src.sid).channelwise.append(Member(name, mult))
                env[node] = _View(src.sid, 0, mult)
            elif isinstance(m, nn.Linear) and src is not None and shape is not None and len(shape) == 2:
                sp.get(src.sid).consumers.append(Consumer(name, max(src.hw, 1), src.mult))
                sid = sp.new(name, m.out_features)
                sp.get(sid).producers.append(name)
                env[node] = _View(sid)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and src is not None and src.hw == 0:
                sp.get(src.sid).channelwise.append(Member(name, src.mult))
                env[node] = src
            elif isinstance(m, _CHANNELWISE_MODULES) and src is not None:
                env[node] = src
            elif isinstance(m, nn.Flatten):
                env[node] = _flatten_view(sp, node, src, shape, name)
            else:
                block_inputs(node, f"used by {name} ({type(m).__name__})")
                _new_blocked(sp, env, node, shape, f"output of {name}")
            continue
        if node.op in ("call_function", "call_method"):
            fn = node.target
            tensor_args = [a for a in node.all_input_nodes if a in env]
            if not tensor_args or shape is None:
                continue  # shape queries and arithmetic (x.size(0), x.shape[0], ...)
            if (fn in _CHANNELWISE_FUNCTIONS or fn in _CHANNELWISE_METHODS) and src is not None and len(tensor_args) == 1:
                env[node] = src
            elif fn in _ADDS or fn == "add":
                views = [env[a] for a in node.args[:2] if isinstance(a, fx.Node) and a in env]
                same = len(views) == 2 and (views[0].hw, views[0].mult) == (views[1].hw, views[1].mult)
                if same and len(node.args) == 2 and not node.kwargs:
                    env[node] = _View(sp.union(views[0].sid, views[1].sid), views[0].hw, views[0].mult)
                else:
                    block_inputs(node, "added to a non-channel value")
                    _new_blocked(sp, env, node, shape, "add")
            elif (fn in _RESHAPE_FUNCTIONS or fn in _RESHAPE_METHODS) and src is not None and len(tensor_args) == 1:
                if any(isinstance(a, int) and a not in (-1,) for a in _size_args(node)):
                    fixed.append(node.name)
                env[node] = _flatten_view(sp, node, src, shape, node.name)
            elif fn in ("mean",) or fn is torch.mean:
                in_shape = _shape(node.args[0])
                if src is not None and src.hw == 0 and in_shape and shape and len(in_shape) == 4 and shape[:2] == in_shape[:2]:
                    env[node] = src  # spatial mean, channels kept
                else:
                    block_inputs(node, "mean over channels")
                    _new_blocked(sp, env, node, shape, "mean")
            else:
                block_inputs(node, f"used by {getattr(fn, '__name__', fn)}")
                _new_blocked(sp, env, node, shape, node.name)
            continue
        if node.op == "get_attr":
            if shape is not None and len(shape) >= 2:
                env[node] = _View(sp.new(node.name, shape[1], blocked="constant tensor"))
    roots = sorted({sp.find(i) for i in range(len(sp.parent))})
    for r in roots:
        s = sp.info[r]
        users = s.producers + [c.layer for c in s.channelwise] + [c.layer for c in s.consumers]
        if shared & set(users):
            s.blocked = s.blocked or f"layer {sorted(shared & set(users))[0]} is called more than once"
    spaces = {}
    for r in roots:
        s = sp.info[r]
        if s.producers:
            spaces[s.key] = s
    return ChannelGraph(spaces, gm, fixed)


def _size_args(node: fx.Node) -> list:
    if node.target in ("flatten",) or node.target is torch.flatten:
        return []
    out = []
    for a in node.args[1:]:
        out.extend(a if isinstance(a, (tuple, list)) else [a])
    for a in node.kwargs.values():
        out.extend(a if isinstance(a, (tuple, list)) else [a])
    return out


def _flatten_view(sp: _Spaces, node: fx.Node, src: _View | None, shape, name: str) -> _View:
    in_shape = _shape(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
    if src is not None and in_shape and shape and len(shape) == 2 and in_shape[0] == shape[0]:
        if len(in_shape) == 4 and src.hw == 0:
            return _View(src.sid, in_shape[2] * in_shape[3], src.mult)
        if len(in_shape) == 2:
            return src
    if src is not None:
        sp.block(src.sid, f"reshaped by {name}")
    return _View(sp.new(name, shape[1] if shape and len(shape) > 1 else 1, blocked=f"output of {name}"))


def _new_blocked(sp: _Spaces, env: dict, node: fx.Node, shape, why: str) -> None:
    if shape is not None and len(shape) >= 2:
        env[node] = _View(sp.new(node.name, shape[1], blocked=why))


# ---------------------------------------------------------------------------------------------
# scores and selection


def keep_count(size: int, ratio: float) -> int:
    if not 0.0 <= ratio < 1.0:
        raise McuqpError(f"channel pruning ratio must be in [0, 1), got {ratio}")
    return max(1, int(round(size * (1.0 - ratio))))


def keep_top(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Indices of the n_keep highest scores, ascending."""
    return torch.sort(torch.argsort(scores, descending=True, stable=True)[:n_keep]).values


# ---------------------------------------------------------------------------------------------
# applying a selection


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def _index(t: torch.Tensor | None, dim: int, idx: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.detach().index_select(dim, idx).clone()


def _slice_layer(m: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Module:
    """A new, smaller copy of a Conv2d/Linear/BatchNorm with the given output/input channels."""
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        new = type(m)(len(out_idx), eps=m.eps, momentum=m.momentum, affine=m.affine,
                      track_running_stats=m.track_running_stats)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(m, attr)
            if t is not None:
                getattr(new, attr).data.copy_(t.detach()[out_idx])
        if m.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(m.num_batches_tracked)
        return new
    w = m.weight.detach()
    mask = getattr(m, "weight_mask", None)
    if out_idx is not None:
        w = w.index_select(0, out_idx)
        mask = None if mask is None else mask.index_select(0, out_idx)
    b = _index(m.bias, 0, out_idx) if out_idx is not None else (None if m.bias is None else m.bias.detach().clone())
    if isinstance(m, nn.Conv2d):
        depthwise = _is_depthwise(m)
        if in_idx is not None and not depthwise:
            w = w.index_select(1, in_idx)
            mask = None if mask is None else mask.index_select(1, in_idx)
        out_c = w.shape[0]
        in_c = out_c // (m.out_channels // m.in_channels) if depthwise else w.shape[1]
        new = nn.Conv2d(in_c, out_c, m.kernel_size, m.stride, m.padding, m.dilation,
                        groups=in_c if depthwise else 1, bias=m.bias is not None, padding_mode=m.padding_mode)
    elif isinstance(m, nn.Linear):
        if in_idx is not None:
            w = w.index_select(1, in_idx)
            mask = None if mask is None else mask.index_select(1, in_idx)
        new = nn.Linear(w.shape[1], w.shape[0], bias=m.bias is not None)
    else:
        raise UnsupportedModelError(f"cannot slice a {type(m).__name__}")
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    if mask is not None:
        new.register_buffer("weight_mask", mask.clone(), persistent=False)
    return new


def _columns(keep: torch.Tensor, width: int) -> torch.Tensor:
    """The `width` consecutive indices of every kept channel."""
    return (keep[:, None] * width + torch.arange(width)[None, :]).reshape(-1)


def remove_channels(model: nn.Module, graph: ChannelGraph, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` with only the `keep[space]` channels of each space: real smaller layers.

    Returns a deep copy of the model's own class, or an fx.GraphModule when a view/reshape
    with literal sizes had to be rewritten to a flatten."""
    out_idx: dict[str, torch.Tensor] = {}
    in_idx: dict[str, torch.Tensor] = {}
    for key, idx in keep.items():
        s = graph.spaces.get(key)
        if s is None or not s.prunable:
            raise McuqpError(f"channel space {key!r} is not prunable" + (f" ({s.blocked})" if s else ""))
        idx = torch.as_tensor(idx, dtype=torch.long)
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= s.size or len(set(idx.tolist())) != idx.numel():
            raise McuqpError(f"invalid channel selection for {key!r}")
        idx = torch.sort(idx).values
        for n in s.producers:
            out_idx[n] = idx
        for c in s.channelwise:
            out_idx[c.layer] = _columns(idx, c.mult)
        for c in s.consumers:
            in_idx[c.layer] = _columns(idx, c.width)
    if graph.fixed_reshapes and keep:
        root: nn.Module = copy.deepcopy(graph.traced)
        _rewrite_reshapes(root, graph.fixed_reshapes)
    else:
        root = copy.deepcopy(model)
    for name in sorted(set(out_idx) | set(in_idx)):
        old = root.get_submodule(name)
        _set_module(root, name, _slice_layer(old, out_idx.get(name), in_idx.get(name)).train(old.training))
    return root


def _rewrite_reshapes(gm: fx.GraphModule, names: list[str]) -> None:
    for node in gm.graph.nodes:
        if node.name in names:
            with gm.graph.inserting_after(node):
                flat = gm.graph.call_function(torch.flatten, (node.args[0], 1))
            node.replace_all_uses_with(flat)
            gm.graph.erase_node(node)
    gm.recompile()


@torch.no_grad()
def mask_channels(model: nn.Module, graph: ChannelGraph, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` in which the removed channels are zeroed instead: producer filters and
    biases, batch-norm scale and shift and depthwise filters. Same function as `remove_channels`."""
    root = copy.deepcopy(model)
    for key, idx in keep.items():
        s = graph.spaces[key]
        drop = torch.ones(s.size, dtype=torch.bool)
        drop[torch.as_tensor(idx, dtype=torch.long)] = False
        members = [(n, 1) for n in s.producers] + [(c.layer, c.mult) for c in s.channelwise]
        for n, mult in members:
            m = root.get_submodule(n)
            for attr in ("weight", "bias"):
                t = getattr(m, attr, None)
                if t is not None:
                    t[drop.repeat_interleave(mult)] = 0.0
    return root



def ratio_for(ratio: float | dict[str, float], key: str) -> float:
    return ratio.get(key, 0.0) if isinstance(ratio, dict) else ratio


def prune_by_scores(
    model: nn.Module,
    graph: ChannelGraph,
    ratio: float | dict[str, float],
    score: Callable[[ChannelSpace], torch.Tensor],
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Remove the lowest-scoring `ratio` of the channels of every prunable space (per space key
    when a dict); returns the smaller model and the kept indices by space key."""
    keep = {}
    for s in graph.prunable():
        r = ratio_for(ratio, s.key)
        if r > 0:
            keep[s.key] = keep_top(score(s), keep_count(s.size, r))
    return remove_channels(model, graph, keep), keep
