"""Optimal Brain Damage on a toy softmax regression, whose per-sample gradients, empirical
Fisher and Hessian diagonal have closed forms."""
import numpy as np
import torch

from compress_cases import per_sample_grads, softmax, toy_regression

from mcuqp.compress.obd import fisher_diagonal, hutchinson_diagonal, obd_saliency, obd_scores, prune_obd


def test_fisher_is_mean_squared_per_sample_gradient():
    model, x, y = toy_regression()
    g = per_sample_grads(model, x, y)
    got = fisher_diagonal(model, x, y, batch_size=5)["0"]
    np.testing.assert_allclose(got.numpy(), (g**2).mean(0), rtol=1e-4)


def test_hutchinson_estimates_the_hessian_diagonal():
    model, x, y = toy_regression(n=40)
    w = model[0].weight.detach().double().numpy()
    b = model[0].bias.detach().double().numpy()
    p = softmax(x @ w.T + b)
    exact = np.einsum("nk,nd->kd", p * (1 - p), x.astype(np.float64) ** 2) / len(x)
    est = hutchinson_diagonal(model, x, y, probes=4000, batch_size=len(x))["0"].numpy()
    np.testing.assert_allclose(est, exact, rtol=0.15, atol=0.01 * exact.max())


def test_obd_saliency_formula_and_pruning():
    model, x, y = toy_regression()
    h = fisher_diagonal(model, x, y)
    s = obd_saliency({"0": model[0].weight}, h)["0"]
    torch.testing.assert_close(s, 0.5 * h["0"] * model[0].weight.detach() ** 2)
    torch.testing.assert_close(obd_scores(model, x, y)["0"], s)
    masks = prune_obd(model, x, y, 0.4)
    assert int((~masks["0"]).sum()) == 6
    assert s[~masks["0"]].max() <= s[masks["0"]].min()
    assert torch.all(model[0].weight[~masks["0"]] == 0)
