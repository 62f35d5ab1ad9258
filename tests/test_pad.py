"""pad_1x1_to_3x3: the padded layer is the 1x1 kernel at the centre of zeros, the output does not
change, shortcut layers are found from the graph, padded layers go to RRAM, and what cannot be padded
exactly is reported."""

import warnings

import pytest
import timm
import torch
from torch import nn

import rramfx
from rramfx.errors import PassError
from rramfx.graph.record import rramfx_meta
from rramfx.passes import assign_devices, pad_1x1_to_3x3

from .conftest import assert_unchanged, input_for, public_model_params, snapshot
from .structural import rel_err


def test_padded_kernel_is_the_old_one_at_the_centre(small_net):
    small_net.eval()
    gm = rramfx.trace(small_net)
    before = snapshot(gm)
    out = pad_1x1_to_3x3(gm, "all")
    assert_unchanged(gm, before)
    assert rramfx_meta(out)["pad_1x1"]["padded"] == ["pw", "shortcut"]
    for name in ("pw", "shortcut"):
        old, new = small_net.get_submodule(name), out.get_submodule(name)
        assert type(new) is nn.Conv2d
        assert (new.kernel_size, new.padding, new.stride, new.groups) == ((3, 3), (1, 1), old.stride, old.groups)
        assert torch.equal(new.weight[:, :, 1, 1], old.weight[:, :, 0, 0])
        ring = new.weight.clone()
        ring[:, :, 1, 1] = 0
        assert torch.count_nonzero(ring) == 0
        assert (new.bias is None) == (old.bias is None)
        if old.bias is not None:
            assert torch.equal(new.bias, old.bias)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert rel_err(out(x), small_net(x)) <= 1e-5


class Shortcuts(nn.Module):
    """A residual block whose projection shortcut is the *first* operand of the add, a branch of
    two 1x1 layers (main) against one (shortcut), and a plain 1x1 layer outside any residual."""

    def __init__(self):
        super().__init__()
        self.reduce = nn.Conv2d(8, 4, 1)
        self.expand = nn.Conv2d(4, 16, 1)
        self.proj = nn.Conv2d(8, 16, 1, stride=1)
        self.head = nn.Conv2d(16, 16, 1)

    def forward(self, x):
        return self.head(self.proj(x) + self.expand(torch.relu(self.reduce(x))))


def test_shortcut_layers_are_found_from_the_graph():
    out = pad_1x1_to_3x3(rramfx.trace(Shortcuts()), "shortcut")
    assert rramfx_meta(out)["pad_1x1"]["padded"] == ["proj"]
    assert [out.get_submodule(n).kernel_size for n in ("reduce", "expand", "proj", "head")] == [
        (1, 1), (1, 1), (3, 3), (1, 1)]


@pytest.mark.parametrize("name,expected", [
    ("resnet18", ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]),
    ("resnet50", ["layer1.0.downsample.0", "layer2.0.downsample.0", "layer3.0.downsample.0",
                  "layer4.0.downsample.0"]),
])
def test_timm_resnet_shortcuts_become_rram(name, expected):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    x = input_for(name)
    gm = rramfx.prepare(model, rramfx.Policy(drop_rate=0.1, pad_1x1="shortcut"), example_inputs=x).eval()
    assert rramfx_meta(gm)["pad_1x1"]["padded"] == expected
    placed = rramfx.placement(gm)
    plain = rramfx.placement(rramfx.prepare(model))
    assert {p for p in placed if placed[p] != plain[p]} == set(expected)
    assert all(placed[p] == "rram" and isinstance(gm.get_submodule(p), rramfx.CrossbarLayer) for p in expected)
    with torch.no_grad():
        assert rel_err(gm(x), model(x)) <= 1e-5


