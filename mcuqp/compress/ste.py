"""The straight-through estimator (Bengio et al., 2013; Hinton's lectures, 2012).

Forward returns the quantized tensor exactly (no `x + (q - x).detach()` rounding error);
backward passes the incoming gradient to the latent tensor unchanged, multiplied by an
optional pass-through mask (0 where the quantizer saturates and the gradient is cancelled).
"""
from __future__ import annotations

import torch


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor, passthrough: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(passthrough if passthrough is not None else torch.ones(()))
        return q.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        return grad * p.to(grad.dtype), None, None


def ste(x: torch.Tensor, q: torch.Tensor, passthrough: torch.Tensor | None = None) -> torch.Tensor:
    """Value `q`, gradient d/dx = passthrough (1 everywhere by default)."""
    return _StraightThrough.apply(x, q.detach(), None if passthrough is None else passthrough.detach())
