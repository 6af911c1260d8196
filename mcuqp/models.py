"""The bundled example networks. Importable classes, so that `torch.save(module)` files
load again with `torch.load`.

Both use only layers the torch front end supports: conv + batch norm + ReLU, a
depthwise-separable residual block (one depthwise conv with multiplier 2 in DigitsCNN),
max pooling, global average pooling or a flatten of a spatial map, and linear layers.
"""
from __future__ import annotations

import torch
from torch import nn

from mcuqp.errors import McuqpError


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SeparableResidual(nn.Module):
    """relu(x + bn(pointwise(relu(bn(depthwise(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn(channels, channels, 3, groups=channels)
        self.pointwise = _conv_bn(channels, channels, 1, relu=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.pointwise(self.depthwise(x)))


class DigitsCNN(nn.Module):
    """For 1x8x8 scikit-learn digits; about 2,600 parameters."""

    input_shape = (1, 8, 8)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16)  # 16x8x8
        self.block = SeparableResidual(16)
        self.pool = nn.MaxPool2d(2)  # 16x4x4
        self.expand = _conv_bn(16, 32, 3, groups=16)  # depthwise, multiplier 2 -> 32x4x4
        self.mix = _conv_bn(32, 32, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block(self.stem(x)))
        x = self.gap(self.mix(self.expand(x)))
        return self.fc(self.flatten(x))


class MnistCNN(nn.Module):
    """For 1x28x28 MNIST; about 32,000 parameters. Ends with a flatten of a 32x4x4 map."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, 16),  # 16x28x28
            nn.MaxPool2d(2),  # 16x14x14
            _conv_bn(16, 32),  # 32x14x14
            nn.MaxPool2d(2),  # 32x7x7
            SeparableResidual(32),
            _conv_bn(32, 32, 3, stride=2),  # 32x4x4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 32),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MnistStridedCNN(nn.Module):
    """For 1x28x28 MNIST; about 31,000 parameters, quick to train: three stride-2 convolutions
    (16x14x14, 32x7x7, 32x4x4), then a flatten and two linear layers. The network of the
    search benchmark (`benchmarks/search.py`)."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10, width: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, width, 3, stride=2),
            _conv_bn(width, 2 * width, 3, stride=2),
            _conv_bn(2 * width, 2 * width, 3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, type[nn.Module]] = {"digits": DigitsCNN, "mnist5k": MnistCNN}
_ALIASES = {"digitscnn": "digits", "mnistcnn": "mnist5k", "mnist": "mnist5k"}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """A fresh, untrained bundled model by dataset name ('digits', 'mnist5k') or class name."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in MODELS:
        choices = ", ".join(f"{k} ({v.__name__})" for k, v in MODELS.items())
        raise McuqpError(f"unknown model {name!r}: choose one of {choices}")
    return MODELS[key](num_classes)
