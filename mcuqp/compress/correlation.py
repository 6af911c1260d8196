"""Neuron/channel merging by activation correlation.

Two channels whose activations are highly correlated carry the same information: channel j
is removed and its effect is moved onto channel i. With a_j ≈ alpha * a_i + beta fitted by
least squares on calibration data, every consumer weight column of j is added, scaled by
alpha, to the column of i, and beta times the summed column of j goes into the consumer's
bias:  W_i += alpha * W_j,  b += beta * sum_k W_j[k]  (exact for a Linear; for a consumer conv
exact away from the zero-padded border). Pairs are merged greedily, most correlated first,
among the channels still present (the idea of merging redundant neurons with weight
compensation, as in Srinivas & Babu 2015 and in "neuron merging", Kim et al. 2020, here
driven by measured activations rather than weights).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mcuqp.compress.channels import ChannelSpace, analyze, keep_count, ratio_for, remove_channels
from mcuqp.compress.consumers import layer_inputs, set_consumer_weight
from mcuqp.errors import McuqpError


def channel_activations(inputs: torch.Tensor, hw: int = 1, mult: int = 1) -> torch.Tensor:
    """(C, mult, samples) activations of each space channel (its `mult` consumer input channels
    behind a depthwise multiplier): every pixel of every image is a sample."""
    if inputs.dim() == 4:
        n, c_in = inputs.shape[:2]
        return inputs.reshape(n, c_in // mult, mult, -1).permute(1, 2, 0, 3).reshape(c_in // mult, mult, -1)
    flat = inputs.reshape(inputs.shape[0], -1)
    c = flat.shape[1] // (hw * mult)
    return flat.reshape(-1, c, mult, hw).permute(1, 2, 0, 3).reshape(c, mult, -1)


def correlation_matrix(acts: torch.Tensor) -> torch.Tensor:
    """|Pearson correlation| between channels (rows of `acts`, flattened); a constant channel
    counts as perfectly correlated with every other (it is fully explained by a bias)."""
    a = acts.reshape(acts.shape[0], -1).double()
    a = a - a.mean(1, keepdim=True)
    std = a.norm(dim=1)
    dead = std < 1e-12
    corr = (a @ a.T) / torch.outer(std, std).clamp(min=1e-300)
    corr = corr.abs()
    corr[dead, :] = 1.0
    corr[:, dead] = 1.0
    corr.fill_diagonal_(-1.0)
    return corr


def linear_fit(a_j: torch.Tensor, a_i: torch.Tensor) -> tuple[float, float]:
    """(alpha, beta) minimising ||a_j - alpha * a_i - beta||^2."""
    ai, aj = a_i.double(), a_j.double()
    var = float(((ai - ai.mean()) ** 2).sum())
    alpha = 0.0 if var < 1e-12 else float(((ai - ai.mean()) * (aj - aj.mean())).sum()) / var
    return alpha, float(aj.mean() - alpha * ai.mean())


@torch.no_grad()
def merge_channel(weight: torch.Tensor, bias: torch.Tensor, j: int, i: int, alpha: list[float], beta: list[float]) -> None:
    """In place on a (n_out, C, mult*k) consumer weight and its (n_out,) bias: move channel j
    onto i, sub-channel m (of k columns) with its own alpha[m], beta[m]."""
    n_out, _, width = weight.shape
    mult = len(alpha)
    wj = weight[:, j].reshape(n_out, mult, width // mult)
    wi = weight[:, i].reshape(n_out, mult, width // mult)
    a = torch.as_tensor(alpha, dtype=weight.dtype)[None, :, None]
    b = torch.as_tensor(beta, dtype=weight.dtype)[None, :, None]
    weight[:, i] = (wi + a * wj).reshape(n_out, width)
    bias += (b * wj).sum((1, 2))
    weight[:, j] = 0.0


def prune_correlation(
    model: nn.Module,
    x: np.ndarray,
    ratio: float | dict[str, float],
    *,
    selection: str = "correlation",
    samples: int = 512,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Merge away `ratio` of the channels of every prunable space (per space key when a dict);
    `x` are unlabelled inputs. selection="random" removes random channels, each merged into its
    most correlated survivor (the same compensation), as a baseline. Returns a smaller copy and
    the kept indices."""
    if selection not in ("correlation", "random"):
        raise McuqpError(f"unknown channel selection {selection!r}: use 'correlation' or 'random'")
    idx = np.random.default_rng(seed).permutation(len(x))[:samples]
    xs = torch.as_tensor(x[idx], dtype=torch.float32)
    current = copy.deepcopy(model).eval()
    graph = analyze(current, xs[:1])
    keys = [s.key for s in graph.prunable() if ratio_for(ratio, s.key) > 0 and s.consumers]
    rng = np.random.default_rng(seed)
    kept: dict[str, torch.Tensor] = {}
    for key in keys:
        graph = analyze(current, xs[:1])
        space = graph.spaces[key]
        n_keep = keep_count(space.size, ratio_for(ratio, key))
        keep = _merge_space(current, space, xs, n_keep, selection, rng)
        current = remove_channels(current, graph, {key: keep})
        kept[key] = keep
    return current.eval(), kept


def _merge_space(model: nn.Module, space: ChannelSpace, xs: torch.Tensor, n_keep: int, selection: str, rng) -> torch.Tensor:
    acts = [channel_activations(layer_inputs(model, c.layer, xs), c.hw, c.mult) for c in space.consumers]
    corr = sum(correlation_matrix(a) for a in acts) / len(acts)
    layers = [model.get_submodule(c.layer) for c in space.consumers]
    weights = [m.weight.detach().clone().reshape(m.weight.shape[0], space.size, -1).double() for m in layers]
    biases = [
        torch.zeros(m.weight.shape[0], dtype=torch.float64) if m.bias is None else m.bias.detach().double().clone()
        for m in layers
    ]
    alive = torch.ones(space.size, dtype=torch.bool)
    while int(alive.sum()) > n_keep:
        live = torch.nonzero(alive).reshape(-1)
        sub = corr[live][:, live]
        if selection == "correlation":
            flat = int(torch.argmax(sub))
            a, b = live[flat // len(live)], live[flat % len(live)]
            # drop the member of the pair whose own contribution to the consumers is smaller
            j, i = (a, b) if _contribution(acts, weights, a) <= _contribution(acts, weights, b) else (b, a)
        else:
            j = live[int(rng.integers(len(live)))]
            others = live[live != j]
            i = others[int(torch.argmax(corr[j, others]))]
        for a_c, w, bias in zip(acts, weights, biases):
            fits = [linear_fit(a_c[j, m], a_c[i, m]) for m in range(a_c.shape[1])]
            merge_channel(w, bias, int(j), int(i), [f[0] for f in fits], [f[1] for f in fits])
        alive[j] = False
    for m, w, bias in zip(layers, weights, biases):
        set_consumer_weight(m, w.float(), bias.float())
    return torch.nonzero(alive).reshape(-1)


def _contribution(acts: list[torch.Tensor], weights: list[torch.Tensor], c: torch.Tensor) -> float:
    """How much channel c moves the consumers' outputs: std(a_c) * ||W_c||, summed."""
    return sum(float(a[c].double().std() * w[:, c].norm()) for a, w in zip(acts, weights))
