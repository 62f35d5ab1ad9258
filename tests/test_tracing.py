import warnings

import pytest
import timm
import torch
from torch import nn

import rramfx
from rramfx import TraceError
from rramfx.graph.tracing import check_traced_equal


def _call_module_targets(gm):
    return {n.target for n in gm.graph.nodes if n.op == "call_module"}


@pytest.mark.parametrize("name,cls", [
    ("tf_efficientnet_b0", "Conv2dSame"),
    ("resnetv2_50x1_bit", "StdConv2d"),
    ("nf_resnet26", "ScaledStdConv2d"),
])
def test_timm_conv_subclasses_stay_graph_nodes(name, cls):
    model = timm.create_model(name, num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no leaf may hide a weighted layer in these models
        gm = rramfx.trace(model, example_inputs=torch.randn(1, 3, 64, 64))
    layers = rramfx.weighted_layers(model)
    assert any(type(m).__name__ == cls for m in layers.values())
    assert set(layers) <= _call_module_targets(gm)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        if x.mean() > 0:  # control flow on a tensor value: untraceable
            return self.conv(x)
        return -self.conv(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = DataDependent()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


def test_untraceable_module_becomes_a_leaf_and_is_reported():
    model = Net()
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match=r"block hides block\.conv"):
        gm = rramfx.trace(model, example_inputs=x)
    record = gm.rramfx_record
    assert record["auto_leaves"] == ["block"]
    reason = record["auto_leaf_reasons"][f"{__name__}.DataDependent"]
    assert reason["first_path"] == "block" and "if x.mean() > 0" in reason["source"]
    assert record["hidden_weighted"] == {"block": ["block.conv"]}
    assert torch.equal(gm(x), model(x)) and torch.equal(gm(-x), model(-x))
    # The hidden conv is placed and converted like any other: the leaf calls it as a module.
    with pytest.warns(UserWarning):
        prepared = rramfx.prepare(model, rramfx.Policy())
    assert rramfx.placement(prepared)["block.conv"] == "rram"
    rramfx.inject_faults(prepared, rramfx.FaultModel(sa1=0.5), seed=1)
    prepared.eval()
    assert not torch.equal(prepared(x), model.eval()(x))


class RootBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


def test_untraceable_root_raises_trace_error_naming_class_and_line():
    with pytest.raises(TraceError) as e:
        rramfx.trace(RootBranches())
    msg = str(e.value)
    assert "the model's own forward" in msg and f"{__name__}.RootBranches" in msg
    assert "if x.sum() > 0:" in msg and "leaf_modules" in msg


def test_user_leaf_modules():
    with pytest.warns(UserWarning, match=r"block hides block\.conv"):
        gm = rramfx.trace(Net(), leaf_modules=[DataDependent])
    assert "block" in _call_module_targets(gm) and gm.rramfx_record["auto_leaves"] == []


def test_trace_leaves_model_untouched_and_copies_it():
    model = Net().train()
    with pytest.warns(UserWarning, match="block hides"):
        gm = rramfx.trace(model)
    assert model.training and gm.training
    assert gm.stem is not model.stem
    gm.stem.weight.data.zero_()
    assert model.stem.weight.abs().sum() > 0


def test_check_traced_equal_reports_a_mismatch():
    a, b = nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3)
    with pytest.raises(TraceError, match="traced output 0 differs from the eager model's"):
        check_traced_equal(a, rramfx.trace(b), torch.randn(1, 3, 8, 8))


def test_torchvision_models_trace_exactly():
    import torchvision

    x = torch.randn(2, 3, 64, 64)
    for factory in (torchvision.models.resnet18, torchvision.models.mobilenet_v3_small,
                    torchvision.models.shufflenet_v2_x0_5, torchvision.models.squeezenet1_1):
        model = factory(num_classes=10).eval()
        gm = rramfx.prepare(model, rramfx.Policy(), example_inputs=x)
        assert set(rramfx.placement(gm)) == set(rramfx.weighted_layers(model))
        assert torch.equal(gm.eval()(x), model(x)), factory.__name__


def test_multihead_attention_is_not_simulated_and_says_so():
    """MultiheadAttention reads out_proj.weight directly: its projection is neither placed nor faulted
    (issue 13), and prepare names the attention layer as not simulated."""
    import torchvision

    vit = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3
    )
    with pytest.warns(UserWarning, match=r"encoder\.layers\.encoder_layer_0\.self_attention \(1 recurrent/attention"):
        gm = rramfx.prepare(vit, rramfx.Policy(), example_inputs=torch.randn(1, 3, 16, 16))
    assert rramfx.placement(gm)["conv_proj"] == "rram"
    assert not any("out_proj" in p for p in rramfx.placement(gm))
    assert "self_attention  MultiheadAttention" in rramfx.summary(gm)
