"""L1-regularised training, then thresholding (Han et al., 2015, "Learning both weights and
connections"): the loss gains lambda * sum |W| over the prunable weights, which drives
unimportant weights toward zero; weights below a per-layer threshold are then pruned.

The threshold follows Han et al.: a quality parameter q times the standard deviation of the
layer's weights.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mcuqp.compress.masks import Masks, apply_masks, latent_weight, prunable_layers
from mcuqp.compress.train import FitConfig, fit
from mcuqp.errors import McuqpError


def l1_penalty(lam: float, layers: list[str] | None = None):
    """A `loss_extra` hook: lam * sum of |W| over the given (default: all prunable) layers."""
    if lam < 0:
        raise McuqpError(f"the L1 coefficient must be >= 0, got {lam}")

    def loss_extra(model: nn.Module) -> torch.Tensor:
        found = prunable_layers(model)
        names = list(found) if layers is None else layers
        return lam * sum(latent_weight(found[n]).abs().sum() for n in names)

    return loss_extra


def train_l1(model: nn.Module, x: np.ndarray, y: np.ndarray, lam: float, config: FitConfig, **hooks) -> nn.Module:
    return fit(model, x, y, config, loss_extra=l1_penalty(lam), description="L1 train", **hooks)


def threshold_masks(model: nn.Module, quality: float = 0.25, layers: list[str] | None = None) -> Masks:
    """Keep |w| >= quality * std(W) in each layer."""
    found = prunable_layers(model)
    names = list(found) if layers is None else layers
    out = {}
    for n in names:
        w = latent_weight(found[n]).detach()
        out[n] = w.abs() >= quality * w.std()
    return out


def prune_l1(
    model: nn.Module, x: np.ndarray, y: np.ndarray, lam: float, config: FitConfig, *, quality: float = 0.25
) -> Masks:
    """Train with the L1 penalty, then prune by threshold in place; returns the masks."""
    train_l1(model, x, y, lam, config)
    masks = threshold_masks(model, quality)
    apply_masks(model, masks)
    return masks
