"""Structured filter pruning by L1 norm (Li et al., 2017, "Pruning Filters for Efficient
ConvNets"): in every prunable channel space the filters of smallest L1 norm sum|W| are removed,
together with the matching input channels of every consumer, giving a smaller dense network
(see `channels.py` for how producers and consumers are found).
"""
from __future__ import annotations

import torch
from torch import nn

from mcuqp.compress.channels import ChannelSpace, analyze, prune_by_scores


def filter_l1(model: nn.Module, space: ChannelSpace) -> torch.Tensor:
    """The L1 norm of each output filter, summed over the space's producers (both sides of a
    residual add)."""
    mods = dict(model.named_modules())
    return sum(mods[p].weight.detach().abs().reshape(space.size, -1).sum(1) for p in space.producers)


def prune_filters(
    model: nn.Module, example: torch.Tensor, ratio: float | dict[str, float]
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Remove `ratio` of the channels of every prunable space (or per space key); returns the
    smaller model (a copy) and the kept channel indices by space key."""
    graph = analyze(model, example)
    return prune_by_scores(model, graph, ratio, lambda s: filter_l1(model, s))
