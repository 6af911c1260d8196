"""Unstructured magnitude pruning (Han et al., 2015): remove the weights of smallest |w|.

Per layer, every prunable layer loses the same fraction of its weights; globally, one
percentile threshold over all prunable weights decides, so the fraction differs by layer.
"""
from __future__ import annotations

from torch import nn

from mcuqp.compress.masks import Masks, apply_masks, latent_weight, masks_from_scores, prunable_layers


def magnitude_scores(model: nn.Module, layers: list[str] | None = None) -> dict:
    found = prunable_layers(model)
    names = list(found) if layers is None else layers
    return {n: latent_weight(found[n]).detach().abs() for n in names}


def magnitude_masks(
    model: nn.Module, sparsity: float | dict[str, float], *, scope: str = "layer", layers: list[str] | None = None
) -> Masks:
    """Masks keeping the largest-|w| weights of `layers` (all Conv2d/Linear layers by default)."""
    if isinstance(sparsity, dict) and layers is None:
        layers = list(sparsity)
    return masks_from_scores(magnitude_scores(model, layers), sparsity, scope=scope)


def prune_magnitude(
    model: nn.Module, sparsity: float | dict[str, float], *, scope: str = "layer", layers: list[str] | None = None
) -> Masks:
    """Prune in place (weights set to exactly zero, masks attached); returns the masks."""
    masks = magnitude_masks(model, sparsity, scope=scope, layers=layers)
    apply_masks(model, masks)
    return masks
