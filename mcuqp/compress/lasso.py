"""LASSO channel selection with least-squares reconstruction (He, Zhang & Sun, 2017,
"Channel Pruning for Accelerating Very Deep Neural Networks").

For a channel space with consumers W, the consumer output is a sum of per-channel
contributions Y = sum_c X_c W_c^T. Channel coefficients beta solve
    min_beta ||Y - sum_c beta_c X_c W_c^T||^2 + lambda ||beta||_1
and lambda is raised until at most the target number of channels has beta_c != 0; those
channels are kept. The consumer's weights (and bias) are then refitted by least squares so that
the pruned layer reproduces the original output: min_W' ||Y - X' W'^T||.

Spaces are processed one after another in network order; as in the paper, the inputs X come
from the network pruned so far and the targets Y from the original network, so that later
layers also correct the error of earlier ones.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.linear_model import Lasso
from torch import nn

from mcuqp.compress.channels import ChannelSpace, analyze, keep_count, ratio_for, remove_channels
from mcuqp.compress.consumers import Patches, layer_inputs, patches, set_consumer_weight
from mcuqp.errors import McuqpError


def lasso_select(a: np.ndarray, y: np.ndarray, n_keep: int, *, iterations: int = 30) -> np.ndarray:
    """Indices (ascending) of the `n_keep` columns of `a` chosen by the LASSO path: the smallest
    lambda found by bisection whose solution has at most n_keep non-zero coefficients, then the
    largest |beta| (a solution with fewer non-zeros is topped up from the previous lambda)."""
    a = a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), 1e-12)
    n, c = a.shape
    if n_keep >= c:
        return np.arange(c)
    gram = np.ascontiguousarray(a.T @ a)  # C x C: each fit then costs nothing per row
    lam_hi = float(np.abs(a.T @ y).max()) / n  # all coefficients zero from here up
    lam_lo = lam_hi * 1e-4
    dense = _lasso(a, y, lam_lo, gram)
    best_under, best_over = np.zeros(c), dense
    for _ in range(iterations):
        lam = float(np.sqrt(lam_lo * lam_hi))
        beta = _lasso(a, y, lam, gram)
        nnz = int((beta != 0).sum())
        if nnz > n_keep:
            lam_lo, best_over = lam, beta
        else:
            lam_hi, best_under = lam, beta
            if nnz == n_keep:
                break
    # rank by the sparse solution first, then the denser one for the remaining places
    rank = np.lexsort((-np.abs(best_over), -np.abs(best_under)))
    return np.sort(rank[:n_keep])


def _lasso(a: np.ndarray, y: np.ndarray, lam: float, gram: np.ndarray) -> np.ndarray:
    model = Lasso(alpha=lam, fit_intercept=False, precompute=gram, max_iter=5000, tol=1e-6, selection="cyclic")
    model.fit(a, y)
    return model.coef_.copy()


def least_squares(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """W (n_out, C*k) and b (n_out,) minimising ||y - x W^T - b||^2 (a tiny ridge for stability)."""
    x64 = torch.cat([x.reshape(x.shape[0], -1).double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
    gram = x64.T @ x64
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=torch.float64)
    sol = torch.linalg.solve(gram, x64.T @ y.double())
    return sol[:-1].T.float(), sol[-1].float()


def _design(cur: Patches, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Columns: each channel's contribution to the consumer output; scaled so that every
    consumer weighs the same in a stacked system."""
    z = torch.einsum("rck,ock->cro", cur.x.double(), cur.weight.double())  # (C, rows, n_out)
    scale = float(target.double().norm()) or 1.0
    return (z.reshape(z.shape[0], -1).T / scale).numpy(), (target.double().reshape(-1) / scale).numpy()


def _samples(x: np.ndarray, samples: int, seed: int) -> torch.Tensor:
    idx = np.random.default_rng(seed).permutation(len(x))[:samples]
    return torch.as_tensor(x[idx], dtype=torch.float32)


def prune_lasso(
    model: nn.Module,
    x: np.ndarray,
    ratio: float | dict[str, float],
    *,
    selection: str = "lasso",
    samples: int = 512,
    per_image: int = 8,
    seed: int = 0,
    max_rows: int = 40_000,
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Prune `ratio` of the channels of every prunable space (per space key when a dict);
    `x` are unlabelled inputs. selection="random" keeps random channels (same refit), the
    baseline the paper compares with. Returns a smaller copy and the kept indices."""
    if selection not in ("lasso", "random"):
        raise McuqpError(f"unknown channel selection {selection!r}: use 'lasso' or 'random'")
    xs = _samples(x, samples, seed)
    original = copy.deepcopy(model).eval()
    current = copy.deepcopy(model).eval()
    graph = analyze(current, xs[:1])
    keys = [s.key for s in graph.prunable() if ratio_for(ratio, s.key) > 0 and s.consumers]
    kept: dict[str, torch.Tensor] = {}
    rng = np.random.default_rng(seed)
    for key in keys:
        graph = analyze(current, xs[:1])
        space = graph.spaces[key]
        n_keep = keep_count(space.size, ratio_for(ratio, key))
        cur, tgt = _consumer_data(current, original, graph, space, xs, per_image, seed, kept)
        if selection == "lasso":
            parts = [_design(c, t) for c, t in zip(cur, tgt)]
            a = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            if len(a) > max_rows:  # the selection needs a sample of the rows, not all of them
                rows = rng.choice(len(a), max_rows, replace=False)
                a, y = a[rows], y[rows]
            keep = torch.as_tensor(lasso_select(a, y, n_keep), dtype=torch.long)
        else:
            keep = torch.as_tensor(np.sort(rng.permutation(space.size)[:n_keep]), dtype=torch.long)
        for consumer, c, t in zip(space.consumers, cur, tgt):
            _refit(current.get_submodule(consumer.layer), c, t, keep)
        current = remove_channels(current, graph, {key: keep})
        kept[key] = keep
    return current.eval(), kept


def _consumer_data(current, original, graph, space: ChannelSpace, xs, per_image: int, seed: int, kept: dict):
    """Per consumer: its patches in the pruned-so-far network and its original output (with
    bias), restricted to the output channels that earlier steps kept."""
    produced = {p: s.key for s in graph.spaces.values() for p in s.producers}
    cur, tgt = [], []
    for i, consumer in enumerate(space.consumers):
        m_cur = current.get_submodule(consumer.layer)
        m_orig = original.get_submodule(consumer.layer)
        kw = dict(per_image=per_image, seed=seed + i)
        p_cur = patches(m_cur, layer_inputs(current, consumer.layer, xs), consumer.hw, consumer.mult, **kw)
        p_orig = patches(m_orig, layer_inputs(original, consumer.layer, xs), consumer.hw, consumer.mult, **kw)
        cur.append(p_cur)
        y = p_orig.output() + (0 if p_orig.bias is None else p_orig.bias)
        out_key = produced.get(consumer.layer)
        if out_key in kept:
            y = y[:, kept[out_key]]
        tgt.append(y)
    return cur, tgt


def _refit(module: nn.Module, cur: Patches, target: torch.Tensor, keep: torch.Tensor) -> None:
    w_keep, b = least_squares(cur.x[:, keep], target)
    w = torch.zeros_like(cur.weight)
    w[:, keep] = w_keep.reshape(w.shape[0], len(keep), -1)
    set_consumer_weight(module, w, b)
