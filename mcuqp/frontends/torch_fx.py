"""Torch front end: torch.fx symbolic trace -> `FloatGraph` (NHWC, TFLite weight layouts).

Batch norm is folded into the conv (or linear) before it, ReLU/ReLU6 are fused into the
op that produces their input when they are its only consumer, dropout and identities
vanish, and a Flatten of an NCHW map feeding a Linear permutes that Linear's input
columns so that the NHWC flatten computes what torch computes.

Value names are torch.fx node names; a fused op is named after its last fx node (a
conv+bn+relu is named after the relu), so its name is that of the tensor it produces.
"""
from __future__ import annotations

import contextlib
import io

import operator
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from mcuqp.errors import McuqpError, UnsupportedModelError
from mcuqp.frontends.float_graph import FloatGraph, FloatOp
from mcuqp.ir import OpKind, Padding
from mcuqp.ops import registry
from mcuqp.ops.resize_nearest_neighbor import resize_attrs
from mcuqp.ops.strided_slice import StridedSliceAttrs
from mcuqp.ops.transpose import moves_data

SUPPORTED = (
    "Conv2d (groups=1 or depthwise), BatchNorm2d after a conv, BatchNorm1d after a Linear, Linear, "
    "ReLU, ReLU6 / Hardtanh(0, 6), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, mean over (H, W), "
    "Flatten / view / reshape to (N, -1), + - * of two tensors (broadcasting), Softmax(dim=1), Hardswish, LeakyReLU, "
    "Tanh, PReLU, torch.maximum / minimum of tensors sharing a quantization, Dropout, Identity, "
    "BinaryActivation (sign) and other modules naming their op in a `mcuqp_op` attribute, "
    "Conv1d (+ BatchNorm1d), mean over the length, permute / transpose, slicing, split / chunk, "
    "interpolate / Upsample (nearest), unsqueeze / squeeze"
)
# A torch module class may map itself to one elementwise mcuqp op by a class attribute
# `mcuqp_op = "<op kind>"` (mcuqp.compress.binary_act.BinaryActivation: "sign"): the tracer
# keeps it as one call and the importer emits that op.
OP_ATTRIBUTE = "mcuqp_op"

_TORCH_DIR = os.path.dirname(torch.__file__)
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')

_RELU_FNS = {F.relu, torch.relu, torch.relu_, F.relu_}
_ADD_FNS = {operator.add, operator.iadd, torch.add}
_SOFTMAX_FNS = {F.softmax, torch.softmax}
_FLATTEN_FNS = {torch.flatten}
_MEAN_FNS = {torch.mean}
_SUB_FNS = {operator.sub, operator.isub, torch.sub}
_MUL_FNS = {operator.mul, operator.imul, torch.mul}
_DROPOUT_FNS = {F.dropout, F.dropout2d}

_ARGS: dict[object, tuple[str, ...]] = {
    F.relu: ("input", "inplace"),
    F.relu_: ("input",),
    torch.relu: ("input",),
    torch.relu_: ("input",),
    F.relu6: ("input", "inplace"),
    F.hardtanh: ("input", "min_val", "max_val", "inplace"),
    F.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    F.avg_pool2d: ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    F.adaptive_avg_pool2d: ("input", "output_size"),
    F.softmax: ("input", "dim", "_stacklevel", "dtype"),
    torch.softmax: ("input", "dim", "dtype"),
    torch.flatten: ("input", "start_dim", "end_dim"),
    torch.mean: ("input", "dim", "keepdim", "dtype"),
    torch.add: ("input", "other", "alpha"),
    operator.add: ("input", "other"),
    operator.iadd: ("input", "other"),
    F.dropout: ("input", "p", "training", "inplace"),
    F.dropout2d: ("input", "p", "training", "inplace"),
    "relu": ("input",),
    "relu_": ("input",),
    "softmax": ("input", "dim", "dtype"),
    "flatten": ("input", "start_dim", "end_dim"),
    "mean": ("input", "dim", "keepdim", "dtype"),
    "add": ("input", "other", "alpha"),
    "add_": ("input", "other", "alpha"),
    torch.sub: ("input", "other", "alpha"),
    operator.sub: ("input", "other"),
    operator.isub: ("input", "other"),
    torch.mul: ("input", "other"),
    operator.mul: ("input", "other"),
    operator.imul: ("input", "other"),
    torch.tanh: ("input",),
    torch.maximum: ("input", "other"),
    torch.minimum: ("input", "other"),
    "maximum": ("input", "other"),
    "minimum": ("input", "other"),
    "sub": ("input", "other", "alpha"),
    "mul": ("input", "other"),
    "tanh": ("input",),
    operator.getitem: ("input", "index"),
    torch.split: ("tensor", "split_size_or_sections", "dim"),
    torch.chunk: ("input", "chunks", "dim"),
    torch.unsqueeze: ("input", "dim"),
    torch.squeeze: ("input", "dim"),
    F.interpolate: ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"),
    torch.permute: ("input", "dims"),
    torch.transpose: ("input", "dim0", "dim1"),
    "split": ("input", "split_size", "dim"),
    "chunk": ("input", "chunks", "dim"),
    "unsqueeze": ("input", "dim"),
    "squeeze": ("input", "dim"),
    "permute": ("input",),
    "transpose": ("input", "dim0", "dim1"),
}


# ----------------------------------------------------------------------------- helpers


def _pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def _location(node: fx.Node) -> str | None:
    """file:line of the user code that created `node` (last frame outside torch)."""
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    for path, line in reversed(frames):
        if not os.path.abspath(path).startswith(_TORCH_DIR):
            return f"{os.path.basename(path)}:{line}"
    return None


def _type_name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    mod = cls.__module__ or ""
    if mod.startswith("torch.nn.modules"):
        return f"nn.{cls.__name__}"
    if mod.startswith("torch.nn.functional"):
        return f"F.{cls.__name__}"
    return cls.__qualname__


def _target_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        return f"Tensor.{t}"
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__name__", str(t))
    if mod == "torch.nn.functional":
        return f"F.{name}"
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch") or mod == "":
        return f"torch.{name}"
    return f"{mod}.{name}"


