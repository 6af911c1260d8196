import copy

import numpy as np
import pytest
import torch
from torch import nn

from mcuqp.compress.magnitude import prune_magnitude
from mcuqp.compress.qat import (
    ActFakeQuant,
    QatLayer,
    fake_quantize,
    prepare_qat,
    qat_layers,
    qat_ranges,
    qparams,
    strip_qat,
    train_qat,
)
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.datasets import load_dataset
from mcuqp.frontends.torch_fx import import_torch
from mcuqp.models import DigitsCNN
from mcuqp.quant.ptq import activation_qparams, quantize, quantize_input, quantize_weights



def _qdq_numpy(v, lo, hi):
    scale, zp = activation_qparams(lo, hi)
    r = v.astype(np.float32) / np.float32(scale)
    q = np.clip(np.sign(r) * np.floor(np.abs(r) + 0.5) + zp, -128, 127)
    return ((q - zp) * np.float32(scale)).astype(np.float32)


def test_fake_quant_forward_equals_quantize_dequantize_and_ste():
    torch.manual_seed(0)
    x = (torch.randn(1000) * 3).requires_grad_()
    scale, zp = qparams(-2.0, 5.0)
    y = fake_quantize(x, scale, zp)
    np.testing.assert_array_equal(y.detach().numpy(), _qdq_numpy(x.detach().numpy(), -2.0, 5.0))
    y.sum().backward()
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale
    inside = (x >= lo) & (x <= hi)
    assert torch.equal(x.grad, inside.float())
    assert 0 < int(inside.sum()) < 1000


def test_ema_observer():
    fq = ActFakeQuant("v", ema_decay=0.9).train()
    fq(torch.tensor([-1.0, 2.0]))
    assert fq.range() == (-1.0, 2.0)
    fq(torch.tensor([0.0, 4.0]))
    assert fq.range() == pytest.approx((-0.9, 2.2))
    fq.eval()
    fq(torch.tensor([-100.0, 100.0]))  # eval does not observe
    assert fq.range() == pytest.approx((-0.9, 2.2))


def test_batchnorm_folding_matches_conv_then_bn():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1, 1)
    ref_conv, ref_bn = copy.deepcopy(conv), copy.deepcopy(bn)
    layer = QatLayer(conv, bn, kind=None)
    x = torch.randn(8, 3, 6, 6)
    # training: the fold uses the batch statistics, as batch norm in training mode does
    layer.train()
    ref_bn.train()
    torch.testing.assert_close(layer(x), ref_bn(ref_conv(x)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)
    # inference: the running statistics
    layer.eval()
    ref_bn.eval()
    torch.testing.assert_close(layer(x), ref_bn(ref_conv(x)), rtol=1e-4, atol=1e-5)
    plain = layer.to_float()
    torch.testing.assert_close(plain(x), ref_bn(ref_conv(x)), rtol=1e-4, atol=1e-5)


def test_folded_weights_are_fake_quantized_per_channel():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    layer = QatLayer(conv, bn, kind="int8").eval()
    w, _ = layer.folded()
    k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    wf = (conv.weight * k[:, None, None, None]).detach()
    scale = wf.abs().amax((1, 2, 3), keepdim=True) / 127
    torch.testing.assert_close(w, torch.round(wf / scale) * scale, rtol=0, atol=1e-7)


@pytest.fixture(scope="module")
def trained():
    d = load_dataset("digits")
    torch.manual_seed(0)
    return d, fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=12, lr=3e-3))


