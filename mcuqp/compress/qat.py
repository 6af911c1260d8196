"""Int8 quantization-aware training (Jacob et al., 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference").

`prepare_qat` rewrites a float module (torch.fx) into a training graph that simulates the int8
model mcuqp will compile:
- every Conv2d/Linear (with the batch norm after it folded in) uses fake-quantized weights:
  per-channel symmetric [-127, 127] (or a low-bit kind from `lowbit.py`), straight-through
  gradients;
- batch norm is folded during training as in the paper's Fig. C.8: a float conv gives the
  batch mean and variance, the weights are scaled by gamma / sigma_B *before* fake
  quantization and the bias becomes beta - gamma * mu_B / sigma_B; after `freeze_bn` (or in
  eval) the running statistics are used, which is exactly the inference fold;
- an activation fake-quant (EMA min/max observer, asymmetric int8) follows every value the
  int8 graph quantizes: the input and the output of every conv/linear/add op after its fused
  ReLU — the op list of mcuqp's own torch front end, so the simulated and compiled graphs
  agree. Pool and reshape outputs share their input's quantization and get none.
The fake-quant arithmetic is the PTQ's (`ptq.activation_qparams`, round half away from zero).

`strip_qat` returns a plain float module (batch norm gone, weights = the fake-quantized folded
weights, so per-channel int8 PTQ reproduces them exactly) and `qat_ranges` the learnt
activation ranges keyed by that module's value names, for `ptq.quantize(..., ranges_override=)`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from mcuqp.compress.binary_act import BinaryActivation, sign_ste
from mcuqp.compress.lowbit import KINDS, quantize_weight, resolve_kinds
from mcuqp.compress.masks import chain, finetune, get_mask
from mcuqp.compress.ste import ste
from mcuqp.compress.train import FitConfig
from mcuqp.errors import McuqpError
from mcuqp.frontends.torch_fx import import_torch
from mcuqp.ops import registry
from mcuqp.quant.ptq import activation_qparams, calibrated

QMIN, QMAX = -128, 127


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """quant.fixedpoint.round_half_away on torch tensors (autograd-free fake quantization)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of a range, as the PTQ derives them (an all-zero range becomes [0, 1])."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0.0:
        hi = lo + 1.0
    scale, zp = activation_qparams(lo, hi)
    return float(scale), int(zp)


