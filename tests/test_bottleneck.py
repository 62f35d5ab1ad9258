"""replace_with_bottleneck on a CIFAR ResNet20-style network: the follow-up report's six targets,
the right layers replaced with the right shapes, the residual exactly where stride 1 and C_in = C_out,
and the result trains."""

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rramfx
from rramfx.errors import PassError
from rramfx.graph.record import rramfx_meta
from rramfx.passes import LinearBottleneck, replace_with_bottleneck

from .conftest import assert_unchanged, snapshot


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet20(nn.Module):
    """He et al.'s CIFAR ResNet20: a 3x3 stem and three stages of three basic blocks (16, 32, 64
    channels), projection shortcuts where the shape changes."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            layers.append(nn.Sequential(*[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                          for i in range(3)]))
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


#: The report replaced "the 4th, 6th, 10th, 12th, 16th and 18th" of ResNet20's 18 block convolutions
#: (its "all but the 1st, 7th and 13th" run leaves the first convolution of each stage, so it counts
#: without the stem): the second convolution of blocks 2 and 3 of every stage. The pass counts every
#: k×k convolution in execution order, the stem included, so these are its indices 5, 7, ..., 19.
REPORT = [4, 6, 10, 12, 16, 18]
TARGETS = [i + 1 for i in REPORT]
REPLACED = ["layer1.1.conv2", "layer1.2.conv2", "layer2.1.conv2", "layer2.2.conv2", "layer3.1.conv2",
            "layer3.2.conv2"]


@pytest.fixture
def resnet20():
    torch.manual_seed(0)
    return ResNet20().eval()


def _block_nodes(gm, path):
    return [n for n in gm.graph.nodes if n.op == "call_module" and n.target.startswith(path + ".")]


def test_report_targets_replace_the_right_convolutions(resnet20):
    gm = rramfx.trace(resnet20)
    before = snapshot(gm)
    out = replace_with_bottleneck(gm, TARGETS)
    assert_unchanged(gm, before)
    record = rramfx_meta(out)["bottleneck"]
    assert [r["path"] for r in record["replaced"]] == REPLACED
    width = {"layer1": 16, "layer2": 32, "layer3": 64}
    for path in REPLACED:
        c = width[path[:6]]
        block = out.get_submodule(path)
        assert isinstance(block, LinearBottleneck) and block.residual
        assert (block.expand.in_channels, block.expand.out_channels, block.expand.kernel_size) == (c, 6 * c, (1, 1))
        assert (block.dw.in_channels, block.dw.out_channels, block.dw.groups) == (6 * c, 6 * c, 6 * c)
        assert (block.dw.kernel_size, block.dw.stride, block.dw.padding) == ((3, 3), (1, 1), (1, 1))
        assert (block.project.in_channels, block.project.out_channels, block.project.kernel_size) == (6 * c, c, (1, 1))
        assert [type(block.get_submodule(p)) for p in ("expand_bn", "expand_act", "dw_bn", "dw_act", "project_bn")] \
            == [nn.BatchNorm2d, nn.ReLU6, nn.BatchNorm2d, nn.ReLU6, nn.BatchNorm2d]
        # inlined: eight layer nodes in order, then the residual add of the block's input
        nodes = _block_nodes(out, path)
        assert [n.target[len(path) + 1:] for n in nodes] == ["expand", "expand_bn", "expand_act", "dw", "dw_bn",
                                                             "dw_act", "project", "project_bn"]
        (add,) = list(nodes[-1].users)
        assert add.target in (torch.add, operator.add) and add.args == (nodes[0].args[0], nodes[-1])
        assert [u.target for u in add.users] == [f"{path[:-6]}.bn2"]
    untouched = [n for n, m in out.named_modules() if type(m) is nn.Conv2d and m.kernel_size == (3, 3)
                 and m.groups == 1]
    assert len(untouched) == 19 - 6
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert out(x).shape == resnet20(x).shape == (2, 10)


def test_indices_count_kxk_convolutions_in_execution_order(resnet20):
    out = replace_with_bottleneck(rramfx.trace(resnet20), [*REPORT, 1])
    assert [r["path"] for r in rramfx_meta(out)["bottleneck"]["replaced"]] == [
        "layer1.1.conv1", "layer1.2.conv1", "layer2.1.conv1", "layer2.2.conv1", "layer3.1.conv1", "layer3.2.conv1",
        "conv1"]
    assert [r["residual"] for r in rramfx_meta(out)["bottleneck"]["replaced"]] == [True] * 6 + [False]  # 3 -> 16


def test_residual_only_where_stride_one_and_same_width(resnet20):
    # 8th: layer2.0.conv1, stride 2 and 16 -> 32; 9th: layer2.0.conv2, stride 1, 32 -> 32
    out = replace_with_bottleneck(rramfx.trace(resnet20), [8, "layer2.0.conv2"], expand_ratio=4)
    first, second = out.get_submodule("layer2.0.conv1"), out.get_submodule("layer2.0.conv2")
    assert (first.residual, second.residual) == (False, True)
    assert (first.dw.stride, first.expand.out_channels, first.project.out_channels) == ((2, 2), 64, 32)
    assert second.expand.out_channels == 128
    last = _block_nodes(out, "layer2.0.conv1")[-1]
    assert [u.target for u in last.users] == ["layer2.0.bn1"]  # no add after a strided bottleneck
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert out(x).shape == (2, 10)
        # the block's own forward (for eager use) computes what its inlined nodes do
        h = torch.randn(2, 16, 8, 8)
        for block in (first, second):
            y = h if block is first else block.expand.weight.new_ones(2, 32, 4, 4)
            want = y
            for node in _block_nodes(out, "layer2.0.conv1" if block is first else "layer2.0.conv2"):
                want = out.get_submodule(node.target)(want)
            assert torch.equal(block(y), want + y if block.residual else want)


def test_placement_depthwise_on_rram_pointwise_on_cpu(resnet20):
    gm = rramfx.prepare(resnet20, rramfx.Policy(bottleneck=TARGETS, drop_rate=0.1))
    placed = rramfx.placement(gm)
    for path in REPLACED:
        assert (placed[f"{path}.expand"], placed[f"{path}.dw"], placed[f"{path}.project"]) == ("cpu", "rram", "cpu")
        assert path not in placed
    assert sum(v == "rram" for v in placed.values()) == 19


def test_bottlenecked_resnet20_trains():
    """A few DropConnect training steps on a task where colour decides the class fit it."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (64,), generator=g)
    x = torch.randn(64, 3, 4, 4, generator=g) * 0.5
    for c in range(3):
        x[y == c, c] += 1.0
    x[y == 3] -= 1.0
    gm = rramfx.prepare(ResNet20(num_classes=4), rramfx.Policy(bottleneck=TARGETS, drop_rate=0.1)).train()
    assert sum(isinstance(m, LinearBottleneck) for m in gm.modules()) == 6
    opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(10):
        i = (step * 32) % 64
        opt.zero_grad()
        loss = F.cross_entropy(gm(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    with torch.no_grad():
        accuracy = (gm(x).argmax(1) == y).float().mean().item()  # training mode: DropConnect on
    assert last < 0.2 * first and accuracy >= 0.9, (losses, accuracy)


@pytest.mark.parametrize("targets,needle", [
    ([0], "index 0 is out of range; this graph runs 19 k×k convolutions"),
    ([20], "index 20 is out of range; this graph runs 19"),
    (["layer2.0.downsample.0"], "'layer2.0.downsample.0' is a 1x1 convolution"),
    (["layer9.conv"], "'layer9.conv' is not a convolution called in this graph"),
    ([5, "layer1.1.conv2"], "'layer1.1.conv2' is targeted twice"),
    ([True], "a target is a module path or a 1-based index, got True"),
])
def test_bad_targets_are_named(resnet20, targets, needle):
    with pytest.raises(rramfx.ArgumentError if targets == [True] else PassError, match=needle):
        replace_with_bottleneck(rramfx.trace(resnet20), targets)


def test_grouped_convolutions_are_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8))
    with pytest.raises(PassError, match=r"'1' is grouped or depthwise \(groups=8\)"):
        replace_with_bottleneck(rramfx.trace(model), [2])
    with pytest.raises(rramfx.ArgumentError, match="expand_ratio must be a number > 0"):
        replace_with_bottleneck(rramfx.trace(model), [1], expand_ratio=0)
