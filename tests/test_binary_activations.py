"""Binary activations (mcuqp.compress.binary_act) through the whole chain: torch front end
(BinaryActivation -> SIGN), PTQ (fixed output quantization 1.0 / 0), the int8 reference,
and a compressed DigitsCNN verified bit-exactly on QEMU."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mcuqp import api
from mcuqp.compress import pipeline
from mcuqp.compress.binary_act import BinaryActivation
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.datasets import load_dataset
from mcuqp.frontends.torch_fx import import_torch
from mcuqp.ir import OpKind
from mcuqp.models import DigitsCNN
from mcuqp.quant.ptq import quantize, quantize_input
from mcuqp.reference.interpreter import run, run_all


class _BnSignNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.sign = BinaryActivation()
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.sign(self.bn(self.fc1(x))))


def test_front_end_maps_binary_activation_to_sign() -> None:
    torch.manual_seed(0)
    model = _BnSignNet().eval()
    x = torch.randn(64, 6)
    fg = import_torch(model, x[:1])
    assert [op.kind for op in fg.ops] == [OpKind.FULLY_CONNECTED, OpKind.SIGN, OpKind.FULLY_CONNECTED]
    np.testing.assert_allclose(fg.run(x.numpy()), model(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    sign = next(op for op in fg.ops if op.kind == OpKind.SIGN)
    y = fg.run_all(np.array([[0.0] * 6], np.float32))  # sign(0) = +1 in the float executor too
    assert set(np.unique(y[sign.name])) <= {-1.0, 1.0}
    from mcuqp.frontends.float_graph import run_op

    np.testing.assert_array_equal(run_op(sign, [np.array([[-0.5, 0.0, 2.0]], np.float32)]), [[-1.0, 1.0, 1.0]])


def test_ptq_fixes_sign_quantization_and_matches_float_sign() -> None:
    torch.manual_seed(1)
    model = _BnSignNet().eval()
    x = torch.randn(256, 6).numpy()
    fg = import_torch(model, x[:1])
    g = quantize(fg, x)
    op = next(o for o in g.ops if o.kind == OpKind.SIGN)
    inp, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    assert (out.quant.s, out.quant.zp) == (1.0, 0)
    assert op.attrs.input_zero_point == inp.quant.zp
    env = run_all(g, quantize_input(g, x))
    q_in = env[op.inputs[0]].astype(np.int32)
    real_in = inp.quant.s * (q_in - inp.quant.zp)
    np.testing.assert_array_equal(env[op.outputs[0]], np.where(real_in >= 0, 1, -1))
    # the sign output's range is fixed: a range given for it is ignored, none is needed
    ranges = {n: (-4.0, 4.0) for n in [fg.input_name] + [o.name for o in fg.ops if o.kind != OpKind.SIGN]}
    g2 = quantize(fg, None, ranges_override=ranges)
    assert (g2.tensors[op.outputs[0]].quant.s, g2.tensors[op.outputs[0]].quant.zp) == (1.0, 0)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """DigitsCNN trained briefly, then compressed with a binary activation and binary weights
    on mix.0 and ternary weights on fc. expand's ReLU is dropped so that mix.0's input is a
    signed batch-norm output (BNN's BN -> sign block): after a ReLU, sign() is constant."""
    torch.manual_seed(0)
    data = load_dataset("digits", seed=0)
    model = DigitsCNN()
    model.expand[2] = nn.Identity()
    fit(model, data.x_train, data.y_train, FitConfig(epochs=6, lr=1e-2, seed=0))
    assert evaluate(model, data.x_test, data.y_test) > 0.9
    result = pipeline.compress(
        model, data, quant="int8", finetune_epochs=2, seed=0,
        per_layer={"mix.0": {"quant": "binary", "binary_act": True}, "fc": {"quant": "ternary"}},
    )
    path = pipeline.save_compressed(result, tmp_path_factory.mktemp("binary_act") / "digits_bnn.pt")
    return result, api.load(path, calib="digits")


def test_compressed_binary_activation_int8_accuracy(compressed) -> None:
    result, loaded = compressed
    kinds = [op.kind for op in loaded.graph.ops]
    assert kinds.count(OpKind.SIGN) == 1
    sign = next(op for op in loaded.graph.ops if op.kind == OpKind.SIGN)
    y = run_all(loaded.graph, loaded.verify_inputs)
    frac = float((y[sign.outputs[0]] == 1).mean())
    assert 0.1 < frac < 0.9  # a real binary activation, not a constant
    logits = run(loaded.graph, loaded.verify_inputs)
    acc = float((logits.reshape(len(logits), -1).argmax(-1) == loaded.labels).mean())
    assert result.accuracy_after > 0.8
    assert abs(acc - result.accuracy_after) <= 0.02, (acc, result.accuracy_after)


@pytest.mark.qemu
def test_compressed_binary_activation_is_bit_exact_on_qemu(compressed) -> None:
    _, loaded = compressed
    r = api.verify(loaded, board="mps2-an386", n_inputs=30)
    assert r.compared == 30
    assert r.bit_exact, r.summary()
