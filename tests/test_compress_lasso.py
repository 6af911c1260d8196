import numpy as np
import pytest
import torch

from mcuqp.compress.lasso import lasso_select, least_squares, prune_lasso
from compress_cases import trained_net
from mcuqp.compress.train import evaluate


def test_lasso_select_finds_the_channels_that_explain_the_target():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 10))
    y = 3.0 * a[:, 2] - 2.0 * a[:, 7] + 0.5 * a[:, 5] + 0.01 * rng.normal(size=500)
    assert lasso_select(a, y, 2).tolist() == [2, 7]
    assert lasso_select(a, y, 3).tolist() == [2, 5, 7]


def test_least_squares_recovers_weights_and_bias():
    torch.manual_seed(0)
    x = torch.randn(200, 3, 4)
    w = torch.randn(5, 12)
    b = torch.randn(5)
    w_hat, b_hat = least_squares(x, x.reshape(200, -1) @ w.T + b)
    torch.testing.assert_close(w_hat, w, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b_hat, b, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def trained():
    return trained_net()


def test_lasso_beats_random_channels_at_the_same_ratio(trained):
    d, model = trained
    lasso, kept = prune_lasso(model, d.x_train, 0.75)
    rand, kept_r = prune_lasso(model, d.x_train, 0.75, selection="random")
    assert {k: len(v) for k, v in kept.items()} == {"conv1": 4, "conv2": 8, "fc1": 16}
    assert lasso.conv2.out_channels == 8 and lasso.fc1.in_features == 8 * 16 and lasso.fc2.in_features == 16
    acc_lasso = evaluate(lasso, d.x_test, d.y_test)
    acc_random = evaluate(rand, d.x_test, d.y_test)
    assert acc_lasso > acc_random + 0.01
    assert acc_lasso > evaluate(model, d.x_test, d.y_test) - 0.05  # no fine-tuning needed
