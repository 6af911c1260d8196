import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from mcuqp.compress.lowbit import (
    apply_lowbit,
    binary_values,
    int_values,
    quantize_weight,
    strip_lowbit,
    ternary_values,
    train_lowbit,
)
from mcuqp.compress.magnitude import prune_magnitude
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.datasets import load_dataset
from mcuqp.errors import McuqpError



class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


def _rows(w):
    return w.detach().reshape(w.shape[0], -1)


def test_ternary_twn_threshold_and_alpha():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    t = ternary_values(w)
    for wr, tr in zip(_rows(w), _rows(t)):
        delta = 0.7 * wr.abs().mean()
        big = wr.abs() > delta
        alpha = wr.abs()[big].mean()
        levels = set(tr.tolist())
        assert len(levels) == 3  # -alpha, 0, +alpha: three levels, not two
        torch.testing.assert_close(tr, alpha * torch.sign(wr) * big, rtol=1e-6, atol=0)


def test_binary_two_levels_alpha_mean_abs_and_sign_zero():
    torch.manual_seed(0)
    w = torch.randn(5, 12)
    w[2, 3] = 0.0
    b = binary_values(w)
    for wr, br in zip(_rows(w), _rows(b)):
        alpha = wr.abs().mean()
        assert len(set(br.tolist())) == 2 and br.max() == -br.min()
        torch.testing.assert_close(br, torch.where(wr >= 0, alpha, -alpha), rtol=1e-6, atol=0)
    assert b[2, 3] > 0  # sign(0) = +1


def test_binary_ste_cancels_gradient_where_latent_exceeds_one():
    w = torch.tensor([[-1.5, -0.5, 0.2, 0.9, 1.0, 2.0]], requires_grad=True)
    g = torch.arange(1.0, 7.0)[None]
    (quantize_weight(w, "binary") * g).sum().backward()
    assert w.grad.tolist() == [[0.0, 2.0, 3.0, 4.0, 5.0, 0.0]]


def test_ternary_and_int_ste_pass_gradient_through():
    torch.manual_seed(0)
    w = torch.randn(3, 8, requires_grad=True)
    for kind in ("ternary", "int4", "int2"):
        w.grad = None
        (quantize_weight(w, kind) * 3.0).sum().backward()
        assert torch.equal(w.grad, torch.full_like(w, 3.0))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_int_levels_are_symmetric_per_channel(bits):
    torch.manual_seed(1)
    w = torch.randn(4, 30) * torch.tensor([[0.1], [1.0], [3.0], [0.01]])
    q = int_values(w, bits)
    qmax = 2 ** (bits - 1) - 1
    for wr, qr in zip(_rows(w), _rows(q)):
        scale = wr.abs().max() / qmax
        k = qr / scale
        torch.testing.assert_close(k, torch.round(k), rtol=0, atol=1e-4)
        assert k.abs().max().round() == qmax
        assert len(set(torch.round(k).tolist())) <= 2 * qmax + 1


def test_mask_statistics_over_kept_weights_and_zeros_stay():
    torch.manual_seed(2)
    w = torch.randn(3, 20)
    mask = torch.rand(3, 20) > 0.5
    b = binary_values(w, mask)
    t = ternary_values(w, mask)
    assert torch.all(b[~mask] == 0) and torch.all(t[~mask] == 0)
    for r in range(3):
        kept = w[r][mask[r]].abs()
        assert torch.allclose(b[r][mask[r]].abs(), kept.mean().expand(len(kept)))
        delta = 0.7 * kept.mean()
        assert torch.allclose(t[r][mask[r] & (w[r].abs() > delta)].abs().unique(), kept[kept > delta].mean())


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(McuqpError, match="unknown weight quantization"):
        apply_lowbit(Small(), "int3")
    with pytest.raises(McuqpError, match="no Conv2d/Linear layer"):
        apply_lowbit(Small(), "int4", {"nope": "int8"})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def base(digits):
    torch.manual_seed(0)
    return fit(Small(), digits.x_train, digits.y_train, FitConfig(epochs=10, lr=3e-3))


@pytest.mark.parametrize("kind,levels", [("ternary", 3), ("binary", 2), ("int4", 15), ("int2", 3)])
def test_train_then_strip_gives_exact_levels_and_learns(digits, base, kind, levels):
    model = copy.deepcopy(base)
    prune_magnitude(model, 0.5)
    naive = copy.deepcopy(model)
    apply_lowbit(naive, kind)
    strip_lowbit(naive)
    train_lowbit(model, digits.x_train, digits.y_train, kind, FitConfig(epochs=5, lr=3e-3))
    assert not parametrize.is_parametrized(model.conv)
    acc = evaluate(model, digits.x_test, digits.y_test)
    assert acc > 0.85 and acc > evaluate(naive, digits.x_test, digits.y_test)  # STE training helps
    for layer in (model.conv, model.fc):
        w = _rows(layer.weight)
        mask = _rows(layer.weight_mask)
        assert torch.all(w[~mask] == 0)  # pruned weights survived as exact zeros
        for row, m in zip(w, mask):
            nz = row[m].unique()
            if kind == "binary":
                assert len(nz) <= 2 and torch.allclose(nz.abs(), nz.abs().max().expand(len(nz)))
            else:
                assert len(row.unique()) <= levels
            q = row / (row.abs().max() / 127)
            if kind in ("binary", "ternary", "int2"):
                # per-channel int8 PTQ (scale max|w|/127) represents every value exactly
                torch.testing.assert_close(q, q.round(), rtol=0, atol=1e-4)
                assert set(q.round().abs().tolist()) <= {0.0, 127.0}
            else:  # 127 is prime: int4 levels land within half an int8 step, all still distinct
                assert len(q.round().unique()) == len(row.unique())


def test_binary_latents_clipped(digits):
    torch.manual_seed(0)
    model = Small()
    with torch.no_grad():
        model.fc.weight.mul_(40.0)
    apply_lowbit(model, "binary")
    from mcuqp.compress.lowbit import clip_binary_latent

    clip_binary_latent(model)
    latent = model.fc.parametrizations.weight.original
    assert latent.abs().max() <= 1.0
    strip_lowbit(model)
    assert np.isfinite(model.fc.weight.detach().numpy()).all()
