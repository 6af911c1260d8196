import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcuqp.compress.gradual import GradualSchedule, prune_gradual, schedule_for, zhu_gupta_sparsity
from mcuqp.compress.magnitude import prune_magnitude
from mcuqp.compress.masks import finetune
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.datasets import load_dataset



def test_zhu_gupta_schedule_values():
    kw = dict(final=0.8, initial=0.1, t0=100, n=10, dt=20)
    assert zhu_gupta_sparsity(0, **kw) == 0.1  # before t0
    assert zhu_gupta_sparsity(100, **kw) == pytest.approx(0.1)
    assert zhu_gupta_sparsity(300, **kw) == pytest.approx(0.8)
    assert zhu_gupta_sparsity(10_000, **kw) == pytest.approx(0.8)
    # s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
    assert zhu_gupta_sparsity(200, **kw) == pytest.approx(0.8 - 0.7 * 0.5**3)
    assert zhu_gupta_sparsity(140, **kw) == pytest.approx(0.8 - 0.7 * 0.8**3)
    steps = [zhu_gupta_sparsity(100 + 20 * k, **kw) for k in range(11)]
    increments = [b - a for a, b in zip(steps, steps[1:])]
    assert all(i > 0 for i in increments)
    assert all(b < a for a, b in zip(increments, increments[1:]))  # prunes fast first, then slowly


def test_schedule_events():
    s = GradualSchedule(final=0.5, t0=10, n=4, dt=5)
    assert [t for t, _ in s.events()] == [10, 15, 20, 25, 30]
    assert [s.is_event(t) for t in (9, 10, 12, 15, 30, 35)] == [False, True, False, True, True, False]
    sched = schedule_for(0.9, 1000, end=0.5, n=10)
    assert sched.t0 == 0 and sched.n * sched.dt == 500


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


def test_gradual_pruning_reaches_target_with_exact_zeros_and_beats_one_shot():
    d = load_dataset("digits")
    torch.manual_seed(0)
    base = fit(Small(), d.x_train, d.y_train, FitConfig(epochs=10, lr=3e-3))
    config = FitConfig(epochs=4, lr=3e-3)
    model = copy.deepcopy(base)
    sched = prune_gradual(model, d.x_train, d.y_train, 0.95, config)
    steps = config.epochs * math.ceil(len(d.x_train) / config.batch_size)
    assert sched.t0 + sched.n * sched.dt < steps  # fine-tuning continues after the last event
    for layer in (model.conv, model.fc):
        w = layer.weight
        assert int((w == 0).sum()) == round(0.95 * w.numel())
        assert torch.equal(w == 0, ~layer.weight_mask)
    one_shot = copy.deepcopy(base)
    prune_magnitude(one_shot, 0.95)
    finetune(one_shot, d.x_train, d.y_train, config)
    assert evaluate(model, d.x_test, d.y_test) > evaluate(one_shot, d.x_test, d.y_test) + 0.1
