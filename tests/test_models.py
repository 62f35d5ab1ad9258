"""The public timm model list: prepare works, placement covers every weighted layer, and eval output
without faults equals the original model's bit for bit. A representative subset runs by default; the
whole list is marked slow (CI runs it too)."""

import warnings

import pytest
import timm
import torch

import rramfx

from .conftest import input_for, public_model_params, public_models

FAST = {"resnet18", "mobilenetv2_100", "tf_efficientnet_b0", "vgg11_bn", "nf_resnet26", "resnetv2_50x1_bit",
        "convnext_atto", "ghostnet_050", "regnety_002", "lcnet_050"}



def test_model_list_is_the_public_forty():
    names = public_models()
    assert len(names) == 40 and len(set(names)) == 40
    assert set(names) >= FAST


@pytest.mark.parametrize("name", public_model_params(FAST))
def test_public_model(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, pretrained=False).eval()
    x = input_for(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = rramfx.prepare(model, rramfx.Policy(drop_rate=0.2, fault_rate=0.1), example_inputs=x).eval()
    placed = rramfx.placement(gm)
    assert set(rramfx.weighted_layers(model)) <= set(placed)
    with torch.no_grad():
        clean = gm(x)
        assert torch.equal(clean, model(x))
        if "rram" in placed.values():
            rramfx.inject_faults(gm, rramfx.FaultModel(sa1=0.1), seed=0)
            assert not torch.equal(gm(x), clean)
            rramfx.clear_faults(gm)
            assert torch.equal(gm(x), clean)
