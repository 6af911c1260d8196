"""Calibration and post-training int8 quantization: the TFLite formulas on every tensor,
and (with the numpy reference kernels) int8 accuracy against float."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mcuqp import ir
from mcuqp.compress.train import FitConfig, accuracy, fit, predict
from mcuqp.datasets import load_dataset
from mcuqp.errors import McuqpError
from mcuqp.frontends.torch_fx import import_torch
from mcuqp.models import DigitsCNN
from mcuqp.quant import params
from mcuqp.quant.calibrate import calibrate, format_ranges, mse_range, observe, quantize_dequantize
from mcuqp.quant.ptq import (
    activation_qparams,
    dequantize_output,
    quantize,
    quantize_input,
    quantize_module,
    quantize_weights,
)

WEIGHTED = (ir.OpKind.CONV2D, ir.OpKind.DEPTHWISE_CONV2D, ir.OpKind.FULLY_CONNECTED)


def _bn_model(seed: int = 0) -> nn.Module:
    model = DigitsCNN()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = _bn_model()
    x = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    fg = import_torch(model, torch.as_tensor(x[:1]))
    return model, fg, x, quantize(fg, x)


# ----------------------------------------------------------------------------- formulas


def test_activation_qparams_follow_tflite() -> None:
    scale, zp = activation_qparams(0.0, 1.0)
    assert scale == np.float32(1.0) / np.float32(255.0) and zp == -128
    scale, zp = activation_qparams(-1.0, 1.0)  # zp from min: -128 + 127.5 rounds half away to -1
    assert scale == np.float32(2.0) / np.float32(255.0) and zp == -1
    scale, zp = activation_qparams(0.5, 2.0)  # ranges always include 0
    assert scale == np.float32(2.0) / np.float32(255.0) and zp == -128
    scale, zp = activation_qparams(-3.0, -1.0)
    assert zp == 127
    with pytest.raises(McuqpError, match="empty"):
        activation_qparams(0.0, 0.0)


def test_weights_are_per_channel_symmetric(setup) -> None:
    _, fg, _, g = setup
    for op in g.ops:
        if op.kind not in WEIGHTED:
            continue
        w = g.tensor(op.inputs[1])
        axis = 3 if op.kind == ir.OpKind.DEPTHWISE_CONV2D else 0
        assert w.dtype == ir.DType.INT8 and w.data.dtype == np.int8 and w.quant.axis == axis
        assert np.all(w.quant.zero_point == 0) and w.quant.scale.dtype == np.float32
        q = np.moveaxis(w.data.astype(np.int32), axis, 0).reshape(w.data.shape[axis], -1)
        assert q.min() >= -127 and q.max() <= 127
        assert np.all(np.abs(q).max(axis=1) == 127)  # every channel uses its full range
        fw = np.moveaxis(fg.op(op.name).weight, axis, 0).reshape(q.shape)
        np.testing.assert_array_equal(w.quant.scale, (np.abs(fw).max(axis=1) / np.float32(127)).astype(np.float32))
        # dequantized weights are within half a step of the float weights
        assert np.all(np.abs(q * w.quant.scale[:, None] - fw) <= w.quant.scale[:, None] * 0.5 * (1 + 1e-6))


def test_zero_channel_gets_positive_scale_and_big_bias_adjusts_scale() -> None:
    w = np.ones((3, 1, 1, 2), dtype=np.float32)
    w[1] = 0.0
    q, s = quantize_weights(w, 0)
    assert np.all(s > 0) and np.all(q[1] == 0) and np.all(q[[0, 2]] == 127)
    # a bias that would overflow int32 at scale in_s * w_s widens the weight scale (TFLite)
    q, s = quantize_weights(w, 0, bias=np.array([0.0, 0.0, 1e9], np.float32), input_scale=0.01)
    assert s[2] > s[0] and abs(1e9 / (0.01 * s[2])) < 2**31


def test_bias_and_requant_match_the_formulas(setup) -> None:
    _, fg, _, g = setup
    for op in g.ops:
        if op.kind not in WEIGHTED:
            continue
        x, w, b, y = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.inputs[2]), g.tensor(op.outputs[0])
        bias_scale = np.float32(x.quant.s) * w.quant.scale
        assert b.dtype == ir.DType.INT32 and b.data.dtype == np.int32
        np.testing.assert_array_equal(b.quant.scale, bias_scale)
        exact = fg.op(op.name).bias.astype(np.float64) / bias_scale.astype(np.float64)
        assert np.all(np.abs(b.data - exact) <= 0.5 + 1e-6 * np.abs(exact))
        want = params.conv_requant(x.quant.s, w.quant.scale, y.quant.s)
        np.testing.assert_array_equal(op.attrs.requant.multiplier, want.multiplier)
        np.testing.assert_array_equal(op.attrs.requant.shift, want.shift)
        eff = op.attrs.requant.multiplier * 2.0 ** (op.attrs.requant.shift.astype(np.float64) - 31)
        real = x.quant.s * w.quant.scale.astype(np.float64) / y.quant.s
        np.testing.assert_allclose(eff, real, rtol=1e-8)
        assert op.attrs.input_offset == -x.quant.zp and op.attrs.output_offset == y.quant.zp
        lo, hi = params.activation_range(fg.op(op.name).activation, y.quant.s, y.quant.zp)
        assert (op.attrs.act_min, op.attrs.act_max) == (lo, hi)


def test_graph_structure_and_shared_qparams(setup) -> None:
    _, fg, x, g = setup
    g.validate()
    ranges = calibrate(fg, x)
    for op in g.ops:
        y = g.tensor(op.outputs[0])
        assert y.dtype == ir.DType.INT8 and y.quant.scale.dtype == np.float32
        if op.kind in (ir.OpKind.MAX_POOL2D, ir.OpKind.AVG_POOL2D, ir.OpKind.RESHAPE):
            xin = g.tensor(op.inputs[0])
            assert y.quant.s == xin.quant.s and y.quant.zp == xin.quant.zp
        else:
            assert (y.quant.s, y.quant.zp) == activation_qparams(*ranges[op.name])
        if op.kind == ir.OpKind.ADD:
            a, b = (g.tensor(n) for n in op.inputs)
            assert op.attrs == params.add_attrs(a.quant.s, a.quant.zp, b.quant.s, b.quant.zp, y.quant.s, y.quant.zp,
                                                fg.op(op.name).activation)
    assert g.input.shape == (1, 8, 8, 1) and g.output.shape == (1, 10)


def test_softmax_output_is_fixed() -> None:
    model = nn.Sequential(nn.Linear(6, 4), nn.Softmax(dim=1)).eval()
    x = np.random.default_rng(1).normal(size=(32, 6)).astype(np.float32)
    g = quantize_module(model, x)
    sm = g.ops[-1]
    assert sm.kind == ir.OpKind.SOFTMAX and g.output.quant.zp == -128
    assert g.output.quant.s == np.float32(1 / 256)
    assert sm.attrs == params.softmax_attrs(g.tensor(sm.inputs[0]).quant.s)


# ----------------------------------------------------------------------------- input / output


def _graph_with_input(scale: float, zp: int, shape: tuple[int, ...]) -> ir.Graph:
    g = ir.Graph()
    g.add_tensor(ir.Tensor("x", shape, ir.DType.INT8, ir.QParams(scale, zp)))
    g.inputs.append("x")
    g.outputs.append("x")
    return g


def test_quantize_input_rounds_half_away_and_clamps() -> None:
    g = _graph_with_input(0.5, -3, (1, 5))
    x = np.array([[0.25, -0.25, 0.75, 100.0, -100.0]], np.float32)  # x / scale = .5, -.5, 1.5, ...
    np.testing.assert_array_equal(quantize_input(g, x), [[-2, -4, -1, 127, -128]])
    np.testing.assert_array_equal(dequantize_output(g, np.array([[-3, -1, 127]], np.int8)), [[0.0, 1.0, 65.0]])


def test_quantize_input_is_nhwc_batch_first() -> None:
    g = _graph_with_input(1.0, 0, (1, 2, 3, 4))
    x = np.arange(2 * 4 * 2 * 3, dtype=np.float32).reshape(2, 4, 2, 3)  # NCHW
    q = quantize_input(g, x)
    assert q.shape == (2, 2, 3, 4) and q.dtype == np.int8
    assert q[1, 1, 2, 3] == x[1, 3, 1, 2]
    np.testing.assert_array_equal(dequantize_output(g, q), x)
    with pytest.raises(McuqpError, match=r"expects \(N, 4, 2, 3\)"):
        quantize_input(g, np.zeros((1, 3, 2, 3), np.float32))


# ----------------------------------------------------------------------------- calibration


def test_calibration_methods_include_zero_and_clip() -> None:
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(8, 8)).eval()
    x = rng.normal(size=(400, 8)).astype(np.float32)
    x[0, 0] = 60.0  # one outlier
    fg = import_torch(model, torch.as_tensor(x[:1]))
    mm = calibrate(fg, x)
    assert mm["input_1"] == (pytest.approx(float(x.min())), 60.0)
    for method in ("percentile", "mse"):
        r = calibrate(fg, x, method=method, percentile=99.9)
        for name, (lo, hi) in r.items():
            assert lo <= 0.0 <= hi and mm[name][0] <= lo and hi <= mm[name][1]
    # percentile clips the outlier; MSE keeps it (clipping 60 to ~4 costs more than it saves)
    assert calibrate(fg, x, method="percentile", percentile=99.9)["input_1"][1] < 10.0
    table = format_ranges(mm, observe(fg, x))
    assert "input_1" in table and "zero point" in table
    with pytest.raises(McuqpError, match="unknown calibration method 'kl'"):
        calibrate(fg, x, method="kl")
    with pytest.raises(McuqpError, match=r"model expects \(N, 8\)"):
        calibrate(fg, x[:, :4])


def test_mse_range_beats_minmax_on_heavy_tails() -> None:
    rng = np.random.default_rng(0)
    t3 = rng.standard_t(3, size=200_000)
    for v, gain in ((t3, 0.8), (np.maximum(t3, 0.0), 0.95)):
        v = v.astype(np.float32)
        lo, hi = mse_range(v)
        full = (float(v.min()), float(v.max()))
        err = lambda r: float(np.mean((quantize_dequantize(v, *r) - v) ** 2))  # noqa: E731
        assert err((lo, hi)) < gain * err(full)  # measured exactly, not with the search's model
        assert full[0] <= lo <= 0 <= hi < full[1]


def test_ranges_override(setup) -> None:
    _, fg, x, _ = setup
    target = next(op.name for op in fg.ops if op.kind == ir.OpKind.ADD)
    g = quantize(fg, x, ranges_override={target: (-1.0, 3.0)})
    assert (g.tensor(target).quant.s, g.tensor(target).quant.zp) == activation_qparams(-1.0, 3.0)
    with pytest.raises(McuqpError, match="unknown values 'nope'"):
        quantize(fg, x, ranges_override={"nope": (0.0, 1.0)})
    full = calibrate(fg, x)
    g2 = quantize(fg, None, ranges_override=full)
    g1 = quantize(fg, x)
    for name, t in g1.tensors.items():
        assert np.array_equal(t.quant.scale, g2.tensors[name].quant.scale)
    with pytest.raises(McuqpError, match="no calibration data and no range"):
        quantize(fg, None, ranges_override={fg.input_name: (0.0, 1.0)})


# ----------------------------------------------------------------------------- end to end (reference kernels)


def _reference():
    from mcuqp.reference.interpreter import run

    return run


@pytest.fixture(scope="module")
def digits_model():
    d = load_dataset("digits")
    model = fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=15, lr=3e-3, seed=0))
    return d, model


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_digits_int8_accuracy_within_one_point(digits_model, method) -> None:
    run = _reference()
    d, model = digits_model
    float_logits = predict(model, d.x_test)
    float_acc = accuracy(float_logits, d.y_test)
    assert float_acc >= 0.95
    g = quantize_module(model, d.x_train[:512], method=method)
    y = run(g, quantize_input(g, d.x_test))
    int8_acc = accuracy(y, d.y_test)
    assert int8_acc >= float_acc - 0.01, (method, float_acc, int8_acc)
    deq = dequantize_output(g, y)
    spread = float_logits.max() - float_logits.min()
    assert np.abs(deq - float_logits).mean() < 0.02 * spread
    assert (deq.argmax(1) == float_logits.argmax(1)).mean() >= 0.97


def test_flatten_and_softmax_models_quantize_close_to_float() -> None:
    run = _reference()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 10), nn.Softmax(dim=1),
    ).eval()
    x = np.random.default_rng(0).random((200, 1, 8, 8), dtype=np.float32)
    g = quantize_module(model, x)
    want = predict(model, x)
    got = dequantize_output(g, run(g, quantize_input(g, x)))
    assert np.abs(got - want).max() < 4 / 256  # softmax output step is 1/256