def _owner(node: fx.Node) -> str:
    """The module path that owns a functional node ('' for the top module)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


@dataclass
class _Ctx:
    modules: dict[str, nn.Module]
    ops: list[FloatOp] = field(default_factory=list)
    by_name: dict[str, FloatOp] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # fx node name -> value name
    torch_shape: dict[str, tuple[int, ...]] = field(default_factory=dict)  # value -> torch shape (batch 1)
    flatten_chw: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # flatten value -> (C, H, W)
    splits: dict[str, tuple[str, int, list[int]]] = field(default_factory=dict)  # split node -> (x, dim, sizes)
    input_name: str = ""
    root_type: str = "model"

    def where(self, node: fx.Node) -> str:
        loc = _location(node)
        # no user frame: only torch containers (an nn.Sequential) called the layer
        return f" at {loc}" if loc else f" in {self.root_type}"

    def describe(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return f"'{node.target}' ({_type_name(self.modules[node.target])}){self.where(node)}"
        owner = _owner(node)
        inside = f" in '{owner}'" if owner else ""
        return f"'{node.name}' ({_target_name(node)}){inside}{self.where(node)}"

    def fail(self, node: fx.Node, why: str) -> UnsupportedModelError:
        kind = "layer" if node.op == "call_module" else "operation"
        return UnsupportedModelError(f"unsupported {kind} {self.describe(node)}: {why}")

    def value(self, node: fx.Node, arg: object) -> str:
        if not isinstance(arg, fx.Node) or arg.name not in self.alias:
            raise self.fail(node, f"unsupported operand {arg!r} (only tensors from supported layers)")
        return self.alias[arg.name]

    def add(self, op: FloatOp, torch_shape: tuple[int, ...]) -> FloatOp:
        self.ops.append(op)
        self.by_name[op.name] = op
        self.torch_shape[op.name] = torch_shape
        self.alias[op.name] = op.name
        return op

    def rename(self, op: FloatOp, new: str, fx_name: str) -> None:
        """Fold fx node `new` into `op`: the op now produces that node's value."""
        old = op.name
        del self.by_name[old]
        op.name = new
        op.fused.append(fx_name)
        self.by_name[new] = op
        self.torch_shape[new] = self.torch_shape.pop(old)
        for k, v in self.alias.items():
            if v == old:
                self.alias[k] = new
        self.alias[fx_name] = new


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(d) for d in meta.shape)


def _batch1(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, *shape[1:])


def _layout(rank: int) -> list[int]:
    """The torch axis of each graph axis: channels (torch axis 1) last from rank 3 on."""
    return [0, *range(2, rank), 1] if rank >= 3 else list(range(rank))


def _nhwc(torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The graph shape of a torch shape: NCHW -> NHWC, (N, C, L) -> (N, L, C)."""
    return tuple(torch_shape[a] for a in _layout(len(torch_shape)))


def _bind(node: fx.Node, key: object) -> dict[str, object]:
    names = _ARGS[key]
    bound = dict(zip(names, node.args))
    bound.update(node.kwargs)
    return bound


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


# ----------------------------------------------------------------------------- classification


def _is_shape_query(node: fx.Node) -> bool:
    return _shape(node) is None and not isinstance(node.meta.get("tensor_meta"), (tuple, list))


def _is_identity(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)):
            return True
        if isinstance(m, nn.Flatten) and len(_shape(node.args[0]) or ()) == 2 and m.start_dim in (1, -1):
            return True
        return False
    if node.op == "call_function" and node.target in _DROPOUT_FNS:
        return not _bind(node, node.target).get("training", True)
    if node.op == "call_method" and node.target == "contiguous":
        return True
    return False


def _real_users(node: fx.Node, modules: dict[str, nn.Module]) -> list[fx.Node]:
    """Consumers of `node`'s tensor value, looking through identities and ignoring
    shape queries (x.size(0) feeding a view)."""
    out: list[fx.Node] = []
    for u in node.users:
        if u.op != "output" and _is_shape_query(u):
            continue
        if u.op != "output" and _is_identity(u, modules):
            out.extend(_real_users(u, modules))
        else:
            out.append(u)
    return out


def _through_identities(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node:
    """The node that really produces `node`'s value (skipping dropout, identity, ...)."""
    while node.op != "placeholder" and _is_identity(node, modules):
        node = node.args[0] if node.args else node.kwargs["input"]
    return node


def _activation_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """'relu' / 'relu6' if the node is one, else None. Raises for other hardtanh ranges."""
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, nn.ReLU):
            return "relu"
        if isinstance(m, nn.ReLU6):
            return "relu6"
        if isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0):
            return "relu6"
        return None
    if node.op == "call_function":
        if node.target in _RELU_FNS:
            return "relu"
        if node.target is F.relu6:
            return "relu6"
        if node.target is F.hardtanh:
            b = _bind(node, F.hardtanh)
            if (float(b.get("min_val", -1.0)), float(b.get("max_val", 1.0))) == (0.0, 6.0):
                return "relu6"
        return None
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu"
    return None


# ----------------------------------------------------------------------------- layers


def _out_pad(in_size: int, out_size: int, k: int, s: int, d: int, before: int) -> int:
    """Padding after the input implied by the output size (kept for reporting)."""
    return max(0, (out_size - 1) * s + d * (k - 1) + 1 - in_size - before)


