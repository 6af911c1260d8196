"""Gradual magnitude pruning with the polynomial sparsity schedule of Zhu & Gupta (2017),
"To prune, or not to prune".

Sparsity rises from s_i to s_f over n pruning events spaced dt training steps apart from t0:
    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3,   t in {t0, t0 + dt, ..., t0 + n*dt}
pruning fast while the network is redundant and slowly near the target. Between events the
network trains with its masks fixed, and after the last event it keeps fine-tuning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from mcuqp.compress.magnitude import prune_magnitude
from mcuqp.compress.masks import finetune
from mcuqp.compress.train import FitConfig
from mcuqp.errors import McuqpError


def zhu_gupta_sparsity(t: int, *, final: float, initial: float = 0.0, t0: int = 0, n: int = 10, dt: int = 1) -> float:
    """Target sparsity at training step t (constant s_i before t0, s_f after t0 + n*dt)."""
    if n < 1 or dt < 1:
        raise McuqpError("gradual pruning needs at least one pruning event and a step spacing >= 1")
    if t < t0:
        return initial
    progress = min(1.0, (t - t0) / (n * dt))
    return final + (initial - final) * (1.0 - progress) ** 3


@dataclass
class GradualSchedule:
    final: float
    initial: float = 0.0
    t0: int = 0
    n: int = 10
    dt: int = 1
    scope: str = "layer"

    def is_event(self, t: int) -> bool:
        return t >= self.t0 and (t - self.t0) % self.dt == 0 and (t - self.t0) // self.dt <= self.n

    def sparsity(self, t: int) -> float:
        return zhu_gupta_sparsity(t, final=self.final, initial=self.initial, t0=self.t0, n=self.n, dt=self.dt)

    def events(self) -> list[tuple[int, float]]:
        """(step, sparsity) of every pruning event."""
        return [(self.t0 + k * self.dt, self.sparsity(self.t0 + k * self.dt)) for k in range(self.n + 1)]

    def hook(self, layers: list[str] | None = None):
        """An `after_step` hook that prunes to the scheduled sparsity at each event."""

        def after_step(model: nn.Module, step: int) -> None:
            if self.is_event(step):
                prune_magnitude(model, self.sparsity(step), scope=self.scope, layers=layers)

        return after_step


def schedule_for(
    final: float, total_steps: int, *, initial: float = 0.0, begin: float = 0.0, end: float = 0.7, n: int = 10,
    scope: str = "layer",
) -> GradualSchedule:
    """A schedule whose events span the fractions [begin, end] of `total_steps`; the rest fine-tunes."""
    t0 = int(begin * total_steps)
    span = max(1, int(end * total_steps) - t0)
    n = max(1, min(n, span))
    return GradualSchedule(final=final, initial=initial, t0=t0, n=n, dt=max(1, span // n), scope=scope)


def prune_gradual(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    final: float,
    config: FitConfig,
    *,
    scope: str = "layer",
    layers: list[str] | None = None,
    n: int = 10,
    end: float = 0.7,
) -> GradualSchedule:
    """Train `model` in place while pruning it gradually to `final` sparsity; returns the schedule used."""
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    sched = schedule_for(final, steps, n=n, end=end, scope=scope)
    finetune(model, x, y, config, after_step=sched.hook(layers), description="gradual prune")
    return sched
