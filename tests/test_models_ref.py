"""Reference models: parameter counts against independently computed values, width scaling, names."""

import pytest
import torch
import torchvision
from torch import nn

import rramfx
from rramfx import models
from rramfx.models.spec import ModelSpecError, create_model


def conv(cin, cout, k):
    return cin * cout * k * k


def bn(c):
    return 2 * c


def cifar_resnet_params(blocks, widths=(16, 32, 64), in_chans=3, num_classes=10):
    """He et al.'s CIFAR ResNet with 1x1 projection shortcuts, counted by hand."""
    total = conv(in_chans, widths[0], 3) + bn(widths[0])
    cin = widths[0]
    for stage, c in enumerate(widths):
        for i in range(blocks):
            total += conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c)
            if stage > 0 and i == 0:
                total += conv(cin, c, 1) + bn(c)
            cin = c
    return total + widths[-1] * num_classes + num_classes


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet20_parameters():
    assert count(models.create("resnet20")) == cifar_resnet_params(3) == 272_474
    assert count(models.create("resnet56", num_classes=100)) == cifar_resnet_params(9, num_classes=100)
    assert count(models.create("resnet20", in_chans=1)) == cifar_resnet_params(3, in_chans=1)


def test_vgg13_matches_torchvision_trunk():
    from torchvision.models.vgg import cfgs, make_layers

    trunk = make_layers(cfgs["B"], batch_norm=True)  # torchvision's VGG-13 feature extractor (convs with bias)
    convs = sum(m.bias.numel() for m in trunk.modules() if isinstance(m, nn.Conv2d))
    expected = count(trunk) - convs + 512 * 10 + 10  # ours: bias-free convs (BN follows), one linear head
    model = models.create("vgg13")
    assert count(model) == expected == 9_413_066
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)  # rounding-up pools: 28x28 works too


def test_mobilenetv2_matches_torchvision_parameters_but_keeps_resolution():
    ours = models.create("mobilenetv2")
    assert count(ours) == count(torchvision.models.mobilenet_v2(num_classes=10)) == 2_236_682
    feats = ours.features(torch.randn(1, 3, 32, 32))
    assert feats.shape == (1, 1280, 4, 4)  # 8x downsampling for 32x32 inputs (ImageNet network: 32x)
    half = models.create("mobilenetv2", width=0.5)
    assert count(torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5)) == count(half)


def test_mobilenetv2_round_nearest_as_torchvision():
    # Default: MobileNet's rounding to multiples of 8 (16 channels x 1.2 -> 24); round_nearest=1 widens
    # every layer alike (16 x 1.2 -> 19), the paper's widening. Counts from torchvision's own model.
    eight, plain = models.create("mobilenetv2", width=1.2), models.create("mobilenetv2", width=1.2, round_nearest=1)
    assert count(eight) == count(torchvision.models.mobilenet_v2(num_classes=10, width_mult=1.2)) == 3_204_362
    assert count(plain) == count(torchvision.models.mobilenet_v2(num_classes=10, width_mult=1.2,
                                                                 round_nearest=1)) == 3_192_640
    assert eight.features[1].conv[-1][0].out_channels == 24 and plain.features[1].conv[-1][0].out_channels == 19
    assert plain.features[0][0].out_channels == 38 and plain.classifier.in_features == 1536
    assert count(models.create("mobilenetv2", round_nearest=1)) == 2_236_682  # width 1: the same network
    with pytest.raises(ModelSpecError, match="round_nearest must be a positive int, got 0"):
        models.create("mobilenetv2", round_nearest=0)


@pytest.mark.parametrize("width,widths", [(1.2, (19, 38, 77)), (1.6, (26, 51, 102)), (0.5, (8, 16, 32))])
def test_width_scales_resnet20_channels(width, widths):
    model = models.create("resnet20", width=width)
    assert model.conv1.out_channels == widths[0] and model.layer3[0].conv1.out_channels == widths[2]
    assert count(model) == cifar_resnet_params(3, widths)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vgg_width_grows_parameters_quadratically():
    ratio = count(models.create("vgg13", width=1.2)) / count(models.create("vgg13"))
    assert 1.40 < ratio < 1.46  # ~1.2^2 for the convolutions that dominate


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_mini_mobilenet_has_n_bottlenecks(n):
    model = models.create(f"mini_mobilenet_{n}", in_chans=1)
    blocks = [m for m in model.modules() if isinstance(m, models.InvertedResidual)]
    assert len(blocks) == n
    assert sum(b.use_residual for b in blocks) == max(0, n - 2)  # the first two change shape
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert count(models.create("mini_mobilenet", in_chans=1, bottlenecks=n)) == count(model)


def test_reference_names_through_model_spec_and_placement():
    gm = rramfx.prepare(create_model("resnet20", num_classes=10, in_chans=1), rramfx.Policy())
    placed = rramfx.placement(gm)
    assert sum(d == "rram" for d in placed.values()) == 19  # stem + 18 3x3 convolutions
    assert placed["layer2.0.shortcut.0"] == "cpu" and placed["fc"] == "cpu"
    gm = rramfx.prepare(create_model("mobilenetv2"), rramfx.Policy())
    placed = rramfx.placement(gm)
    assert sum(d == "rram" for d in placed.values()) == 18  # stem + 17 depthwise 3x3
    x = torch.randn(2, 1, 28, 28)
    model = create_model("mini_mobilenet_3", num_classes=10, in_chans=1).eval()
    assert torch.equal(rramfx.prepare(model, rramfx.Policy(drop_rate=0.2)).eval()(x), model(x))


def test_bad_names_and_arguments():
    with pytest.raises(ModelSpecError, match="unknown reference model 'resnet21'. Close names: resnet32, resnet20"):
        models.create("resnet21")
    with pytest.raises(ModelSpecError, match="width must be a number in"):
        models.create("resnet20", width=0)
    with pytest.raises(ModelSpecError, match="1 to 64 bottlenecks"):
        models.create("mini_mobilenet", bottlenecks=0)
    with pytest.raises(ModelSpecError, match="does not take these arguments"):
        models.create("vgg13", depth=3)
    assert "mini_mobilenet_<n>" in models.list_models()


def test_model_recipe_is_the_one_width_rule():
    wide = models.ModelRecipe("resnet20", num_classes=4, in_chans=1, width=1.5)
    assert wide.reference and wide.model_kwargs() == {"num_classes": 4, "in_chans": 1, "width": 1.5}
    base = rramfx.Policy(drop_rate=0.2)
    assert wide.policy(base) is base  # built wide, so not widened again
    assert count(wide.create()) == count(models.create("resnet20", num_classes=4, in_chans=1, width=1.5))
    other = models.ModelRecipe("timm:resnet18", width=1.5)
    assert not other.reference and other.model_kwargs() == {"num_classes": 10, "in_chans": 3}
    assert other.policy(base) == rramfx.Policy(drop_rate=0.2, widen=1.5)
    assert models.ModelRecipe("timm:resnet18").policy(base) is base  # width 1: nothing to widen
    assert models.ModelRecipe("resnet20").model_kwargs() == {"num_classes": 10, "in_chans": 3}


def test_registry_is_its_own_module():
    from rramfx.models import registry

    assert models.create is registry.create and models.list_models is registry.list_models
    assert "resnet20" in registry.list_models() and type(create_model("vgg11")).__name__ == "VGG"
