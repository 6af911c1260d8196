import numpy as np
import pytest
import torch
from torch import nn

from mcuqp.compress.pipeline import PruneSpec, compress, format_summary
from mcuqp.compress.qat import ActFakeQuant, QatLayer
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.datasets import load_dataset
from mcuqp.errors import McuqpError
from mcuqp.frontends.torch_fx import import_torch
from mcuqp.models import DigitsCNN
from mcuqp.quant.ptq import quantize, quantize_weights



@pytest.fixture(scope="module")
def trained():
    d = load_dataset("digits")
    torch.manual_seed(0)
    return d, fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=12, lr=3e-3))


@pytest.mark.parametrize(
    "spec,msg",
    [("magnitude", "METHOD:VALUE"), ("prune:0.5", "METHOD:VALUE"), ("filter:x", "not a number"),
     ("magnitude:1.5", "in \\(0, 1\\)"), ("l1:-1", "must be > 0")],
)
def test_bad_prune_specs(spec, msg):
    with pytest.raises(McuqpError, match=msg):
        PruneSpec.parse(spec)


def test_bad_arguments(trained):
    d, model = trained
    with pytest.raises(McuqpError, match="unknown quantization"):
        compress(model, d, quant="int3")
    with pytest.raises(McuqpError, match="no Conv2d/Linear layer named 'nope'"):
        compress(model, d, per_layer={"nope": "int8"})


def _plain(module):
    return not any(isinstance(m, (ActFakeQuant, QatLayer, nn.BatchNorm2d)) for m in module.modules())


def test_prune_then_int8_qat(trained):
    d, model = trained
    r = compress(model, d, prune="global:0.5", quant="int8", finetune_epochs=3)
    assert _plain(r.model)
    assert r.accuracy_before == pytest.approx(evaluate(model, d.x_test, d.y_test))
    assert r.accuracy_after > r.accuracy_before - 0.05
    assert [s for s, _ in r.stages] == ["float", "pruned (global:0.5)", "int8 QAT (int8 activations simulated)"]
    weights = sum(m.weight.numel() for m in r.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    zeros = sum(int((m.weight == 0).sum()) for m in r.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert zeros >= 0.5 * weights - 1  # pruned weights are still exactly zero after QAT and export
    assert sum(x.nonzeros for x in r.layers) == weights - zeros
    assert all(x.bits == 8 for x in r.layers) and r.params_after == r.params_before
    # ready for export: PTQ with the learnt ranges needs no calibration data and keeps the weights
    fg = import_torch(r.model, torch.as_tensor(d.x_train[:1]))
    quantize(fg, None, ranges_override=r.ranges)
    for op in fg.ops:
        if op.weight is not None:
            axis = 3 if op.kind.value == "depthwise_conv2d" else 0
            q, s = quantize_weights(op.weight, axis)
            shape = [1] * op.weight.ndim
            shape[axis] = -1
            np.testing.assert_allclose(q * s.reshape(shape), op.weight, rtol=1e-5, atol=1e-8)
    text = format_summary(r)
    assert "stem.0" in text and "total" in text and "accuracy float" in text


def test_ternary_keeps_first_and_last_int8(trained):
    d, model = trained
    r = compress(model, d, quant="ternary", finetune_epochs=2)
    bits = {x.name: x.bits for x in r.layers}
    assert bits == {"stem.0": 8, "block.depthwise.0": 2, "block.pointwise.0": 2, "expand.0": 2, "mix.0": 2, "fc": 8}
    w = r.model.get_submodule("mix.0").weight.detach().reshape(32, -1)
    assert all(len(row.unique()) <= 3 for row in w)
    assert r.bytes < sum(x.params + 3 * x.biases for x in r.layers)


def test_structured_gives_a_smaller_network(trained):
    d, model = trained
    r = compress(model, d, prune="lasso:0.5", quant=None, finetune_epochs=3, per_layer={"stem.0": {"ratio": 0.25}})
    assert r.ranges is None and r.params_after < 0.7 * r.params_before
    assert r.model.get_submodule("mix.0").out_channels == 16 and r.model.fc.in_features == 16
    assert r.model.get_submodule("stem.0").out_channels == 12 and r.model.get_submodule("expand.0").out_channels == 24
    assert r.accuracy_after > r.accuracy_before - 0.05
