import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcuqp.compress.channels import Member, analyze, keep_top, mask_channels, remove_channels
from mcuqp.compress.structured import filter_l1, prune_filters
from mcuqp.errors import McuqpError



class Plain(nn.Module):
    """conv-bn-relu, conv-relu-pool, flatten via a literal view, linear-relu, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(12 * 4 * 4, 20)
        self.fc2 = nn.Linear(20, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 12 * 4 * 4)
        return self.fc2(F.relu(self.fc1(x)))


class Residual(nn.Module):
    """Residual add across two producers, a depthwise conv, global average pooling."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(8)
        self.body = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 1))
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        s = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(s + self.body(s))
        x = F.relu(self.dw(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.head(x.view(x.size(0), -1))


def _randomize_bn(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.eval()


def test_spaces_plain():
    torch.manual_seed(0)
    g = analyze(Plain(), torch.zeros(1, 1, 8, 8))
    assert set(g.spaces) == {"conv1", "conv2", "fc1", "fc2"}
    assert g.spaces["conv1"].channelwise == [Member("bn1")]
    assert [(c.layer, c.hw) for c in g.spaces["conv2"].consumers] == [("fc1", 16)]
    assert g.spaces["fc2"].blocked == "reaches the network output"
    assert {s.key for s in g.prunable()} == {"conv1", "conv2", "fc1"}
    assert len(g.fixed_reshapes) == 1


def test_spaces_residual():
    g = analyze(Residual(), torch.zeros(1, 1, 8, 8))
    s = g.spaces["stem"]
    assert s.producers == ["stem", "body.3"]  # both sides of the add are one space
    assert {(m.layer, m.mult) for m in s.channelwise} == {("stem_bn", 1), ("dw", 1)}
    assert {c.layer for c in s.consumers} == {"body.0", "head"}
    assert s.prunable and g.spaces["body.0"].prunable


@pytest.mark.parametrize("cls", [Plain, Residual])
def test_removed_equals_masked(cls):
    torch.manual_seed(0)
    model = _randomize_bn(cls())
    x = torch.rand(16, 1, 8, 8)
    g = analyze(model, x)
    gen = torch.Generator().manual_seed(3)
    keep = {s.key: torch.sort(torch.randperm(s.size, generator=gen)[: s.size // 2]).values for s in g.prunable()}
    small = remove_channels(model, g, keep).eval()
    masked = mask_channels(model, g, keep).eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)
    # real smaller dense layers
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in small.parameters())
    assert after < 0.6 * before
    for key, idx in keep.items():
        for p in g.spaces[key].producers:
            assert small.get_submodule(p).weight.shape[0] == len(idx)


def test_filter_l1_keeps_largest_norms():
    torch.manual_seed(0)
    model = _randomize_bn(Plain())
    with torch.no_grad():
        model.conv2.weight[[1, 4, 7]] *= 10.0
    small, keep = prune_filters(model, torch.zeros(1, 1, 8, 8), {"conv2": 0.75})
    norms = filter_l1(model, analyze(model, torch.zeros(1, 1, 8, 8)).spaces["conv2"])
    assert keep["conv2"].tolist() == [1, 4, 7]
    assert torch.equal(keep["conv2"], keep_top(norms, 3))
    assert small.conv2.out_channels == 3 and small.fc1.in_features == 3 * 16
    torch.testing.assert_close(small.conv2.weight, model.conv2.weight[[1, 4, 7]])
    torch.testing.assert_close(small.fc1.weight, model.fc1.weight.reshape(20, 12, 16)[:, [1, 4, 7]].reshape(20, 48))


def test_unprunable_space_rejected():
    model = Plain()
    g = analyze(model, torch.zeros(1, 1, 8, 8))
    with pytest.raises(McuqpError, match="not prunable"):
        remove_channels(model, g, {"fc2": torch.tensor([0])})


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_bundled_models(name):
    from mcuqp.models import build_model

    torch.manual_seed(0)
    model = _randomize_bn(build_model(name))
    x = torch.rand(4, *model.input_shape)
    g = analyze(model, x)
    prunable = {s.key for s in g.prunable()}
    if name == "mnist5k":
        # the residual joins features.2 and the block's pointwise conv into one space
        assert prunable == {"features.0.0", "features.2.0", "features.5.0", "classifier.1"}
        assert g.spaces["features.2.0"].producers == ["features.2.0", "features.4.pointwise.0"]
    else:
        # behind the depthwise conv with multiplier 2 each stem channel is a pair of channels
        assert prunable == {"stem.0", "mix.0"}
        s = g.spaces["stem.0"]
        assert ("expand.0", 2) in {(m.layer, m.mult) for m in s.channelwise}
        assert ("mix.0", 1, 2) in {(c.layer, c.hw, c.mult) for c in s.consumers}
    keep = {k: torch.arange(0, g.spaces[k].size, 2) for k in prunable}
    with torch.no_grad():
        torch.testing.assert_close(remove_channels(model, g, keep)(x), mask_channels(model, g, keep)(x), rtol=1e-5, atol=1e-5)
