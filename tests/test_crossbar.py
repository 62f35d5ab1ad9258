"""DropConnect in training and the exact-identity guarantees of crossbar layers."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import rramfx
from rramfx import Policy


def _layer(drop_rate, fault_rate=0.0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
    gm = rramfx.prepare(model, Policy(drop_rate=drop_rate, fault_rate=fault_rate))
    return gm.get_submodule("0")


def test_crossbar_layer_is_still_the_layer_it_replaces():
    layer = _layer(0.2)
    assert isinstance(layer, nn.Conv2d) and isinstance(layer, rramfx.CrossbarLayer)
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert "drop_rate=0.2" in repr(layer)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropped_fraction_within_binomial_bounds(p):
    layer = _layer(p).train()
    w = layer.weight.detach()
    n = w.numel()
    bound = 5 * (n * p * (1 - p)) ** 0.5
    seen = []
    for _ in range(20):
        eff = layer.effective_weight().detach()
        dropped = int((eff == 0).sum())
        assert abs(dropped - n * p) < bound
        kept = eff != 0
        assert torch.allclose(eff[kept], w[kept] / (1 - p))  # kept weights scaled by 1/(1-p)
        seen.append(kept)
    assert not torch.equal(seen[0], seen[1])  # a fresh mask on every forward


def test_mean_effective_weight_is_the_weight():
    p, steps = 0.3, 2000
    layer = _layer(p).train()
    w = layer.weight.detach()
    total = torch.zeros_like(w)
    with torch.no_grad():
        for _ in range(steps):
            total += layer.effective_weight()
    mean = total / steps
    sigma = w.abs() * (p / ((1 - p) * steps)) ** 0.5
    z = ((mean - w).abs() / sigma).max()
    assert z < 6.5, f"largest deviation {z:.2f} sigma"


def test_training_forward_uses_the_masked_weight_and_torch_seed_reproduces_it():
    p = 0.25
    layer = _layer(p).train()
    x = torch.randn(2, 16, 8, 8)
    torch.manual_seed(7)
    y = layer(x)
    torch.manual_seed(7)
    eff = layer.effective_weight()
    kept = eff != 0
    assert torch.equal(eff[kept], layer.weight[kept] * (1 / (1 - p)))
    assert torch.equal(y, F.conv2d(x, eff, layer.bias, padding=1))


def test_drop_rate_zero_trains_exactly_like_the_original():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).train()
    gm = rramfx.prepare(model, Policy(drop_rate=0.0))
    x = torch.randn(4, 3, 32, 32)
    ref = copy.deepcopy(model)
    assert gm.training
    assert torch.equal(gm(x), ref(x))


def test_eval_without_faults_is_exact_even_with_drop_rate():
    model = timm.create_model("resnet18", num_classes=10).eval()
    gm = rramfx.prepare(model, Policy(drop_rate=0.4, fault_rate=0.2)).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(gm(x), model(x))


def test_gradients_reach_only_kept_weights():
    p = 0.5
    layer = _layer(p).train()
    x = torch.randn(2, 16, 8, 8)
    torch.manual_seed(3)
    layer(x).sum().backward()
    torch.manual_seed(3)
    keep = layer.effective_weight() != 0
    grad = layer.weight.grad
    assert torch.all(grad[~keep] == 0) and (grad[keep] != 0).float().mean() > 0.99


def test_conv2d_same_keeps_same_padding_under_dropconnect():
    from timm.layers import Conv2dSame

    model = nn.Sequential(Conv2dSame(3, 4, 3, stride=2))
    gm = rramfx.prepare(model, Policy(drop_rate=0.3)).train()
    layer = gm.get_submodule("0")
    assert isinstance(layer, Conv2dSame) and isinstance(layer, rramfx.CrossbarLayer)
    x = torch.randn(1, 3, 9, 9)
    torch.manual_seed(1)
    y = gm(x)
    torch.manual_seed(1)
    keep = layer.effective_weight() != 0
    ref = copy.deepcopy(model[0])
    with torch.no_grad():
        ref.weight.mul_(keep / 0.7)
    assert y.shape == (1, 4, 5, 5)
    assert torch.allclose(y, ref(x), atol=1e-6)
    assert "weight" not in layer.__dict__  # the swapped weight was put back


def test_set_drop_rate_and_validation():
    gm = rramfx.prepare(nn.Sequential(nn.Conv2d(3, 3, 3)), Policy(drop_rate=0.1))
    rramfx.set_drop_rate(gm, 0.3)
    assert gm.get_submodule("0").drop_rate == 0.3
    with pytest.raises(rramfx.ArgumentError, match=r"drop_rate must be in \[0, 1\), got 1.0"):
        rramfx.set_drop_rate(gm, 1.0)
    with pytest.raises(rramfx.ArgumentError, match="fault_rate must be a number"):
        rramfx.set_fault_rate(gm, "high")