def _conv(ctx: _Ctx, node: fx.Node, m: nn.Conv2d) -> None:
    x = ctx.value(node, node.args[0])
    in_shape = ctx.torch_shape[x]
    out_shape = _batch1(_shape(node))
    if m.padding_mode != "zeros":
        raise ctx.fail(node, f"unsupported padding_mode={m.padding_mode!r} (only 'zeros')")
    cin, cout = m.in_channels, m.out_channels
    kh, kw = m.kernel_size
    sh, sw = m.stride
    dh, dw = m.dilation
    if isinstance(m.padding, str):
        if m.padding == "valid":
            ph = pw = 0
        else:  # 'same' (stride 1): torch puts the odd pixel after, like TFLite
            ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    else:
        ph, pw = m.padding
    _, _, h, w = in_shape
    pad = Padding(ph, _out_pad(h, out_shape[2], kh, sh, dh, ph), pw, _out_pad(w, out_shape[3], kw, sw, dw, pw))
    wt = _np(m.weight)
    bias = _np(m.bias) if m.bias is not None else np.zeros(cout)
    common = dict(
        name=node.name,
        inputs=[x],
        shape=_nhwc(out_shape),
        bias=bias,
        stride=(sh, sw),
        padding=pad,
        dilation=(dh, dw),
        source=ctx.describe(node),
        fused=[node.name],
    )
    if m.groups == 1:
        op = FloatOp(OpKind.CONV2D, weight=wt.transpose(0, 2, 3, 1), **common)  # OIHW -> OHWI
    elif m.groups == cin and cout % cin == 0:
        # torch (C*k, 1, KH, KW): output channel c*k + m reads input channel c, as in TFLite.
        op = FloatOp(
            OpKind.DEPTHWISE_CONV2D, weight=wt.transpose(1, 2, 3, 0), depth_multiplier=cout // cin, **common
        )
    else:
        raise ctx.fail(node, f"grouped conv with groups={m.groups} is not supported (only 1 or in_channels)")
    ctx.add(op, out_shape)


def _linear(ctx: _Ctx, node: fx.Node, m: nn.Linear) -> None:
    x = ctx.value(node, node.args[0])
    if len(ctx.torch_shape[x]) != 2:
        raise ctx.fail(node, f"Linear on a {len(ctx.torch_shape[x])}-D tensor is not supported (flatten to (N, features) first)")
    wt = _np(m.weight)
    if x in ctx.flatten_chw:
        c, h, w = ctx.flatten_chw[x]
        # torch flattened (c, h, w); the graph flattens NHWC (h, w, c)
        wt = wt.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(wt.shape[0], -1)
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_features)
    out_shape = _batch1(_shape(node))
    ctx.add(
        FloatOp(
            OpKind.FULLY_CONNECTED,
            node.name,
            [x],
            out_shape,
            weight=wt,
            bias=bias,
            source=ctx.describe(node),
            fused=[node.name],
        ),
        out_shape,
    )


def _behind_view(ctx: _Ctx, op: FloatOp | None) -> FloatOp | None:
    """The op whose value a view (reshape) reads, when the view is its only reader: the
    conv behind a Conv1d's reshape, into which a batch norm or activation folds."""
    if op is None or registry.get(op.kind).alias != "view":
        return None
    inner = ctx.by_name.get(op.inputs[0])
    if inner is None or any(inner.name in o.inputs for o in ctx.ops if o is not op):
        return None
    return inner


def _batchnorm(ctx: _Ctx, node: fx.Node, m: nn.modules.batchnorm._BatchNorm) -> None:
    x = ctx.value(node, node.args[0])
    view = prod = ctx.by_name.get(x)
    is2d = isinstance(m, nn.BatchNorm2d) or len(ctx.torch_shape[x]) == 3  # BatchNorm1d after a Conv1d
    if len(ctx.torch_shape[x]) == 3:
        prod = _behind_view(ctx, prod)
    kinds = (OpKind.CONV2D, OpKind.DEPTHWISE_CONV2D) if is2d else (OpKind.FULLY_CONNECTED,)
    follows = "a Conv2d" if is2d else "a Linear"
    if prod is None or prod.kind not in kinds or prod.activation is not None or len(prod.fused) != 1:
        raise ctx.fail(node, f"batch norm can only be folded into {follows} directly before it")
    src = _through_identities(node.args[0], ctx.modules)
    if len(_real_users(src, ctx.modules)) != 1:
        raise ctx.fail(node, "batch norm cannot be folded: the layer before it has other consumers")
    if m.running_mean is None or m.running_var is None:
        raise ctx.fail(node, "batch norm without running statistics (track_running_stats=False) cannot be folded")
    mean, var = _np(m.running_mean), _np(m.running_var)
    gamma = _np(m.weight) if m.weight is not None else np.ones_like(mean)
    beta = _np(m.bias) if m.bias is not None else np.zeros_like(mean)
    s = gamma / np.sqrt(var + m.eps)
    axis = registry.get(prod.kind).weight_axis
    shape = [1] * prod.weight.ndim
    shape[axis] = -1
    prod.weight = prod.weight * s.reshape(shape)
    prod.bias = (prod.bias - mean) * s + beta
    ctx.rename(view, node.name, node.name)


def _activation(ctx: _Ctx, node: fx.Node, kind: str) -> None:
    x = ctx.value(node, node.args[0] if node.args else node.kwargs.get("input"))
    view = prod = ctx.by_name.get(x)
    if prod is not None and not registry.get(prod.kind).fuses_activation:
        prod = _behind_view(ctx, prod) or prod  # relu(reshape(y)) == reshape(relu(y))
    if prod is None or not registry.get(prod.kind).fuses_activation:
        what = "the model input" if prod is None else f"a {prod.kind.value}"
        raise ctx.fail(
            node, f"{kind} on {what} cannot be fused (only after a conv, linear, add or pool)"
        )
    src = _through_identities(node.args[0] if node.args else node.kwargs["input"], ctx.modules)
    users = _real_users(src, ctx.modules)
    if len(users) != 1:
        others = ", ".join(u.name for u in users if u is not node)
        raise ctx.fail(node, f"{kind} cannot be fused: its input '{x}' is also used by {others}")
    # relu(relu6(x)) == relu6(relu(x)) == relu6(x)
    prod.activation = "relu6" if "relu6" in (kind, prod.activation) else "relu"
    ctx.rename(view, node.name, node.name)


def _pool(ctx: _Ctx, node: fx.Node, kind: OpKind, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
          name: str | None = None) -> FloatOp:
    x = ctx.value(node, node.args[0] if node.args else node.kwargs["input"])
    in_shape = ctx.torch_shape[x]
    if len(in_shape) != 4:
        raise ctx.fail(node, "pooling needs an (N, C, H, W) input")
    _, c, h, w = in_shape
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    out_shape = (1, c, oh, ow)
    pad = Padding(p[0], _out_pad(h, oh, k[0], s[0], 1, p[0]), p[1], _out_pad(w, ow, k[1], s[1], 1, p[1]))
    op = FloatOp(
        kind,
        name or node.name,
        [x],
        _nhwc(out_shape),
        stride=s,
        padding=pad,
        filter=k,
        source=ctx.describe(node),
        fused=[node.name],
    )
    return ctx.add(op, out_shape)


