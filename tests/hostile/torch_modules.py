"""Torch modules that mcuqp must refuse with one line: unsupported layers, data-dependent
control flow, shapes that do not fit the data, values that cannot be quantized. They take
the digits images (N, 1, 8, 8). The hostile-input test saves them with torch.save, so this
module must be importable as `hostile.torch_modules` by the CLI subprocess."""
from __future__ import annotations

import torch
from torch import nn


class GeluNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.GELU()
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


class LstmNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out, _ = self.lstm(x.reshape(x.shape[0], 8, 8))
        return self.fc(out[:, -1])


class ConvTransposeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(1, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.up(x), 1))


class UpsampleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")  # nearest is supported; bilinear is not
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.up(x), 1))


class BranchNet(nn.Module):
    """Data-dependent control flow: which layer runs depends on the input values."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 10)
        self.b = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        if x.sum() > 0:
            return self.a(x)
        return self.b(x)


class LoopNet(nn.Module):
    """A loop whose trip count depends on the input values."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        while x.abs().max() > 1:
            x = x / 2
        return self.fc(x)


class WrongShapeNet(nn.Module):
    """Expects 10 features; the digits images have 64."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


class InfNet(nn.Module):
    """Its activations are infinite: no int8 range can hold them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.fill_(float("inf"))

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


class NanWeightNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight[0, 0] = float("nan")

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


class TwoOutputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        y = self.fc(torch.flatten(x, 1))
        return y, y


class IdentityNet(nn.Module):
    """No layer at all between input and output."""

    def forward(self, x):
        return x


class GroupedConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.grouped(self.stem(x)), 1))


MODULES = {cls.__name__: cls for cls in (
    GeluNet, LstmNet, ConvTransposeNet, UpsampleNet, BranchNet, LoopNet, WrongShapeNet, InfNet, NanWeightNet,
    TwoOutputNet, IdentityNet, GroupedConvNet)}
