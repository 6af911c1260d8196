"""Pruning masks shared by every unstructured pruning method.

A mask is a bool tensor shaped like a layer's weight (True = kept). It is stored on the layer
itself as the non-persistent buffer `weight_mask`, so it follows the layer through deep copies,
QAT wrapping and low-bit parametrization. Pruned weights are held at exactly 0.0:
the latent weight is multiplied by the mask when the mask is set, its gradient is masked
before every optimizer step and the mask is re-applied after every step (Adam's momentum would
otherwise move them off zero).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from mcuqp.compress.train import FitConfig, fit
from mcuqp.errors import McuqpError

PRUNABLE = (nn.Conv2d, nn.Linear)
Masks = dict[str, torch.Tensor]


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d and Linear layers by qualified name, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def latent_weight(module: nn.Module) -> nn.Parameter:
    """The trained weight tensor: the original under a parametrization, else `weight`."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def get_mask(module: nn.Module) -> torch.Tensor | None:
    return getattr(module, "weight_mask", None)


def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Attach `mask` to a layer (combined with any mask it already has) and zero its pruned weights."""
    w = latent_weight(module)
    mask = torch.as_tensor(mask, dtype=torch.bool, device=w.device)
    if mask.shape != w.shape:
        raise McuqpError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(w.shape)}")
    old = get_mask(module)
    if old is not None:
        mask = mask & old
    if "weight_mask" in module._buffers:
        module.weight_mask = mask
    else:
        module.register_buffer("weight_mask", mask, persistent=False)
    with torch.no_grad():
        w.mul_(mask)
    # Low-bit weight quantizers need the mask itself: sign(0) = +1 would revive a pruned weight.
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if hasattr(p, "mask"):
                p.mask = mask


def apply_masks(model: nn.Module, masks: Masks) -> None:
    layers = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in layers:
            raise McuqpError(f"no layer named {name!r} in the model")
        set_mask(layers[name], mask)


def masked_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if get_mask(m) is not None}


def current_masks(model: nn.Module) -> Masks:
    return {n: get_mask(m).clone() for n, m in masked_layers(model).items()}


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    for m in masked_layers(model).values():
        latent_weight(m).mul_(get_mask(m))


@torch.no_grad()
def mask_gradients(model: nn.Module) -> None:
    for m in masked_layers(model).values():
        w = latent_weight(m)
        if w.grad is not None:
            w.grad.mul_(get_mask(m))


def chain(*hooks: Callable[[nn.Module, int], None] | None) -> Callable[[nn.Module, int], None]:
    """One step hook that calls each given hook in order (None entries are skipped)."""
    live = [h for h in hooks if h is not None]

    def run(model: nn.Module, step: int) -> None:
        for h in live:
            h(model, step)

    return run


def before_step(model: nn.Module, step: int) -> None:
    mask_gradients(model)


def after_step(model: nn.Module, step: int) -> None:
    enforce_masks(model)


def finetune(model: nn.Module, x: np.ndarray, y: np.ndarray, config: FitConfig, **hooks) -> nn.Module:
    """`fit` with the masks kept: extra `before_step`/`after_step` hooks run after the mask hooks."""
    return fit(
        model,
        x,
        y,
        config,
        loss_extra=hooks.get("loss_extra"),
        before_step=chain(before_step, hooks.get("before_step")),
        after_step=chain(after_step, hooks.get("after_step")),
        description=hooks.get("description", "fine-tune"),
    )


def count_nonzero(model: nn.Module) -> tuple[int, int]:
    """(nonzero, total) weights over the prunable layers."""
    nz = tot = 0
    for m in prunable_layers(model).values():
        w = m.weight
        nz += int((w != 0).sum())
        tot += w.numel()
    return nz, tot


def sparsity(model: nn.Module) -> float:
    nz, tot = count_nonzero(model)
    return 1.0 - nz / max(tot, 1)


def masks_from_scores(
    scores: dict[str, torch.Tensor], sparsity: float | dict[str, float], *, scope: str = "layer"
) -> Masks:
    """Keep the highest-scoring weights.

    scope="layer": each layer loses round(s * n) weights (s per layer when a dict is given);
    scope="global": one threshold over all layers together (one float sparsity), so layers whose
    scores are small lose more. Exactly the requested count is removed (ties broken by index).
    """
    if scope not in ("layer", "global"):
        raise McuqpError(f"unknown pruning scope {scope!r}: use 'layer' or 'global'")
    if scope == "global":
        if isinstance(sparsity, dict):
            raise McuqpError("global pruning takes a single sparsity, not one per layer")
        _check_sparsity(sparsity)
        flat = torch.cat([s.detach().reshape(-1).float() for s in scores.values()])
        keep_flat = _keep_top(flat, int(round(sparsity * flat.numel())))
        out, i = {}, 0
        for name, s in scores.items():
            out[name] = keep_flat[i : i + s.numel()].reshape(s.shape)
            i += s.numel()
        return out
    out = {}
    for name, s in scores.items():
        sp = sparsity.get(name, 0.0) if isinstance(sparsity, dict) else sparsity
        _check_sparsity(sp)
        out[name] = _keep_top(s.detach().reshape(-1).float(), int(round(sp * s.numel()))).reshape(s.shape)
    return out


def _keep_top(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if n_prune > 0:
        keep[torch.argsort(flat, stable=True)[:n_prune]] = False
    return keep


def _check_sparsity(s: float) -> None:
    if not 0.0 <= s < 1.0:
        raise McuqpError(f"sparsity must be in [0, 1), got {s}")