def _check_pool_shape(ctx: _Ctx, node: fx.Node, op: FloatOp) -> None:
    got = _batch1(_shape(node))
    if ctx.torch_shape[op.name][1:] != got[1:]:
        raise ctx.fail(node, "ceil_mode pooling that changes the output size is not supported")


def _max_pool(ctx: _Ctx, node: fx.Node, kernel, stride, padding, dilation, ceil_mode, return_indices) -> None:
    if return_indices:
        raise ctx.fail(node, "max pool with return_indices is not supported")
    if _pair(dilation) != (1, 1):
        raise ctx.fail(node, "dilated max pool is not supported")
    k = _pair(kernel)
    s = _pair(stride) if stride not in (None, [], ()) else k
    op = _pool(ctx, node, OpKind.MAX_POOL2D, k, s, _pair(padding))
    _check_pool_shape(ctx, node, op)


def _avg_pool(ctx: _Ctx, node: fx.Node, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> None:
    if divisor is not None:
        raise ctx.fail(node, "avg pool with divisor_override is not supported")
    p = _pair(padding)
    if p != (0, 0) and count_include_pad:
        raise ctx.fail(
            node,
            "avg pool with padding and count_include_pad=True differs from TFLite (which excludes padding "
            "from the count); set count_include_pad=False",
        )
    k = _pair(kernel)
    s = _pair(stride) if stride not in (None, [], ()) else k
    op = _pool(ctx, node, OpKind.AVG_POOL2D, k, s, p)
    _check_pool_shape(ctx, node, op)


def _adaptive_avg(ctx: _Ctx, node: fx.Node, output_size, name: str | None = None) -> FloatOp:
    x = ctx.value(node, node.args[0])
    in_shape = ctx.torch_shape[x]
    if len(in_shape) != 4:
        raise ctx.fail(node, "pooling needs an (N, C, H, W) input")
    _, _, h, w = in_shape
    oh, ow = _pair(output_size) if output_size is not None else (h, w)
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise ctx.fail(node, f"adaptive avg pool from {h}x{w} to {oh}x{ow} needs divisible sizes")
    k = (h // oh, w // ow)
    return _pool(ctx, node, OpKind.AVG_POOL2D, k, k, (0, 0), name)


def _flatten_to(ctx: _Ctx, node: fx.Node, x: str) -> None:
    """Flatten value `x` to (N, features); `node`'s torch output shape is already checked."""
    in_shape = ctx.torch_shape[x]
    if len(in_shape) == 2:
        ctx.alias[node.name] = x
        return
    feats = int(np.prod(in_shape[1:]))
    ctx.add(
        FloatOp(OpKind.RESHAPE, node.name, [x], (1, feats), source=ctx.describe(node), fused=[node.name]),
        (1, feats),
    )
    if len(in_shape) == 4:
        _, c, h, w = in_shape
        if c > 1 and h * w > 1:
            ctx.flatten_chw[node.name] = (c, h, w)
    else:
        raise ctx.fail(node, f"flatten of a {len(in_shape)}-D tensor is not supported")


def _reshape(ctx: _Ctx, node: fx.Node) -> None:
    x = ctx.value(node, node.args[0])
    in_shape = ctx.torch_shape[x]
    out = _shape(node)
    if len(out) != 2 or out[1] != int(np.prod(in_shape[1:])) or out[0] != _shape(node.args[0])[0]:
        raise ctx.fail(node, f"reshape to {tuple(out)} is not supported (only to (N, -1))")
    _flatten_to(ctx, node, x)


def _mean(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    x = ctx.value(node, b["input"])
    in_shape = ctx.torch_shape[x]
    dims = b.get("dim")
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(in_shape) == 3 and [d % 3 for d in dims if d is not None] == [2] and not b.get("dtype"):
        _mean_1d(ctx, node, x, bool(b.get("keepdim", False)))
        return
    if len(in_shape) != 4 or sorted(d % 4 for d in dims if d is not None) != [2, 3] or b.get("dtype"):
        raise ctx.fail(node, "mean is supported only over the spatial dims (2, 3) of an (N, C, H, W) tensor")
    if b.get("keepdim", False):
        _adaptive_avg(ctx, node, 1)
        return
    pool = _adaptive_avg(ctx, node, 1, name=f"{node.name}.pool")
    c = in_shape[1]
    ctx.add(FloatOp(OpKind.RESHAPE, node.name, [pool.name], (1, c), source=ctx.describe(node), fused=[node.name]), (1, c))


def _binary(kind: OpKind):
    """`+`, `-`, `*` of two tensors (and torch.add / sub / mul, with alpha 1) with torch's
    broadcasting between tensors of one rank."""

    def handler(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
        if _is_shape_query(node):
            return  # x.size(2) * x.size(3): consumed by a view/reshape
        what = kind.value
        if b.get("alpha", 1) != 1:
            raise ctx.fail(node, f"{what} with alpha != 1 is not supported")
        a, c = b.get("input"), b.get("other")
        if not (isinstance(a, fx.Node) and isinstance(c, fx.Node)):
            verb = {"add": "adding", "sub": "subtracting", "mul": "multiplying by"}.get(what, what)
            raise ctx.fail(node, f"{verb} a constant is not supported (only two tensors)")
        xa, xc = ctx.value(node, a), ctx.value(node, c)
        sa, sc = ctx.torch_shape[xa], ctx.torch_shape[xc]
        try:
            shape = tuple(int(d) for d in np.broadcast_shapes(sa, sc))
        except ValueError:
            raise ctx.fail(node, f"{what} of shapes {sa} and {sc}: they do not broadcast") from None
        if len(sa) != len(sc):
            raise ctx.fail(node, f"{what} with broadcasting of tensors of ranks {len(sa)} and {len(sc)} is not "
                                 f"supported (give both the same rank)")
        ctx.add(FloatOp(kind, node.name, [xa, xc], _nhwc(shape), source=ctx.describe(node), fused=[node.name]), shape)

    return handler


_add = _binary(OpKind.ADD)


def _softmax(ctx: _Ctx, node: fx.Node, dim: object) -> None:
    x = ctx.value(node, node.args[0] if node.args else node.kwargs["input"])
    shape = ctx.torch_shape[x]
    if len(shape) != 2 or dim not in (1, -1):
        raise ctx.fail(node, "softmax is supported only over dim 1 of an (N, classes) tensor")
    ctx.add(FloatOp(OpKind.SOFTMAX, node.name, [x], shape, source=ctx.describe(node), fused=[node.name]), shape)


def _mapped_module(ctx: _Ctx, node: fx.Node, m: nn.Module) -> None:
    """A module that names its elementwise op (`mcuqp_op`), e.g. BinaryActivation -> sign."""
    kind = OpKind(getattr(m, OP_ATTRIBUTE))
    registry.get(kind)  # an unknown op name is the module author's error, reported here
    x = ctx.value(node, node.args[0] if node.args else next(iter(node.kwargs.values()), None))
    shape = ctx.torch_shape[x]
    ctx.add(FloatOp(kind, node.name, [x], _nhwc(shape), source=ctx.describe(node), fused=[node.name]), shape)


def _unary(kind: OpKind):
    """A torch module that is one parameterless elementwise op of the registry (nn.Hardswish)."""

    def handler(ctx: _Ctx, node: fx.Node, m: nn.Module) -> None:
        x = ctx.value(node, node.args[0] if node.args else next(iter(node.kwargs.values()), None))
        shape = ctx.torch_shape[x]
        ctx.add(FloatOp(kind, node.name, [x], _nhwc(shape), source=ctx.describe(node), fused=[node.name]), shape)

    return handler


def _leaky_relu(ctx: _Ctx, node: fx.Node, m: nn.LeakyReLU) -> None:
    if not m.negative_slope >= 0:
        raise ctx.fail(node, f"LeakyReLU negative_slope {m.negative_slope} must be >= 0")
    x = ctx.value(node, node.args[0] if node.args else next(iter(node.kwargs.values()), None))
    shape = ctx.torch_shape[x]
    ctx.add(FloatOp(OpKind.LEAKY_RELU, node.name, [x], _nhwc(shape), alpha=float(m.negative_slope),
                    source=ctx.describe(node), fused=[node.name]), shape)


def _prelu(ctx: _Ctx, node: fx.Node, m: nn.PReLU) -> None:
    x = ctx.value(node, node.args[0] if node.args else next(iter(node.kwargs.values()), None))
    shape = ctx.torch_shape[x]
    alpha = _np(m.weight).astype(np.float32).reshape(-1)
    if alpha.size > 1 and len(shape) not in (2, 4):
        raise ctx.fail(node, f"PReLU with {alpha.size} parameters on a rank-{len(shape)} tensor is not supported "
                             "(rank 2 or 4)")
    ctx.add(FloatOp(OpKind.PRELU, node.name, [x], _nhwc(shape), weight=alpha, source=ctx.describe(node),
                    fused=[node.name]), shape)


# ------------------------------------------------------ Conv1d and data movement (rank 2-5)


def _op(ctx: _Ctx, node: fx.Node, kind: OpKind, name: str, x: str, torch_shape: tuple[int, ...],
        **params: object) -> FloatOp:
    return ctx.add(FloatOp(kind, name, [x], _nhwc(torch_shape), source=ctx.describe(node), fused=[node.name],
                           params=dict(params)), torch_shape)


def _transpose_or_view(ctx: _Ctx, node: fx.Node, name: str, x: str, perm: list[int],
                       torch_shape: tuple[int, ...]) -> FloatOp:
    """A graph-layout transpose of value `x` by `perm`; a view when only size-1 axes move."""
    if not moves_data(_nhwc(ctx.torch_shape[x]), tuple(perm)):
        return _op(ctx, node, OpKind.RESHAPE, name, x, torch_shape)
    return _op(ctx, node, OpKind.TRANSPOSE, name, x, torch_shape, perm=tuple(perm))


def _relayout(ctx: _Ctx, node: fx.Node, x: str, out: tuple[int, ...]) -> None:
    """A torch reshape (unsqueeze, squeeze) of `x` to torch shape `out`: a view when the
    channels-last order of the values does not change, else transposes into torch order
    and back around it."""
    src = ctx.torch_shape[x]
    if out == src:
        ctx.alias[node.name] = x
        return
    order = np.arange(int(np.prod(src))).reshape(src)
    before = np.transpose(order, _layout(len(src))).reshape(-1)
    after = np.transpose(order.reshape(out), _layout(len(out))).reshape(-1)
    if np.array_equal(before, after):
        _op(ctx, node, OpKind.RESHAPE, node.name, x, out)
        return
    to_torch = list(np.argsort(_layout(len(src))))
    t = _transpose_or_view(ctx, node, f"{node.name}.torch_order", x, to_torch, src)
    t.shape = src  # values in torch order
    r = _op(ctx, node, OpKind.RESHAPE, f"{node.name}.reshape", t.name, out)
    r.shape = out
    ctx.torch_shape[r.name] = tuple(np.array(out)[to_torch_inverse(len(out))])
    _transpose_or_view(ctx, node, node.name, r.name, _layout(len(out)), out)


def to_torch_inverse(rank: int) -> list[int]:
    """The torch shape whose graph shape is a given torch-order shape (for intermediate values)."""
    return list(np.argsort(_layout(rank)))


def _unsqueeze(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    _relayout(ctx, node, ctx.value(node, b["input"]), _batch1(_shape(node)))


def _permute(ctx: _Ctx, node: fx.Node, dims: list[int]) -> None:
    x = ctx.value(node, node.args[0] if node.args else node.kwargs["input"])
    src = ctx.torch_shape[x]
    r = len(src)
    p = [int(d) % r for d in dims]
    if sorted(p) != list(range(r)) or p[0] != 0:
        raise ctx.fail(node, f"permute {tuple(dims)} must keep the batch dimension first")
    out = tuple(src[d] for d in p)
    graph_of_torch = list(np.argsort(_layout(r)))  # graph axis holding each torch axis
    perm = [int(graph_of_torch[p[a]]) for a in _layout(r)]
    _transpose_or_view(ctx, node, node.name, x, perm, out)


def _permute_call(ctx: _Ctx, node: fx.Node) -> None:
    dims = node.args[1:] if node.op == "call_method" else node.args[1:2]
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    if not dims and "dims" in node.kwargs:
        dims = node.kwargs["dims"]
    _permute(ctx, node, list(dims))


def _transpose_call(ctx: _Ctx, node: fx.Node) -> None:
    rank = len(ctx.torch_shape[ctx.value(node, node.args[0])])
    d0, d1 = (int(v) % rank for v in node.args[1:3])
    p = list(range(rank))
    p[d0], p[d1] = p[d1], p[d0]
    _permute(ctx, node, p)


def _slice_value(ctx: _Ctx, node: fx.Node, x: str, begin: list[int], steps: list[int], sizes: list[int]) -> None:
    """Slice value `x` (torch-axis begin / step / size) as a graph-layout strided slice."""
    src = ctx.torch_shape[x]
    if sizes[0] != src[0] or min(sizes) < 1:
        raise ctx.fail(node, f"slicing must keep the batch and every dimension non-empty, got {tuple(sizes)}")
    if list(sizes) == list(src):
        ctx.alias[node.name] = x
        return
    lay = _layout(len(src))
    attrs = StridedSliceAttrs(tuple(begin[a] for a in lay), tuple(steps[a] for a in lay), tuple(sizes[a] for a in lay))
    _op(ctx, node, OpKind.STRIDED_SLICE, node.name, x, tuple(sizes), slice=attrs)


def _getitem(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    if _is_shape_query(node):
        return  # x.shape[0]: consumed by a view / reshape
    source, index = node.args
    if isinstance(source, fx.Node) and source.name in ctx.splits:  # one part of torch.split / chunk
        x, dim, sizes = ctx.splits[source.name]
        src = ctx.torch_shape[x]
        begin = [0] * len(src)
        begin[dim] = sum(sizes[:index])
        size = list(src)
        size[dim] = sizes[index]
        _slice_value(ctx, node, x, begin, [1] * len(src), size)
        return
    x = ctx.value(node, source)
    src = ctx.torch_shape[x]
    items = list(index) if isinstance(index, tuple) else [index]
    if items.count(Ellipsis) > 1 or not all(isinstance(i, slice) or i is Ellipsis for i in items):
        raise ctx.fail(node, "indexing is supported with slices only (no integer, None or tensor index)")
    if Ellipsis in items:
        k = items.index(Ellipsis)
        items[k:k + 1] = [slice(None)] * (len(src) - len(items) + 1)
    items += [slice(None)] * (len(src) - len(items))
    begin, steps, sizes = [], [], []
    for n, sl in zip(src, items):
        start, stop, step = sl.indices(n)
        begin.append(start)
        steps.append(step)
        sizes.append(len(range(start, stop, step)))
    _slice_value(ctx, node, x, begin, steps, sizes)


def _split(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    x = ctx.value(node, b["input"] if "input" in b else b["tensor"])
    rank = len(ctx.torch_shape[x])
    dim = int(b.get("dim", 0)) % rank
    meta = node.meta.get("tensor_meta") or ()
    sizes = [int(m.shape[dim]) for m in meta]
    if dim == 0 or not sizes:
        raise ctx.fail(node, "split / chunk along the batch dimension is not supported")
    ctx.splits[node.name] = (x, dim, sizes)


def _interpolate(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    x = ctx.value(node, b["input"])
    src, out = ctx.torch_shape[x], _batch1(_shape(node))
    if b.get("mode", "nearest") != "nearest" or len(src) != 4 or b.get("antialias"):
        raise ctx.fail(node, "interpolation is supported with mode='nearest' on (N, C, H, W) tensors")
    attrs = resize_attrs(src[2:], out[2:], False, False)
    scale = b.get("scale_factor")
    if scale is not None and not b.get("recompute_scale_factor"):
        # torch reads input index floor(i / scale_factor); TFLite floor(i * in / out)
        sh, sw = _pair(scale) if not isinstance(scale, float) else (scale, scale)
        torch_maps = tuple(tuple(min(int(np.floor(np.float32(i) * np.float32(1.0 / f))), n - 1) for i in range(o))
                           for f, n, o in ((sh, src[2], out[2]), (sw, src[3], out[3])))
        if torch_maps != (attrs.y_map, attrs.x_map):
            raise ctx.fail(node, f"nearest resize by {scale} picks other pixels than TFLite's; give `size`")
    _op(ctx, node, OpKind.RESIZE_NEAREST_NEIGHBOR, node.name, x, out, resize=attrs)


def _conv1d(ctx: _Ctx, node: fx.Node, m: nn.Conv1d) -> None:
    """nn.Conv1d as TFLite converters write it: (1, L, C) -> view (1, 1, L, C) -> conv 2D with a
    1 x k filter -> view (1, L', C'). A following BatchNorm1d or ReLU folds into the conv."""
    x = ctx.value(node, node.args[0])
    _, cin, length = ctx.torch_shape[x]
    _, cout, out_len = _batch1(_shape(node))
    if m.padding_mode != "zeros":
        raise ctx.fail(node, f"unsupported padding_mode={m.padding_mode!r} (only 'zeros')")
    (k,), (s,), (d,) = m.kernel_size, m.stride, m.dilation
    if isinstance(m.padding, str):
        p = 0 if m.padding == "valid" else d * (k - 1) // 2
    else:
        (p,) = m.padding
    view = _op(ctx, node, OpKind.RESHAPE, f"{node.name}.in", x, (1, cin, 1, length))
    wt = _np(m.weight)[:, :, None, :]  # (O, I/g, 1, k)
    bias = _np(m.bias) if m.bias is not None else np.zeros(cout)
    common = dict(name=f"{node.name}.conv", inputs=[view.name], shape=(1, 1, out_len, cout), bias=bias,
                  stride=(1, s), padding=Padding(0, 0, p, _out_pad(length, out_len, k, s, d, p)), dilation=(1, d),
                  source=ctx.describe(node), fused=[node.name])
    if m.groups == 1:
        conv = FloatOp(OpKind.CONV2D, weight=wt.transpose(0, 2, 3, 1), **common)
    elif m.groups == cin and cout % cin == 0:
        conv = FloatOp(OpKind.DEPTHWISE_CONV2D, weight=wt.transpose(1, 2, 3, 0), depth_multiplier=cout // cin,
                       **common)
    else:
        raise ctx.fail(node, f"grouped conv with groups={m.groups} is not supported (only 1 or in_channels)")
    ctx.add(conv, (1, cout, 1, out_len))
    _op(ctx, node, OpKind.RESHAPE, node.name, conv.name, (1, cout, out_len))


def _mean_1d(ctx: _Ctx, node: fx.Node, x: str, keepdim: bool) -> None:
    """The mean over L of (N, C, L) (after a Conv1d): an average pool over the length."""
    _, c, length = ctx.torch_shape[x]
    view = _op(ctx, node, OpKind.RESHAPE, f"{node.name}.in", x, (1, c, 1, length))
    pool = ctx.add(FloatOp(OpKind.AVG_POOL2D, f"{node.name}.pool", [view.name], (1, 1, 1, c), stride=(1, length),
                           filter=(1, length), source=ctx.describe(node), fused=[node.name]), (1, c, 1, 1))
    _op(ctx, node, OpKind.RESHAPE, node.name, pool.name, (1, c, 1) if keepdim else (1, c))


# ----------------------------------------------------------------------------- dispatch


def _flatten_module(ctx: _Ctx, node: fx.Node, m: nn.Flatten) -> None:
    if m.start_dim != 1 or m.end_dim != -1:
        raise ctx.fail(node, "Flatten is supported only with start_dim=1, end_dim=-1")
    _flatten_to(ctx, node, ctx.value(node, node.args[0]))


# torch layer class -> its importer (first match wins)
_MODULES: tuple[tuple[type | tuple[type, ...], object], ...] = (
    (nn.Conv2d, _conv),
    (nn.Linear, _linear),
    ((nn.BatchNorm2d, nn.BatchNorm1d), _batchnorm),
    (nn.MaxPool2d, lambda ctx, node, m: _max_pool(ctx, node, m.kernel_size, m.stride, m.padding, m.dilation,
                                                  m.ceil_mode, m.return_indices)),
    (nn.AvgPool2d, lambda ctx, node, m: _avg_pool(ctx, node, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                                  m.count_include_pad, m.divisor_override)),
    (nn.AdaptiveAvgPool2d, lambda ctx, node, m: _adaptive_avg(ctx, node, m.output_size)),
    (nn.Flatten, _flatten_module),
    (nn.Softmax, lambda ctx, node, m: _softmax(ctx, node, m.dim)),
    (nn.Hardswish, _unary(OpKind.HARD_SWISH)),
    (nn.LeakyReLU, _leaky_relu),
    (nn.Tanh, _unary(OpKind.TANH)),
    (nn.PReLU, lambda ctx, node, m: _prelu(ctx, node, m)),
    (nn.Conv1d, _conv1d),
    (nn.Upsample, lambda ctx, node, m: _interpolate(ctx, node, {
        "input": node.args[0], "mode": m.mode, "scale_factor": m.scale_factor,
        "recompute_scale_factor": m.recompute_scale_factor})),
)


def _call_module(ctx: _Ctx, node: fx.Node) -> bool:
    m = ctx.modules[node.target]
    if getattr(m, OP_ATTRIBUTE, None) is not None:
        _mapped_module(ctx, node, m)
        return True
    for cls, handler in _MODULES:
        if isinstance(m, cls):
            handler(ctx, node, m)
            return True
    return False


def _flatten_call(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    if b.get("start_dim", 0) != 1 or b.get("end_dim", -1) != -1:
        raise ctx.fail(node, "flatten is supported only with start_dim=1, end_dim=-1")
    _flatten_to(ctx, node, ctx.value(node, b["input"]))


def _softmax_call(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    if b.get("dtype") is not None:
        raise ctx.fail(node, "softmax with a dtype is not supported")
    _softmax(ctx, node, b.get("dim"))


def _max_pool_call(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    _max_pool(ctx, node, b["kernel_size"], b.get("stride"), b.get("padding", 0), b.get("dilation", 1),
              b.get("ceil_mode", False), b.get("return_indices", False))


def _avg_pool_call(ctx: _Ctx, node: fx.Node, b: dict[str, object]) -> None:
    _avg_pool(ctx, node, b["kernel_size"], b.get("stride"), b.get("padding", 0), b.get("ceil_mode", False),
              b.get("count_include_pad", True), b.get("divisor_override"))


# torch function -> its importer, given the bound arguments
_FUNCTIONS: dict[object, object] = {
    F.max_pool2d: _max_pool_call,
    F.avg_pool2d: _avg_pool_call,
    F.adaptive_avg_pool2d: lambda ctx, node, b: _adaptive_avg(ctx, node, b["output_size"]),
    **{f: _add for f in _ADD_FNS},
    **{f: _softmax_call for f in _SOFTMAX_FNS},
    **{f: _flatten_call for f in _FLATTEN_FNS},
    **{f: _mean for f in _MEAN_FNS},
    **{f: _binary(OpKind.SUB) for f in _SUB_FNS},
    **{f: _binary(OpKind.MUL) for f in _MUL_FNS},
    torch.tanh: lambda ctx, node, b: _unary(OpKind.TANH)(ctx, node, None),
    torch.maximum: _binary(OpKind.MAXIMUM),
    torch.minimum: _binary(OpKind.MINIMUM),
    operator.getitem: _getitem,
    torch.split: _split,
    torch.chunk: _split,
    torch.unsqueeze: _unsqueeze,
    torch.squeeze: _unsqueeze,
    F.interpolate: _interpolate,
    torch.permute: lambda ctx, node, b: _permute_call(ctx, node),
    torch.transpose: lambda ctx, node, b: _transpose_call(ctx, node),
}
# Tensor method name -> its importer, given the bound arguments
_METHODS: dict[str, object] = {
    "flatten": _flatten_call,
    "mean": _mean,
    "add": _add,
    "add_": _add,
    "softmax": lambda ctx, node, b: _softmax(ctx, node, b.get("dim")),
    "sub": _binary(OpKind.SUB),
    "mul": _binary(OpKind.MUL),
    "tanh": lambda ctx, node, b: _unary(OpKind.TANH)(ctx, node, None),
    "maximum": _binary(OpKind.MAXIMUM),
    "minimum": _binary(OpKind.MINIMUM),
    "split": _split,
    "chunk": _split,
    "unsqueeze": _unsqueeze,
    "squeeze": _unsqueeze,
    "permute": lambda ctx, node, b: _permute_call(ctx, node),
    "transpose": lambda ctx, node, b: _transpose_call(ctx, node),
}


def _call_function(ctx: _Ctx, node: fx.Node) -> bool:
    t = node.target
    if t is torch.reshape:
        _reshape(ctx, node)
        return True
    handler = _FUNCTIONS.get(t)
    if handler is None:
        return False
    handler(ctx, node, _bind(node, t))
    return True


def _call_method(ctx: _Ctx, node: fx.Node) -> bool:
    t = node.target
    if t in ("view", "reshape"):
        _reshape(ctx, node)
        return True
    handler = _METHODS.get(t)
    if handler is None:
        return False
    handler(ctx, node, _bind(node, t))
    return True


def _convert_node(ctx: _Ctx, node: fx.Node) -> None:
    if _is_identity(node, ctx.modules):
        ctx.alias[node.name] = ctx.value(node, node.args[0] if node.args else node.kwargs["input"])
        return
    act = _activation_kind(node, ctx.modules)
    if act is not None:
        _activation(ctx, node, act)
        return
    handled = {
        "call_module": _call_module,
        "call_function": _call_function,
        "call_method": _call_method,
    }.get(node.op, lambda c, n: False)(ctx, node)
    if handled:
        return
    if _is_shape_query(node) and node.op != "get_attr":
        return  # x.size(0), x.shape[0]: consumed by a view/reshape
    raise ctx.fail(node, f"supported are {SUPPORTED}")


# ----------------------------------------------------------------------------- entry point


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with modules that name their mcuqp op (`mcuqp_op`) kept as one call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return getattr(m, OP_ATTRIBUTE, None) is not None or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module)
    except Exception as e:  # noqa: BLE001 - any tracing failure is a model mcuqp cannot read
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedModelError(
            f"cannot trace {type(module).__name__} with torch.fx ({msg}); the forward must not branch on "
            "tensor values"
        ) from None
    gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _propagate_shapes(gm: fx.GraphModule, example: torch.Tensor, name: str) -> None:
    try:
        # ShapeProp prints the failing node's traceback itself before raising.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(example)
    except Exception as e:  # noqa: BLE001 - wrong example shape for the model
        root = e.__cause__ or e
        msg = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
        raise McuqpError(
            f"{name} does not run on an input of shape {tuple(example.shape)}: {msg}"
        ) from None


def _check_flattens(ctx: _Ctx, output: str) -> None:
    """A flatten of a multi-channel spatial map is only equivalent to torch's when a
    Linear reads it (its columns were permuted)."""
    for name, (c, h, w) in ctx.flatten_chw.items():
        readers = [op for op in ctx.ops if name in op.inputs]
        bad = [op for op in readers if op.kind != OpKind.FULLY_CONNECTED]
        if bad or name == output:
            who = bad[0].source if bad else "the model output"
            raise UnsupportedModelError(
                f"flatten {ctx.by_name[name].source} of a {c}x{h}x{w} map feeds {who}: mcuqp keeps maps "
                "channels-last, so such a flatten must feed Linear layers only"
            )


def import_torch(module: nn.Module, example_input: torch.Tensor | np.ndarray) -> FloatGraph:
    """Trace `module` with torch.fx and lower it to a float graph.

    `example_input` (batch-first, NCHW or (N, features)) fixes the input shape."""
    if not isinstance(module, nn.Module):
        raise McuqpError(f"expected a torch nn.Module, got {type(module).__name__}")
    example = torch.as_tensor(np.asarray(example_input) if not isinstance(example_input, torch.Tensor) else example_input)
    example = example.detach().to(torch.float32)
    if example.ndim not in (2, 3, 4):
        raise McuqpError(
            f"example input must be (N, C, H, W), (N, C, L) or (N, features); got shape {tuple(example.shape)}"
        )
    was_training = module.training
    module.eval()  # trace and run in inference mode: dropout off, batch norm on running stats
    try:
        gm = _trace(module)
        _propagate_shapes(gm, example, type(module).__name__)
        return _lower(gm, type(module).__name__, _type_name(module))
    finally:
        module.train(was_training)


def _lower(gm: fx.GraphModule, name: str, root_type: str) -> FloatGraph:
    ctx = _Ctx(dict(gm.named_modules()), root_type=root_type)
    output: str | None = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if ctx.input_name:
                raise UnsupportedModelError(f"{name}.forward takes several inputs; mcuqp supports one")
            shape = _shape(node)
            ctx.input_name = node.name
            ctx.alias[node.name] = node.name
            ctx.torch_shape[node.name] = _batch1(shape)
        elif node.op == "output":
            res = node.args[0]
            if not isinstance(res, fx.Node):
                raise UnsupportedModelError(f"{name}.forward returns {type(res).__name__}; mcuqp supports one tensor")
            output = ctx.value(node, res)
        elif node.op == "get_attr":
            raise UnsupportedModelError(
                f"{name} uses parameter or buffer '{node.target}' directly{ctx.where(node)}: "
                f"only parameters of supported layers are allowed ({SUPPORTED})"
            )
        else:
            _convert_node(ctx, node)
    if output is None or output == ctx.input_name:
        raise UnsupportedModelError(f"{name} has no supported layers between its input and output")
    _check_flattens(ctx, output)
    for op in ctx.ops:
        op.weight = None if op.weight is None else op.weight.astype(np.float32)
        op.bias = None if op.bias is None else op.bias.astype(np.float32)
    return FloatGraph(name, ctx.input_name, _nhwc(ctx.torch_shape[ctx.input_name]), ctx.ops, output)

