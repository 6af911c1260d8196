"""First-order Taylor importance (Molchanov et al., 2017/2019): removing weight w_i changes
the loss by about |g_i * w_i|, g_i = dL/dw_i. Scores are accumulated over mini-batches,
    score_i = sum_b |g_{b,i} * w_i|,
with the model in eval mode (batch-norm running statistics, no dropout). A channel's score is
the sum of its weights' scores over the space's producers. Unstructured pruning removes the
lowest-scoring weights; structured pruning the lowest-scoring channels.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mcuqp.compress.channels import ChannelSpace, analyze, prune_by_scores
from mcuqp.compress.masks import Masks, apply_masks, latent_weight, masks_from_scores, prunable_layers


def taylor_scores(
    model: nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int = 64, batches: int | None = None
) -> dict[str, torch.Tensor]:
    """Per-weight sum over mini-batches of |dL_b/dW * W| for every Conv2d/Linear layer."""
    layers = prunable_layers(model)
    weights = {n: latent_weight(m) for n, m in layers.items()}
    scores = {n: torch.zeros_like(w) for n, w in weights.items()}
    was = model.training
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    n_batches = (len(xt) + batch_size - 1) // batch_size
    for b in range(n_batches if batches is None else min(batches, n_batches)):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        loss = nn.functional.cross_entropy(model(xt[sl]), yt[sl])
        grads = torch.autograd.grad(loss, list(weights.values()))
        for (n, w), g in zip(weights.items(), grads):
            scores[n] += (g * w).detach().abs()
    model.train(was)
    return scores


def channel_scores(scores: dict[str, torch.Tensor], space: ChannelSpace) -> torch.Tensor:
    """Sum of per-weight scores over each output channel of the space's producers."""
    return sum(scores[p].reshape(space.size, -1).sum(1) for p in space.producers)


def prune_taylor(
    model: nn.Module, x: np.ndarray, y: np.ndarray, sparsity: float | dict[str, float], *, scope: str = "layer"
) -> Masks:
    """Unstructured: prune the lowest-scoring weights in place; returns the masks."""
    masks = masks_from_scores(taylor_scores(model, x, y), sparsity, scope=scope)
    apply_masks(model, masks)
    return masks


def prune_taylor_channels(
    model: nn.Module, x: np.ndarray, y: np.ndarray, ratio: float | dict[str, float]
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Structured: a smaller copy without the lowest-scoring channels, and the kept indices."""
    scores = taylor_scores(model, x, y)
    graph = analyze(model, torch.as_tensor(x[:1], dtype=torch.float32))
    return prune_by_scores(model, graph, ratio, lambda s: channel_scores(scores, s))
