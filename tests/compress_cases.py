"""Models shared by the compression tests: a toy softmax regression whose gradients,
empirical Fisher and Hessian diagonal have closed forms, and a small digits CNN with
prunable channels. Not a test module (imported as `compress_cases`)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mcuqp.compress.train import FitConfig, fit
from mcuqp.datasets import load_dataset


def toy_regression(seed=0, n=12, d=5, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, size=n)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, k))
    return model, x, y


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def per_sample_grads(model, x, y):
    w = model[0].weight.detach().double().numpy()
    b = model[0].bias.detach().double().numpy()
    p = softmax(x @ w.T + b)
    p[np.arange(len(y)), y] -= 1.0
    return np.einsum("nk,nd->nkd", p, x)  # dl_n/dW


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 16, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def trained_net():
    """(digits dataset, Net trained 15 epochs with a fixed seed)."""
    d = load_dataset("digits")
    torch.manual_seed(0)
    return d, fit(Net(), d.x_train, d.y_train, FitConfig(epochs=15, lr=3e-3))
