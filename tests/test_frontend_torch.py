"""Torch front end: fx import of every supported layer, batch-norm folding, NHWC flatten
permutation, depthwise multipliers, and one-line errors naming the layer and its line."""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcuqp.errors import McuqpError, UnsupportedModelError
from mcuqp.frontends.float_graph import to_torch_layout
from mcuqp.frontends.torch_fx import import_torch
from mcuqp.ir import OpKind
from mcuqp.models import DigitsCNN, MnistCNN, build_model


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics so that folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def _compare(model: nn.Module, x: torch.Tensor, atol: float = 1e-5):
    fg = import_torch(model, x)
    with torch.no_grad():
        want = model(x).numpy()
    got = fg.run(x.numpy())
    got = to_torch_layout(got) if got.ndim == 4 else got
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
    return fg


def _kinds(fg) -> list[OpKind]:
    return [op.kind for op in fg.ops]


def _line_of(fn, needle: str) -> str:
    """'test_frontend_torch.py:<line>' of the first line of `fn` containing `needle`."""
    lines, start = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if needle in line:
            return f"{os.path.basename(__file__)}:{start + i}"
    raise AssertionError(needle)


class ModuleLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.relu6 = nn.ReLU6()
        self.pw = nn.Conv2d(16, 16, 1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.clamp = nn.Hardtanh(0.0, 6.0)
        self.down = nn.Conv2d(16, 8, 3, stride=2, padding=1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(8 * 2 * 2, 16)
        self.bn1d = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 5)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.relu6(self.dw_bn(self.dw(x)))
        x = self.relu(x + self.pw(x))
        x = self.clamp(self.avg(self.pool(x)))
        x = self.flatten(self.down(x).relu())
        x = self.drop(F.relu6(self.bn1d(self.fc1(x))))
        return self.softmax(self.fc2(x))


class FunctionalLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding="same")
        self.b = nn.Conv2d(6, 6, 3, padding=1, dilation=1, bias=False)
        self.c = nn.Conv2d(6, 6, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.ident = nn.Identity()
        self.fc = nn.Linear(6, 4)
        self.fc2 = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        y = F.hardtanh(self.b(x), 0.0, 6.0)
        z = torch.add(x, y)
        z = F.avg_pool2d(self.ident(z), 2)
        v = z.mean((2, 3))  # (N, 6)
        w = self.gap(self.c(z))
        w = w.view(w.size(0), -1)
        w = torch.flatten(w, 1)
        w = w.reshape(w.shape[0], -1)
        return F.softmax(self.fc(v) + self.fc2(w), dim=-1)


def test_module_layers_import_and_match_torch() -> None:
    model = _randomize_bn(ModuleLayers())
    fg = _compare(model, torch.rand(3, 2, 8, 8) * 2 - 1)
    assert _kinds(fg) == [
        OpKind.CONV2D,
        OpKind.DEPTHWISE_CONV2D,
        OpKind.CONV2D,
        OpKind.ADD,
        OpKind.MAX_POOL2D,
        OpKind.AVG_POOL2D,
        OpKind.CONV2D,
        OpKind.RESHAPE,
        OpKind.FULLY_CONNECTED,
        OpKind.FULLY_CONNECTED,
        OpKind.SOFTMAX,
    ]
    acts = [op.activation for op in fg.ops]
    assert acts == ["relu", "relu6", None, "relu", None, "relu6", "relu", None, "relu6", None, None]
    assert fg.input_shape == (1, 8, 8, 2)
    assert fg.op(fg.output_name).shape == (1, 5)
    # conv -> bn -> relu is one op named after the relu's fx node
    first = fg.ops[0]
    assert first.fused == ["conv", "bn", "relu"] and first.name == "relu"


def test_functional_layers_import_and_match_torch() -> None:
    fg = _compare(FunctionalLayers().eval(), torch.rand(2, 3, 9, 9))
    kinds = _kinds(fg)
    for k in (OpKind.CONV2D, OpKind.MAX_POOL2D, OpKind.ADD, OpKind.AVG_POOL2D, OpKind.RESHAPE, OpKind.SOFTMAX):
        assert k in kinds
    pool = next(op for op in fg.ops if op.kind == OpKind.MAX_POOL2D)
    assert (pool.filter, pool.stride, pool.padding.top, pool.padding.left) == ((3, 3), (2, 2), 1, 1)


def test_mlp_on_feature_vectors() -> None:
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    fg = _compare(model, torch.randn(4, 12))
    assert fg.input_shape == (1, 12) and _kinds(fg) == [OpKind.FULLY_CONNECTED] * 2


def test_batch_norm_folding_is_equivalent() -> None:
    model = _randomize_bn(nn.Sequential(nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5, eps=1e-3))).eval()
    x = torch.randn(4, 3, 7, 7)
    fg = _compare(model, x, atol=1e-5)
    assert len(fg.ops) == 1 and fg.ops[0].fused == ["_0", "_1"] and fg.ops[0].name == "_1"
    # folded weights, in OHWI, equal w * gamma / sqrt(var + eps)
    conv, bn = model[0], model[1]
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    want = conv.weight.detach().numpy().transpose(0, 2, 3, 1) * s[:, None, None, None]
    np.testing.assert_allclose(fg.ops[0].weight, want, rtol=1e-6)
    want_b = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    np.testing.assert_allclose(fg.ops[0].bias, want_b, rtol=1e-5, atol=1e-6)


