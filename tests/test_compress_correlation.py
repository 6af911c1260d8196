import numpy as np
import pytest
import torch
from torch import nn

from mcuqp.compress.correlation import correlation_matrix, linear_fit, prune_correlation
from compress_cases import trained_net
from mcuqp.compress.train import evaluate


def test_linear_fit_and_correlation():
    torch.manual_seed(0)
    a = torch.randn(3, 100)
    a[2] = 2.5 * a[0] - 1.0
    alpha, beta = linear_fit(a[2], a[0])
    assert alpha == pytest.approx(2.5) and beta == pytest.approx(-1.0)
    c = correlation_matrix(a)
    assert c[0, 2] == pytest.approx(1.0) and c[0, 1] < 0.5 and c[0, 0] == -1.0


def test_merging_a_duplicated_neuron_is_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    with torch.no_grad():  # neuron 4 = 3 * neuron 1: relu commutes with a positive scale
        model[0].weight[4] = 3.0 * model[0].weight[1]
        model[0].bias[4] = 3.0 * model[0].bias[1]
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    small, kept = prune_correlation(model, x, {"0": 0.2})
    assert kept["0"].tolist() in ([0, 1, 2, 3], [0, 2, 3, 4])  # one of the pair goes
    with torch.no_grad():
        torch.testing.assert_close(small(torch.as_tensor(x)), model(torch.as_tensor(x)), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def trained():
    return trained_net()


def test_correlation_beats_random_channels_at_the_same_ratio(trained):
    d, model = trained
    merged, kept = prune_correlation(model, d.x_train, 0.5)
    rand, _ = prune_correlation(model, d.x_train, 0.5, selection="random")
    assert {k: len(v) for k, v in kept.items()} == {"conv1": 8, "conv2": 16, "fc1": 32}
    assert merged.conv1.out_channels == 8 and merged.bn1.num_features == 8 and merged.conv2.in_channels == 8
    acc = evaluate(merged, d.x_test, d.y_test)
    assert acc > evaluate(rand, d.x_test, d.y_test) + 0.05
    assert acc > 0.85
