import pytest
import timm
import torch

import rramfx
from rramfx import PlacementError, Policy, PolicyError


def _devices(gm):
    placed = rramfx.placement(gm)
    return sorted(p for p, d in placed.items() if d == "rram"), sorted(p for p, d in placed.items() if d == "cpu")


def test_resnet18_counts_are_exact():
    gm = rramfx.prepare(timm.create_model("resnet18", num_classes=10), Policy())
    rram, cpu = _devices(gm)
    assert len(rram) == 17 and "conv1" in rram
    assert sum(p.endswith((".conv1", ".conv2")) for p in rram) == 16
    assert cpu == ["fc", "layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]


def test_mobilenetv2_depthwise_on_rram_pointwise_and_classifier_on_cpu():
    model = timm.create_model("mobilenetv2_100", num_classes=10)
    gm = rramfx.prepare(model, Policy())
    placed = rramfx.placement(gm)
    assert len(placed) == 53
    for path, device in placed.items():
        layer = gm.get_submodule(path)
        multi_tap = isinstance(layer, torch.nn.Conv2d) and layer.kernel_size != (1, 1)
        assert device == ("rram" if multi_tap else "cpu"), path
    depthwise = [p for p in placed if isinstance(gm.get_submodule(p), torch.nn.Conv2d)
                 and gm.get_submodule(p).groups > 1]
    assert len(depthwise) == 17 and all(placed[p] == "rram" for p in depthwise)
    assert placed["conv_stem"] == "rram" and placed["classifier"] == "cpu" and placed["conv_head"] == "cpu"
    assert sum(d == "rram" for d in placed.values()) == 18


def test_small_net_rule_and_overrides(small_net):
    gm = rramfx.prepare(small_net, Policy())
    assert rramfx.placement(gm) == {
        "stem": "rram", "dw": "rram", "pw": "cpu", "grouped": "rram", "shortcut": "cpu", "head.2": "cpu",
    }
    policy = Policy(linear="rram", overrides={"*": "cpu", "dw": "rram", "head.*": "rram"})
    gm = rramfx.prepare(small_net, policy)
    assert rramfx.placement(gm) == {
        "stem": "cpu", "dw": "rram", "pw": "cpu", "grouped": "cpu", "shortcut": "cpu", "head.2": "rram",
    }
    assert isinstance(gm.dw, rramfx.CrossbarLayer) and not isinstance(gm.stem, rramfx.CrossbarLayer)


def test_1x1_and_linear_switches(small_net):
    gm = rramfx.prepare(small_net, Policy(conv_1x1="rram", linear="rram"))
    assert set(rramfx.placement(gm).values()) == {"rram"}
    assert len(rramfx.crossbar_layers(gm)) == 6


def test_override_that_matches_nothing_lists_close_names(small_net):
    with pytest.raises(PolicyError, match=r"'shortcut\.0' matches no weighted layer.*Close names: shortcut"):
        rramfx.prepare(small_net, Policy(overrides={"shortcut.0": "rram"}))


def test_assign_devices_leaves_its_input_alone(small_net):
    gm = rramfx.trace(small_net)
    placed = rramfx.passes.assign_devices(gm, Policy(conv_1x1="rram"))
    with pytest.raises(PlacementError, match="no rramfx 'placement' record"):
        rramfx.placement(gm)
    assert rramfx.placement(placed)["pw"] == "rram"
    again = rramfx.passes.assign_devices(placed, Policy())
    assert rramfx.placement(placed)["pw"] == "rram" and rramfx.placement(again)["pw"] == "cpu"


def test_to_crossbar_requires_placement(small_net):
    with pytest.raises(PlacementError, match="run rramfx.passes.assign_devices"):
        rramfx.passes.to_crossbar(rramfx.trace(small_net), Policy())


def test_to_crossbar_reverts_layers_moved_back_to_cpu(small_net):
    gm = rramfx.prepare(small_net, Policy(conv_1x1="rram"))
    back = rramfx.passes.to_crossbar(rramfx.passes.assign_devices(gm, Policy()), Policy())
    assert isinstance(gm.pw, rramfx.CrossbarLayer)
    assert type(back.pw) is torch.nn.Conv2d and "fault_codes" not in back.pw._buffers


def test_summary_table(small_net):
    text = rramfx.summary(rramfx.prepare(small_net, Policy()))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "type", "kernel", "params", "device"]
    assert any(ln.split()[:3] == ["dw", "Conv2d", "3x3"] and ln.split()[-1] == "rram" for ln in lines)
    assert any(ln.split()[:4] == ["grouped", "Conv2d", "3x3", "g4"] for ln in lines)
    rram_params = 16 * 3 * 9 + (16 * 9 + 16) + (32 * 8 * 9 + 32)  # stem, dw, grouped (with biases)
    assert f"rram: 3 layers, {rram_params:,} params" in text


def test_placement_of_unprepared_model_is_a_clear_error():
    with pytest.raises(PlacementError, match="prepare it with rramfx.prepare"):
        rramfx.placement(torch.nn.Linear(2, 2))
