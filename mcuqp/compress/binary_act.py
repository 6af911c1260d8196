"""Binary activations for fully binary layers (BNN, Hubara et al. 2016; XNOR-Net, Rastegari et
al. 2016): a layer's input is replaced by sign(x) in {-1, +1} (sign(0) = +1), with the
straight-through estimator of BNN: gradient 1 where |x| <= 1, 0 elsewhere (hard tanh).

Opt-in per layer. Combined with binary weights the layer computes a ±1 x ±alpha dot product
(XNOR-popcount on hardware that has it). Binarize layers whose input is signed (a batch-norm
output, as in BNN's BN -> sign blocks): after a ReLU every input is >= 0 and sign() is
constantly +1. It compiles to the int8
SIGN op (output scale 1, zero point 0: y = +1 where the input's real value is >= 0, else -1).
"""
from __future__ import annotations

import torch
from torch import nn

from mcuqp.compress.ste import ste
from mcuqp.errors import McuqpError
from mcuqp.ir import OpKind


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    q = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    return ste(x, q, x.abs() <= 1)


class BinaryActivation(nn.Module):
    mcuqp_op = OpKind.SIGN  # the torch front end imports this module as the int8 SIGN op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x)


def _binarize_input(module: nn.Module, args: tuple) -> tuple:
    return (sign_ste(args[0]), *args[1:])


def binarize_inputs(model: nn.Module, layers: list[str]) -> list[torch.utils.hooks.RemovableHandle]:
    """Make the named layers see sign(input) (forward pre-hooks); returns the removable handles."""
    modules = dict(model.named_modules())
    handles = []
    for name in layers:
        if name not in modules or not isinstance(modules[name], (nn.Conv2d, nn.Linear)):
            raise McuqpError(f"binary activations apply to Conv2d/Linear layers; {name!r} is not one")
        handles.append(modules[name].register_forward_pre_hook(_binarize_input))
    return handles