def test_qat_trains_strips_and_exports_ranges(trained):
    d, model = trained
    float_acc = evaluate(model, d.x_test, d.y_test)
    qm = prepare_qat(model, d.x_train[:1])
    assert not any(isinstance(m, nn.BatchNorm2d) for n, m in qm.named_modules() if "." not in n)
    train_qat(qm, d.x_train, d.y_train, FitConfig(epochs=3, lr=1e-3))
    assert evaluate(qm, d.x_test, d.y_test) > float_acc - 0.03
    plain = strip_qat(qm)
    assert not any(isinstance(m, (ActFakeQuant, QatLayer, nn.BatchNorm2d)) for m in plain.modules())
    # the plain module is the QAT graph without its activation fake quantization
    for m in qm.modules():
        if isinstance(m, ActFakeQuant):
            m.quantize = False
    x = torch.as_tensor(d.x_test[:64])
    with torch.no_grad():
        torch.testing.assert_close(plain(x), qm.eval()(x), rtol=1e-5, atol=1e-5)
    for m in qm.modules():
        if isinstance(m, ActFakeQuant):
            m.quantize = True
    # every weight is exactly on the per-channel int8 grid the PTQ will choose
    for m in plain.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach().numpy()
            q, s = quantize_weights(w, 0)
            np.testing.assert_allclose(q * s.reshape(-1, *[1] * (w.ndim - 1)), w, rtol=1e-6, atol=1e-9)
    # the learnt ranges cover every value the int8 graph needs: no calibration data required
    ranges = qat_ranges(qm)
    fg = import_torch(plain, x[:1])
    graph = quantize(fg, None, ranges_override=ranges)
    assert set(ranges) <= set(fg.value_names())
    # the input fake quant is exactly the int8 graph's input quantization
    fq_in = qm.get_submodule(f"fq_{fg.input_name}")
    s, zp = graph.input.quant.s, graph.input.quant.zp
    dq = (quantize_input(graph, x.numpy()).astype(np.float32) - zp) * np.float32(s)
    np.testing.assert_array_equal(fq_in(x).detach().numpy(), dq.transpose(0, 3, 1, 2))


def test_masks_and_ternary_levels_survive_qat(trained):
    d, model = trained
    pruned = copy.deepcopy(model)
    masks = prune_magnitude(pruned, 0.5, layers=["mix.0", "fc"])
    qm = prepare_qat(pruned, d.x_train[:1], weight="ternary", per_layer={"stem.0": "int8"})
    assert qat_layers(qm)["mix.0"].kind == "ternary" and qat_layers(qm)["stem.0"].kind == "int8"
    train_qat(qm, d.x_train, d.y_train, FitConfig(epochs=2, lr=1e-3))
    plain = strip_qat(qm)
    for name in ("mix.0", "fc"):
        w = plain.get_submodule(name).weight.detach()
        mask = masks[name]
        assert torch.all(w[~mask] == 0)
        for row in w.reshape(w.shape[0], -1):
            assert len(row.unique()) <= 3 and len(row.abs().unique()) <= 2
            q = row / (row.abs().max() / 127)
            assert set(q.round().abs().tolist()) <= {0.0, 127.0}
            torch.testing.assert_close(q, q.round(), rtol=0, atol=1e-4)


@pytest.mark.xfail(strict=True, reason=(
    "known defect since the packed-layer PTQ (2026-12-03): ternary weights become int8 -1/0/+1 "
    "with scale alpha, so the bias (scale input_scale * alpha) is 127x coarser than the QAT "
    "simulation assumes; the simulation must fake-quantize the bias at that scale"))
def test_qat_simulation_matches_the_int8_reference(trained):
    """The point of QAT: what it trains is what the integer graph computes."""
    from mcuqp.compress.train import accuracy, predict
    from mcuqp.quant.ptq import dequantize_output
    from mcuqp.reference.interpreter import run

    d, model = trained
    qm = prepare_qat(model, d.x_train[:1], weight="ternary", per_layer={"stem.0": "int8", "fc": "int8"})
    train_qat(qm, d.x_train, d.y_train, FitConfig(epochs=2, lr=3e-3))
    simulated = predict(qm, d.x_test)
    plain = strip_qat(qm)
    graph = quantize(import_torch(plain, torch.as_tensor(d.x_train[:1])), None, ranges_override=qat_ranges(qm))
    integer = dequantize_output(graph, run(graph, quantize_input(graph, d.x_test)))
    # requantization rounding differs from float fake quantization by at most a couple of steps
    assert np.abs(simulated - integer).max() <= 3 * graph.output.quant.s
    assert (simulated.argmax(1) == integer.argmax(1)).mean() > 0.98
    assert abs(accuracy(simulated, d.y_test) - accuracy(integer, d.y_test)) <= 0.01
