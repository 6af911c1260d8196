"""Training and evaluation loops shared by the demo and every compression method.

Hooks let methods plug in without copying the loop:
- `loss_extra(model) -> Tensor`: added to the task loss (L1 penalty, ...).
- `after_step(model, step)`: called after every optimizer step (re-apply pruning masks,
  clip latent binary weights, update a sparsity schedule, ...).
- `before_step(model, step)`: called after backward, before the optimizer step
  (gradient accumulation for importance scores, ...).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

StepHook = Callable[[nn.Module, int], None]


@dataclass
class FitConfig:
    epochs: int = 10
    lr: float = 1e-2
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0
    progress: bool = False  # tqdm progress bar (CLI); off in tests and libraries


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def fit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: FitConfig = FitConfig(),
    *,
    loss_extra: Callable[[nn.Module], torch.Tensor] | None = None,
    before_step: StepHook | None = None,
    after_step: StepHook | None = None,
    description: str = "train",
) -> nn.Module:
    """Train in place with Adam and a cosine learning-rate schedule; returns the model."""
    seed_everything(config.seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, (len(xt) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(config.seed)
    epochs = range(config.epochs)
    if config.progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=description, unit="epoch", leave=False)
    step = 0
    model.train()
    for _ in epochs:
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), config.batch_size):
            idx = perm[i : i + config.batch_size]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            if loss_extra is not None:
                loss = loss + loss_extra(model)
            opt.zero_grad()
            loss.backward()
            if before_step is not None:
                before_step(model, step)
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model, step)
            step += 1
    model.eval()
    return model


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    return torch.cat([model(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]).numpy()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(y)).mean())


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a float model."""
    return accuracy(predict(model, x), y)
