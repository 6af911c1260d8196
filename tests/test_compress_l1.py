import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcuqp.compress.l1 import l1_penalty, prune_l1, threshold_masks
from mcuqp.compress.masks import finetune
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.datasets import load_dataset



class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


def test_penalty_is_lambda_times_l1_norm():
    torch.manual_seed(0)
    m = Small()
    expected = 1e-3 * (m.conv.weight.abs().sum() + m.fc.weight.abs().sum())
    torch.testing.assert_close(l1_penalty(1e-3)(m), expected)


def test_threshold_rule_quality_times_std():
    torch.manual_seed(0)
    m = Small()
    masks = threshold_masks(m, quality=0.5)
    for name in ("conv", "fc"):
        w = getattr(m, name).weight.detach()
        assert torch.equal(masks[name], w.abs() >= 0.5 * w.std())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_l1_training_drives_weights_to_zero_then_prunes(digits):
    config = FitConfig(epochs=8, lr=3e-3)
    torch.manual_seed(0)
    plain = fit(Small(), digits.x_train, digits.y_train, config)
    torch.manual_seed(0)
    model = Small()
    masks = prune_l1(model, digits.x_train, digits.y_train, 1e-3, config)
    tiny = lambda m: float((m.fc.weight.abs() < 1e-2).float().mean())  # noqa: E731
    assert tiny(model) > tiny(plain) + 0.2  # L1 concentrated the weights at zero
    pruned = 1 - float(masks["fc"].float().mean())
    assert pruned > 0.3
    acc = evaluate(model, digits.x_test, digits.y_test)
    finetune(model, digits.x_train, digits.y_train, FitConfig(epochs=2, lr=1e-3))
    assert torch.all(model.fc.weight[~masks["fc"]] == 0)
    assert evaluate(model, digits.x_test, digits.y_test) >= acc - 0.02 and acc > 0.85
