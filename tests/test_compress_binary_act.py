import pytest
import torch
from torch import nn

from mcuqp.compress.binary_act import BinaryActivation, binarize_inputs, sign_ste
from mcuqp.compress.qat import prepare_qat, strip_qat
from mcuqp.errors import McuqpError



def test_sign_forward_and_hardtanh_ste():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]  # sign(0) = +1
    (y * torch.arange(1.0, 8.0)).sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]


def test_binarize_inputs_is_opt_in_per_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    handles = binarize_inputs(model, ["2"])
    seen = {}  # probes registered after the binarizing hook see what the layer sees
    model[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("0", a[0].clone()))
    model[2].register_forward_pre_hook(lambda m, a: seen.__setitem__("2", a[0].clone()))
    x = torch.randn(5, 4)
    model(x)
    assert torch.equal(seen["0"], x)  # untouched layer
    assert set(seen["2"].unique().tolist()) <= {-1.0, 1.0}
    for h in handles:
        h.remove()
    with pytest.raises(McuqpError, match="Conv2d/Linear"):
        binarize_inputs(model, ["1"])


def test_qat_binary_layer_keeps_sign_after_strip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(8, 4)
    qm = prepare_qat(model, x, weight="binary", per_layer={"0": "int8"}, binary_act=["2"])
    qm.train()
    qm(x)
    qm.eval()
    plain = strip_qat(qm)
    assert sum(isinstance(m, BinaryActivation) for m in plain.modules()) == 1
    w = plain.get_submodule("2").weight.detach()
    assert all(len(r.abs().unique()) == 1 for r in w)