def test_depthwise_bn_folding_and_multiplier() -> None:
    model = _randomize_bn(nn.Sequential(nn.Conv2d(4, 12, 3, stride=2, padding=1, groups=4), nn.BatchNorm2d(12)))
    fg = _compare(model, torch.randn(2, 4, 9, 9))
    (op,) = fg.ops
    assert op.kind == OpKind.DEPTHWISE_CONV2D and op.depth_multiplier == 3
    assert op.weight.shape == (1, 3, 3, 12)
    assert op.shape == (1, 5, 5, 12)


def test_flatten_permutes_linear_columns_to_nhwc() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 4 * 5, 7)).eval()
    fg = _compare(model, torch.randn(3, 1, 4, 5))
    fc = next(op for op in fg.ops if op.kind == OpKind.FULLY_CONNECTED)
    w = model[2].weight.detach().numpy()
    c_, h_, w_ = 3, 4, 5
    for c in range(c_):
        for h in range(h_):
            for x in range(w_):
                np.testing.assert_array_equal(fc.weight[:, h * w_ * c_ + x * c_ + c], w[:, c * h_ * w_ + h * w_ + x])


def test_bundled_models_import_match_and_reload(tmp_path) -> None:
    for cls, n_params in ((DigitsCNN, (1_000, 10_000)), (MnistCNN, (10_000, 100_000))):
        model = _randomize_bn(cls())
        assert n_params[0] <= sum(p.numel() for p in model.parameters()) <= n_params[1]
        _compare(model, torch.rand(2, *cls.input_shape))
    path = tmp_path / "digits.pt"
    torch.save(DigitsCNN(), path)
    assert isinstance(torch.load(path, weights_only=False), DigitsCNN)
    assert isinstance(build_model("digits"), DigitsCNN) and isinstance(build_model("MnistCNN"), MnistCNN)
    with pytest.raises(McuqpError, match="unknown model 'resnet'.*digits"):
        build_model("resnet")


def test_import_leaves_training_mode_alone() -> None:
    model = _randomize_bn(DigitsCNN()).train()
    before = model.stem[1].running_mean.clone()
    import_torch(model, torch.rand(2, 1, 8, 8))
    assert model.training and torch.equal(model.stem[1].running_mean, before)


# ----------------------------------------------------------------------------- errors


class WithGelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.conv(x))


class WithSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


def test_unsupported_layer_names_module_type_and_line() -> None:
    with pytest.raises(UnsupportedModelError) as e:
        import_torch(WithGelu(), torch.rand(1, 1, 5, 5))
    msg = str(e.value)
    assert "'act' (nn.GELU)" in msg and _line_of(WithGelu.forward, "self.act(") in msg
    assert "supported are" in msg and "Conv2d" in msg and "\n" not in msg


def test_unsupported_function_names_op_and_line() -> None:
    with pytest.raises(UnsupportedModelError) as e:
        import_torch(WithSigmoid(), torch.rand(1, 1, 5, 5))
    msg = str(e.value)
    assert "'sigmoid' (torch.sigmoid)" in msg and _line_of(WithSigmoid.forward, "torch.sigmoid") in msg


@pytest.mark.parametrize(
    "model, pattern",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)), r"'2' \(nn.BatchNorm2d\).*folded into a Conv2d"),
        (nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3)), r"'0' \(nn.BatchNorm2d\)"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(3, 1, padding=1)), r"count_include_pad=False"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, groups=2)), r"'1' \(nn.Conv2d\).*groups=2"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()), r"feeds the model output"),
        (nn.Sequential(nn.ReLU(), nn.Conv2d(1, 4, 3)), r"relu on the model input cannot be fused"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")), r"padding_mode"),
    ],
)
def test_unsupported_configurations(model: nn.Module, pattern: str) -> None:
    with pytest.raises(UnsupportedModelError, match=pattern):
        import_torch(model.eval(), torch.rand(1, 1, 6, 6))


class ReluTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        y = self.conv(x)
        return F.relu(y) + y


class AddConstant(nn.Module):
    def forward(self, x):
        return x + 1.0


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_relu_with_shared_input_is_rejected() -> None:
    with pytest.raises(UnsupportedModelError, match=r"'relu' \(F.relu\).*also used by add"):
        import_torch(ReluTwice(), torch.rand(1, 1, 5, 5))


def test_constant_add_and_data_dependent_control_flow_are_rejected() -> None:
    with pytest.raises(UnsupportedModelError, match="adding a constant"):
        import_torch(AddConstant(), torch.rand(1, 1, 5, 5))
    with pytest.raises(UnsupportedModelError, match="cannot trace Branchy with torch.fx"):
        import_torch(Branchy(), torch.rand(1, 1, 5, 5))


def test_wrong_example_shape_is_a_user_error() -> None:
    with pytest.raises(McuqpError, match=r"does not run on an input of shape \(1, 3, 8, 8\)"):
        import_torch(DigitsCNN(), torch.rand(1, 3, 8, 8))


class LeNet(nn.Module):
    """The classic ordering: relu after pooling, view(-1, features), log-free head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = x.view(-1, 16 * 5 * 5)
        x = F.dropout(F.relu(self.fc1(x)), training=self.training)
        return self.fc2(x)


def test_lenet_relu_after_pool_and_view() -> None:
    fg = _compare(LeNet().eval(), torch.rand(2, 1, 28, 28))
    pool = fg.ops[1]
    assert pool.kind == OpKind.MAX_POOL2D and pool.activation == "relu"
    assert [op.kind for op in fg.ops][-3:] == [OpKind.RESHAPE, OpKind.FULLY_CONNECTED, OpKind.FULLY_CONNECTED]
