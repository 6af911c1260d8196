"""Low-bit weights trained with the straight-through estimator, per output channel.

- binary (BinaryConnect, Courbariaux et al. 2015, with XNOR-Net's per-filter scale, Rastegari
  et al. 2016): W_b = alpha * sign(W), alpha = mean|W| of the channel, sign(0) = +1. The gradient
  reaches the latent weight only where |W| <= 1, and latent weights are clipped to [-1, 1]
  after every step.
- ternary (TWN, Li & Liu 2016): W_t = alpha * sign(W) * [|W| > delta], delta = 0.7 * mean|W|,
  alpha = mean of |W| over |W| > delta.
- intN (N = 2, 4, 8): symmetric, scale = max|W| / (2^(N-1) - 1), levels -(2^(N-1)-1) .. 2^(N-1)-1.

All are scale-equivariant per channel, so after batch-norm folding or per-channel int8 PTQ the
levels stay exact: ternary becomes {-127, 0, 127} * alpha/127, binary ±127 * alpha/127 and int2
{-127, 0, 127} * max/127. int4 levels k * max/7 are not on the int8 grid max/127 (127 is prime):
int8 PTQ moves each by less than half an int8 step and keeps all 15 distinct.
With a pruning mask, statistics (mean|W|, max|W|) are taken over the kept weights and pruned
weights quantize to exactly zero.

The latent float weights stay the trained parameters: `apply_lowbit` registers a
`torch.nn.utils.parametrize` parametrization on each layer's weight, and `strip_lowbit`
removes it, leaving a plain layer whose weight holds the quantized values.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from mcuqp.compress.masks import chain, finetune, get_mask, latent_weight, prunable_layers
from mcuqp.compress.ste import ste
from mcuqp.compress.train import FitConfig
from mcuqp.errors import McuqpError

BITS = {"binary": 1, "ternary": 2, "int2": 2, "int4": 4, "int8": 8}
KINDS = tuple(BITS)
TWN_DELTA = 0.7


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _kept(w: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(w, dtype=torch.bool) if mask is None else mask.to(torch.bool)


def _channel_mean(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over `where` per output channel (0 for a channel with nothing selected),
    shaped to broadcast against the weight."""
    v, m = _rows(values), _rows(where).to(values.dtype)
    mean = (v * m).sum(1) / m.sum(1).clamp(min=1)
    return mean.reshape(-1, *([1] * (values.dim() - 1)))


@torch.no_grad()
def binary_values(w: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    keep = _kept(w, mask)
    alpha = _channel_mean(w.abs(), keep)
    sign = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    return alpha * sign * keep


@torch.no_grad()
def twn_threshold_alpha(w: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (delta, alpha) of TWN, each shaped to broadcast against `w`."""
    keep = _kept(w, mask)
    delta = TWN_DELTA * _channel_mean(w.abs(), keep)
    alpha = _channel_mean(w.abs(), keep & (w.abs() > delta))
    return delta, alpha


@torch.no_grad()
def ternary_values(w: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    delta, alpha = twn_threshold_alpha(w, mask)
    big = (w.abs() > delta) & _kept(w, mask)
    return alpha * torch.sign(w) * big


@torch.no_grad()
def int_scale(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-channel symmetric scale max|W| / (2^(bits-1) - 1), shaped to broadcast (1 for all-zero rows)."""
    qmax = 2 ** (bits - 1) - 1
    amax = _rows(w.abs()).amax(1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    return scale.reshape(-1, *([1] * (w.dim() - 1)))


@torch.no_grad()
def int_values(w: torch.Tensor, bits: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    if mask is not None:
        w = w * mask
    scale = int_scale(w, bits)
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def quantized_values(w: torch.Tensor, kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The quantized weight values (no gradient)."""
    if kind == "binary":
        return binary_values(w, mask)
    if kind == "ternary":
        return ternary_values(w, mask)
    if kind in ("int2", "int4", "int8"):
        return int_values(w, BITS[kind], mask)
    raise McuqpError(f"unknown weight quantization {kind!r}: choose one of {', '.join(KINDS)}")


def quantize_weight(w: torch.Tensor, kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Quantized values forward; straight-through gradient to the latent `w` (cancelled where
    |W| > 1 for binary, and at pruned positions)."""
    q = quantized_values(w, kind, mask)
    passthrough = None
    if kind == "binary":
        passthrough = w.abs() <= 1
    if mask is not None:
        passthrough = mask if passthrough is None else passthrough & mask
    return ste(w, q, passthrough)


class LowBitWeight(nn.Module):
    """Parametrization: weight = quantize_weight(latent, kind, mask)."""

    def __init__(self, kind: str, mask: torch.Tensor | None = None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise McuqpError(f"unknown weight quantization {kind!r}: choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return quantize_weight(w, self.kind, self.mask)


def resolve_kinds(model: nn.Module, kind: str | None, per_layer: dict[str, str | None] | None = None) -> dict:
    """Layer name -> weight kind; `per_layer` overrides `kind` (None leaves a layer float)."""
    layers = prunable_layers(model)
    for name in per_layer or {}:
        if name not in layers:
            raise McuqpError(f"no Conv2d/Linear layer named {name!r}; layers are: {', '.join(layers)}")
    out = {}
    for name in layers:
        k = (per_layer or {}).get(name, kind)
        if k is not None:
            if k not in KINDS:
                raise McuqpError(f"unknown weight quantization {k!r} for {name}: choose one of {', '.join(KINDS)}")
            out[name] = k
    return out


def apply_lowbit(model: nn.Module, kind: str | None, per_layer: dict[str, str | None] | None = None) -> dict:
    """Parametrize the weights in place; returns layer name -> kind."""
    kinds = resolve_kinds(model, kind, per_layer)
    layers = prunable_layers(model)
    for name, k in kinds.items():
        m = layers[name]
        if parametrize.is_parametrized(m, "weight"):
            raise McuqpError(f"layer {name} already has a weight parametrization")
        parametrize.register_parametrization(m, "weight", LowBitWeight(k, get_mask(m)))
    return kinds


@torch.no_grad()
def clip_binary_latent(model: nn.Module, step: int = 0) -> None:
    """BinaryConnect: keep the latent weights of binary layers in [-1, 1] (an `after_step` hook)."""
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            if any(getattr(p, "kind", None) == "binary" for p in m.parametrizations.weight):
                latent_weight(m).clamp_(-1.0, 1.0)


def strip_lowbit(model: nn.Module) -> nn.Module:
    """Remove the parametrizations in place: each weight becomes its quantized value."""
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


def train_lowbit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    config: FitConfig,
    per_layer: dict[str, str | None] | None = None,
) -> nn.Module:
    """Apply, train (masks kept, binary latents clipped) and strip, in place."""
    apply_lowbit(model, kind, per_layer)
    finetune(model, x, y, config, after_step=chain(clip_binary_latent), description=f"{kind} train")
    return strip_lowbit(model)
