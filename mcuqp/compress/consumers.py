"""What a consumer layer sees of each input channel, as matrices for least-squares methods.

For a consumer conv, every output pixel is W · patch: the patch (C, kh*kw) is the receptive
field; for a Linear fed through a flatten it is (C, H*W), and (C, 1) for a plain Linear. We
sample rows (image, output pixel) and return X of shape (rows, C, k) so that the consumer's
output before bias is  X.reshape(rows, C*k) @ W.reshape(n_out, C*k).T  — the form used by
LASSO channel selection (He et al. 2017). Behind a depthwise conv with a channel multiplier,
the `mult` input channels that come from one space channel form one group of k columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mcuqp.errors import UnsupportedModelError


@torch.no_grad()
def layer_inputs(model: nn.Module, layer: str, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The input tensor of `layer` for the inputs `x` (model in eval mode)."""
    module = model.get_submodule(layer)
    got: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda m, args: got.append(args[0].detach()))
    was = model.training
    model.eval()
    try:
        xt = torch.as_tensor(x, dtype=torch.float32)
        for i in range(0, len(xt), batch_size):
            model(xt[i : i + batch_size])
    finally:
        handle.remove()
        model.train(was)
    return torch.cat(got)


def _conv_padding(m: nn.Conv2d) -> tuple[int, int]:
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return 0, 0
        kh, kw = m.kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise UnsupportedModelError("padding='same' with an even kernel is not supported here")
        return m.dilation[0] * (kh - 1) // 2, m.dilation[1] * (kw - 1) // 2
    return m.padding


@dataclass
class Patches:
    x: torch.Tensor  # (rows, C, k)
    weight: torch.Tensor  # consumer weight as (n_out, C, k)
    bias: torch.Tensor | None

    def output(self) -> torch.Tensor:
        """The consumer's output before bias at the sampled rows, (rows, n_out)."""
        rows = self.x.shape[0]
        return self.x.reshape(rows, -1) @ self.weight.reshape(self.weight.shape[0], -1).T


def patches(
    module: nn.Module, inputs: torch.Tensor, hw: int = 1, mult: int = 1, *, per_image: int = 8, seed: int = 0
) -> Patches:
    """Sample `per_image` output positions per image of a consumer conv (all rows for a Linear).
    `mult` consecutive input channels (of `hw` columns each) make one space channel."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise UnsupportedModelError("grouped convolutions are not supported as consumers here")
        cols = F.unfold(inputs, module.kernel_size, module.dilation, _conv_padding(module), module.stride)
        n, _, positions = cols.shape
        c = module.in_channels
        k = module.kernel_size[0] * module.kernel_size[1]
        cols = cols.reshape(n, c, k, positions)
        gen = torch.Generator().manual_seed(seed)
        take = min(per_image, positions)
        pos = torch.stack([torch.randperm(positions, generator=gen)[:take] for _ in range(n)])  # (n, take)
        x = cols.permute(0, 3, 1, 2)[torch.arange(n)[:, None], pos].reshape(n * take, c // mult, mult * k)
        w = module.weight.detach().reshape(module.out_channels, c // mult, mult * k)
    elif isinstance(module, nn.Linear):
        x = inputs.reshape(inputs.shape[0], -1)
        c = x.shape[1] // (hw * mult)
        x = x.reshape(x.shape[0], c, mult * hw)
        w = module.weight.detach().reshape(module.out_features, c, mult * hw)
    else:
        raise UnsupportedModelError(f"{type(module).__name__} is not a consumer layer")
    b = None if module.bias is None else module.bias.detach()
    return Patches(x.contiguous(), w, b)


@torch.no_grad()
def set_consumer_weight(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Write a (n_out, C, k) weight (and bias) back into a consumer conv/linear."""
    module.weight.copy_(weight.reshape(module.weight.shape))
    if bias is not None:
        if module.bias is None:
            module.bias = nn.Parameter(bias.clone())
        else:
            module.bias.copy_(bias)