class Awkward(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw1x1 = nn.Conv2d(8, 8, 1, groups=8)
        self.reflect = nn.Conv2d(8, 8, 1, padding=1, padding_mode="reflect")
        self.se = nn.Conv2d(8, 8, 1)
        self.pw = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.reflect(self.dw1x1(self.stem(x)))
        return self.pw(y * torch.sigmoid(self.se(y.mean((2, 3), keepdim=True))))


def test_layers_that_cannot_be_padded_are_reported_not_padded():
    torch.manual_seed(0)
    model = Awkward().eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match=r"left 3 selected 1x1 convolution\(s\) as they were: dw1x1: depthwise"):
        out = pad_1x1_to_3x3(rramfx.trace(model), "all", example_inputs=x)
    record = rramfx_meta(out)["pad_1x1"]
    assert record["padded"] == ["pw"]
    assert sorted(record["not_padded"]) == ["dw1x1", "reflect", "se"]
    assert record["not_padded"]["dw1x1"].startswith("depthwise 1x1")
    assert record["not_padded"]["reflect"].startswith("padding_mode='reflect'")
    assert record["not_padded"]["se"].startswith("its input is 1x1 spatially")
    assert [out.get_submodule(n).kernel_size for n in ("dw1x1", "reflect", "se", "pw")] == [(1, 1)] * 3 + [(3, 3)]
    with torch.no_grad():
        assert rel_err(out(x), model(x)) <= 1e-5


def test_weight_standardised_layers():
    from timm.layers import ScaledStdConv2d, StdConv2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ScaledStdConv2d(8, 8, 1), StdConv2d(8, 8, 1)).eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match=r"2: weight-standardised \(StdConv2d\)"):
        out = pad_1x1_to_3x3(rramfx.trace(model), "all")
    assert rramfx_meta(out)["pad_1x1"]["padded"] == ["1"]
    scaled = out.get_submodule("1")
    assert isinstance(scaled, ScaledStdConv2d) and scaled.kernel_size == (3, 3)
    assert scaled.scale == pytest.approx(model[1].scale / 3)  # gamma / sqrt(fan-in), fan-in x9
    with torch.no_grad():
        assert rel_err(out(x), model(x)) <= 1e-5


def test_patterns_select_and_unknown_patterns_raise(small_net):
    gm = rramfx.trace(small_net)
    out = pad_1x1_to_3x3(gm, ["short*"])
    assert rramfx_meta(out)["pad_1x1"]["padded"] == ["shortcut"]
    with pytest.raises(PassError, match=r"pattern 'layer4\.\*' matches no 1x1 convolution .*pw, shortcut"):
        pad_1x1_to_3x3(gm, "layer4.*")
    with pytest.raises(rramfx.ArgumentError, match="select must be 'all', 'shortcut', a module-path glob"):
        pad_1x1_to_3x3(gm, [])


def test_padded_layers_placed_on_rram(small_net):
    gm = pad_1x1_to_3x3(rramfx.trace(small_net), "all")
    before = rramfx.placement(assign_devices(rramfx.trace(small_net), rramfx.Policy()))
    after = rramfx.placement(assign_devices(gm, rramfx.Policy()))
    assert (before["pw"], before["shortcut"], after["pw"], after["shortcut"]) == ("cpu", "cpu", "rram", "rram")
    assert {k: v for k, v in after.items() if k not in ("pw", "shortcut")} == {
        k: v for k, v in before.items() if k not in ("pw", "shortcut")}


FAST = {"resnet18", "lcnet_050", "mobilenetv2_100"}



@pytest.mark.parametrize("name", public_model_params(FAST))
def test_public_model_output_is_unchanged(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, pretrained=False).eval()
    x = input_for(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = rramfx.trace(model)
        out = pad_1x1_to_3x3(gm, "all", example_inputs=x)
    record = rramfx_meta(out)["pad_1x1"]
    ones = [p for p, m in rramfx.weighted_layers(gm).items()
            if isinstance(m, nn.modules.conv._ConvNd) and set(m.kernel_size) == {1}]
    # every 1x1 convolution is either padded or reported with a reason, never both
    assert not set(record["padded"]) & set(record["not_padded"])
    assert set(record["padded"]) | set(record["not_padded"]) == set(ones)
    assert all(record["not_padded"].values())
    placed = rramfx.placement(assign_devices(out, rramfx.Policy()))
    assert all(placed[p] == "rram" and out.get_submodule(p).kernel_size[-1] == 3 for p in record["padded"])
    with torch.no_grad():
        assert rel_err(out(x), model(x)) <= 2e-5
