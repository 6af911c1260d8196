"""First-order Taylor scores on a toy softmax regression, whose gradients have a closed form."""
import numpy as np
import torch
from torch import nn

from compress_cases import per_sample_grads, toy_regression

from mcuqp.compress.taylor import channel_scores, prune_taylor, taylor_scores
from mcuqp.compress.channels import analyze


def test_taylor_is_sum_over_batches_of_abs_grad_times_weight():
    model, x, y = toy_regression()
    w = model[0].weight.detach().double().numpy()
    g = per_sample_grads(model, x, y)
    expected = sum(np.abs(g[i : i + 4].mean(0) * w) for i in range(0, len(x), 4))
    got = taylor_scores(model, x, y, batch_size=4)["0"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_taylor_pruning_removes_lowest_scores():
    model, x, y = toy_regression()
    s = taylor_scores(model, x, y)["0"]
    masks = prune_taylor(model, x, y, 0.5)
    assert s[~masks["0"]].max() <= s[masks["0"]].min()
    assert torch.all(model[0].weight[~masks["0"]] == 0)


def test_channel_score_is_sum_over_filter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    x = np.random.default_rng(0).normal(size=(8, 1, 8, 8)).astype(np.float32)
    y = np.arange(8) % 3
    scores = taylor_scores(model, x, y)
    space = analyze(model, torch.as_tensor(x[:1])).spaces["0"]
    torch.testing.assert_close(channel_scores(scores, space), scores["0"].sum((1, 2, 3)))
