import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcuqp.compress.magnitude import magnitude_masks, prune_magnitude
from mcuqp.compress.masks import count_nonzero, finetune, sparsity
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.datasets import load_dataset
from mcuqp.errors import McuqpError



class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 16, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1)
        return self.fc2(F.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def base(digits):
    torch.manual_seed(0)
    return fit(Small(), digits.x_train, digits.y_train, FitConfig(epochs=10, lr=3e-3))


def test_per_layer_prunes_the_smallest_fraction_of_each_layer(base):
    model = copy.deepcopy(base)
    masks = prune_magnitude(model, 0.7)
    for name, m in [("conv", model.conv), ("fc1", model.fc1), ("fc2", model.fc2)]:
        w0 = getattr(base, name).weight.detach().abs()
        mask = masks[name]
        assert (~mask).sum() == round(0.7 * w0.numel())
        assert w0[~mask].max() <= w0[mask].min()  # threshold inside the layer
        assert torch.all(m.weight[~mask] == 0)


def test_global_uses_one_threshold_over_all_layers(base):
    model = copy.deepcopy(base)
    masks = prune_magnitude(model, 0.7, scope="global")
    w = {n: getattr(base, n).weight.detach().abs() for n in masks}
    pruned = torch.cat([w[n][~masks[n]] for n in masks])
    kept = torch.cat([w[n][masks[n]] for n in masks])
    assert pruned.max() <= kept.min()
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.7 * total)
    per_layer = {n: float((~m).float().mean()) for n, m in masks.items()}
    assert max(per_layer.values()) - min(per_layer.values()) > 0.1  # layers differ, unlike per-layer
    assert sparsity(model) == pytest.approx(0.7, abs=1e-3)


def test_pruned_weights_stay_exactly_zero_through_finetuning(base, digits):
    model = copy.deepcopy(base)
    masks = prune_magnitude(model, 0.8)
    # weight decay and Adam momentum would both move free weights off zero
    before = evaluate(model, digits.x_test, digits.y_test)
    finetune(model, digits.x_train, digits.y_train, FitConfig(epochs=5, lr=3e-3, weight_decay=1e-3))
    for name, mask in masks.items():
        w = getattr(model, name).weight
        assert torch.all(w[~mask] == 0.0)
        assert torch.all(w[mask] != 0.0)
    nz, tot = count_nonzero(model)
    assert nz == sum(int(m.sum()) for m in masks.values())
    after = evaluate(model, digits.x_test, digits.y_test)
    assert after > 0.8 and after > before + 0.2  # fine-tuning recovers


def test_per_layer_dict_and_bad_sparsity(base):
    masks = magnitude_masks(base, {"fc1": 0.5})
    assert list(masks) == ["fc1"]
    with pytest.raises(McuqpError, match="sparsity must be in"):
        magnitude_masks(base, 1.0)
    with pytest.raises(McuqpError, match="single sparsity"):
        magnitude_masks(base, {"fc1": 0.5}, scope="global")
