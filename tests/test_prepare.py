import pytest
import timm
import torch
from torch import nn

import rramfx
from rramfx import Policy

from .conftest import SmallNet, assert_unchanged, snapshot


@pytest.mark.parametrize("training", [True, False])
def test_prepare_leaves_the_model_untouched(training):
    model = timm.create_model("resnet18", num_classes=10).train(training)
    before = snapshot(model)
    gm = rramfx.prepare(model, Policy(drop_rate=0.3, fault_rate=0.1), example_inputs=torch.randn(1, 3, 32, 32))
    gm.train()
    gm(torch.randn(2, 3, 32, 32)).sum().backward()
    rramfx.inject_faults(gm, rramfx.FaultModel(sa1=0.2), seed=0)
    assert_unchanged(model, before)
    assert gm.training and model.training == training
    assert not any(isinstance(m, rramfx.CrossbarLayer) for m in model.modules())


def test_prepared_model_mode_follows_the_input():
    model = SmallNet().eval()
    assert not rramfx.prepare(model).training
    assert rramfx.prepare(model.train()).training


def test_state_dict_keys_match_and_checkpoints_load():
    model = timm.create_model("resnet18", num_classes=10)
    gm = rramfx.prepare(model, Policy(drop_rate=0.2))
    assert set(gm.state_dict()) == set(model.state_dict())
    other = timm.create_model("resnet18", num_classes=10)
    gm.load_state_dict(other.state_dict())
    assert torch.equal(gm.get_submodule("conv1").weight, other.conv1.weight)


def test_prepare_records_policy():
    gm = rramfx.prepare(SmallNet(), Policy(drop_rate=0.2, overrides={"pw": "rram"}))
    assert Policy.from_dict(gm.rramfx_record["policy"]) == Policy(drop_rate=0.2, overrides={"pw": "rram"})


def test_prepare_rejects_non_modules_and_bad_policies():
    with pytest.raises(TypeError, match="model must be an nn.Module, got str"):
        rramfx.prepare("resnet18")
    with pytest.raises(rramfx.ArgumentTypeError, match="policy must be an rramfx.Policy, a dict or a policy file"):
        rramfx.prepare(SmallNet(), 0.2)
    with pytest.raises(rramfx.PolicyError, match="unknown policy field"):
        rramfx.prepare(SmallNet(), {"drop": 0.2})


def _synthetic_task(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.5
    for c in range(3):  # classes 0-2 light up one colour channel, class 3 darkens all of them
        x[y == c, c] += 1.0
    x[y == 3] -= 1.0
    return x, y


def test_short_dropconnect_training_lowers_the_loss():
    torch.manual_seed(0)
    x, y = _synthetic_task()
    gm = rramfx.prepare(SmallNet(num_classes=4), Policy(drop_rate=0.2)).train()
    opt = torch.optim.SGD(gm.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        start = loss_fn(gm.eval()(x), y).item()
    gm.train()
    for _ in range(5):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            loss_fn(gm(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    with torch.no_grad():
        end = loss_fn(gm.eval()(x), y).item()
        accuracy = (gm(x).argmax(1) == y).float().mean().item()
    assert end < 0.5 * start and accuracy > 0.8, (start, end, accuracy)