def fake_quantize(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """Quantize-dequantize: (clamp(round(x / scale) + zp, -128, 127) - zp) * scale, with the
    straight-through gradient inside the representable range and zero outside."""
    s = torch.tensor(scale, dtype=torch.float32)
    with torch.no_grad():
        q = torch.clamp(_round_half_away(x / s) + zero_point, QMIN, QMAX)
        y = (q - zero_point) * s
        inside = (x >= (QMIN - zero_point) * s) & (x <= (QMAX - zero_point) * s)
    return ste(x, y, inside)


class ActFakeQuant(nn.Module):
    """EMA min/max observer + asymmetric int8 fake quantization of one activation."""

    def __init__(self, value: str, ema_decay: float = 0.99) -> None:
        super().__init__()
        self.value = value  # the value name in the float module's trace
        self.ema_decay = ema_decay
        self.observe = True
        self.quantize = True
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    def range(self) -> tuple[float, float]:
        return float(self.lo), float(self.hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observe:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                if not bool(self.initialized):
                    self.lo.copy_(lo)
                    self.hi.copy_(hi)
                    self.initialized.fill_(True)
                else:
                    self.lo.mul_(self.ema_decay).add_((1 - self.ema_decay) * lo)
                    self.hi.mul_(self.ema_decay).add_((1 - self.ema_decay) * hi)
        if not self.quantize or not bool(self.initialized):
            return x
        return fake_quantize(x, *qparams(*self.range()))


class QatLayer(nn.Module):
    """A Conv2d or Linear with its following batch norm folded in and fake-quantized weights."""

    def __init__(self, layer: nn.Module, bn: nn.Module | None, kind: str | None, binary_input: bool = False) -> None:
        super().__init__()
        if kind is not None and kind not in KINDS:
            raise McuqpError(f"unknown weight quantization {kind!r}: choose one of {', '.join(KINDS)}")
        self.layer = layer
        self.bn = bn
        self.kind = kind
        self.binary_input = binary_input
        self.bn_frozen = False

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        m = self.layer
        if isinstance(m, nn.Linear):
            return F.linear(x, w, b)
        if m.padding_mode != "zeros":
            raise McuqpError(f"padding_mode={m.padding_mode!r} is not supported")
        return F.conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups)

    def _channel(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, *([1] * (self.layer.weight.dim() - 1)))

    def folded(self, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(fake-quantized folded weight, folded bias); batch statistics of `x` in training."""
        m = self.layer
        w = m.weight
        mask = get_mask(m)
        bias = m.bias
        if self.bn is None:
            return self._quantize(w, None, mask), bias
        bn = self.bn
        if x is not None and self.training and not self.bn_frozen:
            y0 = self._op(x, w, bias)  # float pass for the batch statistics (Fig. C.8)
            dims = [0] + list(range(2, y0.dim()))
            mean = y0.mean(dims)
            var = y0.var(dims, unbiased=False)
            with torch.no_grad():
                n = y0.numel() / y0.shape[1]
                momentum = bn.momentum if bn.momentum is not None else 0.1
                bn.running_mean.mul_(1 - momentum).add_(momentum * mean)
                bn.running_var.mul_(1 - momentum).add_(momentum * var * n / max(n - 1, 1))
                bn.num_batches_tracked += 1
        else:
            mean, var = bn.running_mean, bn.running_var
        gamma = bn.weight if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
        k = gamma / torch.sqrt(var + bn.eps)
        b = beta + ((bias if bias is not None else 0.0) - mean) * k
        return self._quantize(w, k, mask), b

    def _quantize(self, w: torch.Tensor, k: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        if self.kind in ("binary", "ternary"):
            # quantize the latent weight, then scale per channel: the levels and the STE clip
            # region are those of W (scale-equivariant per channel, so Q(k W) = k Q(W))
            q = quantize_weight(w, self.kind, mask)
            return q if k is None else q * self._channel(k)
        wf = w if k is None else w * self._channel(k)
        if self.kind is None:
            return wf if mask is None else wf * mask
        return quantize_weight(wf, self.kind, mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.binary_input:
            x = sign_ste(x)
        w, b = self.folded(x)
        return self._op(x, w, b)

    @torch.no_grad()
    def to_float(self) -> nn.Module:
        """The plain layer that computes this one in eval mode (running statistics)."""
        was = self.training
        self.eval()
        w, b = self.folded()
        self.train(was)
        m = self.layer
        if isinstance(m, nn.Linear):
            new = nn.Linear(m.in_features, m.out_features, bias=b is not None)
        else:
            new = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                            m.groups, bias=b is not None)
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
        return new


def prepare_qat(
    model: nn.Module,
    example: torch.Tensor | np.ndarray,
    *,
    weight: str | None = "int8",
    per_layer: dict[str, str | None] | None = None,
    binary_act: Iterable[str] = (),
    ema_decay: float = 0.99,
) -> fx.GraphModule:
    """A QAT training graph of (a copy of) `model`; `example` is one input batch.

    weight: "int8" (default), "int4", "int2", "ternary", "binary" or None (float) for every
    Conv2d/Linear; `per_layer` overrides it by layer name. `binary_act` names layers whose
    input is binarized (sign, straight-through; compiled to the int8 SIGN op). Pruning masks on
    the layers are kept."""
    example = torch.as_tensor(np.asarray(example) if not isinstance(example, torch.Tensor) else example)[:1].float()
    model = copy.deepcopy(model).eval()
    fg = import_torch(model, example)  # the ops the int8 graph will have; also checks compilability
    kinds = resolve_kinds(model, weight, per_layer)
    binary_act = set(binary_act)
    layer_names = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if binary_act - layer_names:
        bad = sorted(binary_act - layer_names)[0]
        raise McuqpError(f"binary activations apply to Conv2d/Linear layers; {bad!r} is not one")
    gm = fx.symbolic_trace(model)
    nodes = {n.name: n for n in gm.graph.nodes}
    modules = dict(gm.named_modules())
    quant_points = [fg.input_name] + [
        op.name for op in fg.ops if calibrated(op)
    ]
    for name in quant_points:
        if name not in nodes:
            raise McuqpError(f"internal: value {name!r} of the front end is not a node of the trace")
        node = nodes[name]
        fq_name = f"fq_{name}"
        gm.add_submodule(fq_name, ActFakeQuant(name, ema_decay))
        with gm.graph.inserting_after(node):
            fq = gm.graph.call_module(fq_name, (node,))
        node.replace_all_uses_with(fq, delete_user_cb=lambda u: u is not fq)
    for op in fg.ops:
        if registry.get(op.kind).weight_axis is None:
            continue
        layer_node = nodes[op.fused[0]]
        bn_node = next(
            (nodes[f] for f in op.fused[1:] if nodes[f].op == "call_module"
             and isinstance(modules[nodes[f].target], (nn.BatchNorm1d, nn.BatchNorm2d))),
            None,
        )
        target = str(layer_node.target)
        bn = None
        if bn_node is not None:
            bn = modules[bn_node.target]
            bn_node.replace_all_uses_with(layer_node)
            gm.graph.erase_node(bn_node)
        # the wrapper takes the layer's place, so parameter paths stay recognisable
        gm.add_submodule(target, QatLayer(modules[target], bn, kinds.get(target), target in binary_act))
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


def qat_layers(qat_model: nn.Module) -> dict[str, QatLayer]:
    return {n: m for n, m in qat_model.named_modules() if isinstance(m, QatLayer)}


def freeze_bn(qat_model: nn.Module) -> None:
    """Switch batch-norm folding from batch statistics to the running averages for good."""
    for m in qat_layers(qat_model).values():
        m.bn_frozen = True


@torch.no_grad()
def clip_binary_latent(qat_model: nn.Module, step: int = 0) -> None:
    for m in qat_layers(qat_model).values():
        if m.kind == "binary":
            m.layer.weight.clamp_(-1.0, 1.0)


def train_qat(
    qat_model: nn.Module, x: np.ndarray, y: np.ndarray, config: FitConfig, *, freeze_bn_fraction: float = 0.5
) -> nn.Module:
    """Fine-tune in place (masks kept, binary latents clipped); batch-norm statistics are frozen
    after `freeze_bn_fraction` of the steps, as the paper recommends."""
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    freeze_at = int(freeze_bn_fraction * steps)

    def maybe_freeze(model: nn.Module, step: int) -> None:
        if step + 1 == freeze_at:
            freeze_bn(model)

    if freeze_at <= 0:
        freeze_bn(qat_model)
    return finetune(qat_model, x, y, config, after_step=chain(clip_binary_latent, maybe_freeze), description="QAT")


def _strip(qat_model: fx.GraphModule) -> tuple[fx.GraphModule, dict[str, tuple[float, float]]]:
    gm = copy.deepcopy(qat_model)
    ranges: dict[str, tuple[float, float]] = {}
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        m = modules[node.target]
        if isinstance(m, ActFakeQuant):
            src = node.args[0]
            if bool(m.initialized):
                ranges[src.name] = m.range()
            node.replace_all_uses_with(src)
            gm.graph.erase_node(node)
        elif isinstance(m, QatLayer):
            gm.add_submodule(node.target, m.to_float())
            if m.binary_input:
                name = f"{node.target.replace('.', '_')}_sign"
                gm.add_submodule(name, BinaryActivation())
                with gm.graph.inserting_before(node):
                    sign = gm.graph.call_module(name, (node.args[0],))
                node.args = (sign, *node.args[1:])
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm, ranges


def strip_qat(qat_model: fx.GraphModule) -> fx.GraphModule:
    """A plain float module: fake-quant observers removed, each layer a Conv2d/Linear holding
    the folded fake-quantized weights and folded bias (batch norm gone)."""
    return _strip(qat_model)[0]


def qat_ranges(qat_model: fx.GraphModule) -> dict[str, tuple[float, float]]:
    """The learnt (min, max) of every quantized activation, keyed by the value names of
    `strip_qat(qat_model)` — pass them to `ptq.quantize(..., ranges_override=...)`."""
    return _strip(qat_model)[1]
