"""Optimal Brain Damage (LeCun, Denker & Solla, 1990): at a minimum of the loss, deleting
weight w_i raises it by about  s_i = 0.5 * h_ii * w_i^2  (second-order Taylor expansion with a
diagonal Hessian). Weights (or channels: the sum over their weights) of least saliency go.

Two estimates of the Hessian diagonal h_ii:
- "fisher": the empirical Fisher, the mean over samples of the squared per-sample gradient
  (dl_n/dw_i)^2, exact for the Gauss-Newton part of a log-likelihood loss at convergence;
- "hutchinson": E_v[v * (H v)] with Rademacher v (Hutchinson 1989), H v by double
  back-propagation of the mean loss.
The model is evaluated in eval mode (batch-norm running statistics, no dropout).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from mcuqp.compress.channels import analyze, prune_by_scores
from mcuqp.compress.masks import Masks, apply_masks, latent_weight, masks_from_scores, prunable_layers
from mcuqp.compress.taylor import channel_scores
from mcuqp.errors import McuqpError

HESSIANS = ("fisher", "hutchinson")


def _weight_names(model: nn.Module) -> dict[str, str]:
    """Layer name -> the parameter path of its (latent) weight."""
    params = {id(p): n for n, p in model.named_parameters()}
    return {layer: params[id(latent_weight(m))] for layer, m in prunable_layers(model).items()}


def fisher_diagonal(model: nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Mean over samples of the squared per-sample gradient, per prunable weight."""
    names = _weight_names(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    wanted = {p: params[p] for p in names.values()}

    def sample_loss(w: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**params, **w}, buffers), (xi[None],))
        return nn.functional.cross_entropy(out, yi[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    was = model.training
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    acc = {p: torch.zeros_like(t) for p, t in wanted.items()}
    for i in range(0, len(xt), batch_size):
        g = per_sample(wanted, xt[i : i + batch_size], yt[i : i + batch_size])
        for p in acc:
            acc[p] += (g[p] ** 2).sum(0)
    model.train(was)
    return {layer: acc[p] / len(xt) for layer, p in names.items()}


def hutchinson_diagonal(
    model: nn.Module, x: np.ndarray, y: np.ndarray, *, probes: int = 16, batch_size: int = 256, seed: int = 0
) -> dict[str, torch.Tensor]:
    """E[v * Hv] over `probes` Rademacher vectors per batch, H the Hessian of the mean loss,
    averaged over batches."""
    layers = prunable_layers(model)
    weights = [latent_weight(m) for m in layers.values()]
    gen = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    acc = [torch.zeros_like(w) for w in weights]
    n_batches = 0
    for i in range(0, len(xt), batch_size):
        loss = nn.functional.cross_entropy(model(xt[i : i + batch_size]), yt[i : i + batch_size])
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        for k in range(probes):
            vs = [torch.randint(0, 2, w.shape, generator=gen).to(w.dtype) * 2 - 1 for w in weights]
            hv = torch.autograd.grad(grads, weights, grad_outputs=vs, retain_graph=k < probes - 1)
            for a, v, h in zip(acc, vs, hv):
                a += (v * h).detach()
        n_batches += 1
    model.train(was)
    return {n: a / (probes * n_batches) for n, a in zip(layers, acc)}


def obd_saliency(weights: dict[str, torch.Tensor], hessian_diag: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """s_i = 0.5 * h_ii * w_i^2."""
    return {n: 0.5 * hessian_diag[n] * weights[n].detach() ** 2 for n in hessian_diag}


def obd_scores(model: nn.Module, x: np.ndarray, y: np.ndarray, *, hessian: str = "fisher") -> dict[str, torch.Tensor]:
    if hessian == "fisher":
        h = fisher_diagonal(model, x, y)
    elif hessian == "hutchinson":
        h = hutchinson_diagonal(model, x, y)
    else:
        raise McuqpError(f"unknown Hessian estimate {hessian!r}: choose one of {', '.join(HESSIANS)}")
    weights = {n: latent_weight(m) for n, m in prunable_layers(model).items()}
    return obd_saliency(weights, h)


def prune_obd(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    sparsity: float | dict[str, float],
    *,
    hessian: str = "fisher",
    scope: str = "layer",
) -> Masks:
    """Unstructured: prune the least salient weights in place; returns the masks."""
    masks = masks_from_scores(obd_scores(model, x, y, hessian=hessian), sparsity, scope=scope)
    apply_masks(model, masks)
    return masks


def prune_obd_channels(
    model: nn.Module, x: np.ndarray, y: np.ndarray, ratio: float | dict[str, float], *, hessian: str = "fisher"
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Structured: a smaller copy without the least salient channels, and the kept indices."""
    scores = obd_scores(model, x, y, hessian=hessian)
    graph = analyze(model, torch.as_tensor(x[:1], dtype=torch.float32))
    return prune_by_scores(model, graph, ratio, lambda s: channel_scores(scores, s))
