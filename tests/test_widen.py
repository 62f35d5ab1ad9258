"""widen_channels: coupled channel counts grow together, the input channels and outputs stay, the
Net2WiderNet widening keeps the output, and what cannot be widened is refused with the node named."""

import warnings
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import rramfx
from rramfx.errors import PassError
from rramfx.graph.record import rramfx_meta
from rramfx.passes import widen_channels
from rramfx.passes.widen_ops import WeightedLayerNorm

from .conftest import assert_unchanged, input_for, public_model_params, public_models, snapshot
from .structural import rel_err


def outputs(gm, model, x):
    with torch.no_grad():
        return gm.eval()(x), model.eval()(x)


class CouplingNet(nn.Module):
    """Every coupling the analysis handles in one small graph: GroupNorm, a depthwise convolution with
    a channel multiplier, a grouped convolution, BatchNorm, per-channel PReLU, chunk + residual add,
    concatenation, a slice, squeeze-and-excitation, a channels-last LayerNorm, split, narrow, and a
    flatten of C×4×4 into a linear layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.dw = nn.Conv2d(16, 32, 3, padding=1, groups=16)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(32)
        self.prelu = nn.PReLU(32)
        self.a = nn.Conv2d(16, 8, 1)
        self.b = nn.Conv2d(16, 8, 1)
        self.se1 = nn.Conv2d(48, 12, 1)
        self.se2 = nn.Conv2d(12, 48, 1)
        self.ln = nn.LayerNorm(48)
        self.pw = nn.Conv2d(24, 24, 1)
        self.head = nn.Linear(24 * 4 * 4 + 24, 10)

    def forward(self, x):
        x = F.relu(self.gn(self.stem(x)))
        y = self.prelu(self.bn(self.grouped(self.dw(x))))
        y1, y2 = y.chunk(2, dim=1)
        y = y1 + y2
        z = torch.cat([self.a(x), y, self.b(x)], dim=1)
        z = torch.cat([z, z[:, :16]], dim=1)
        z = z * torch.sigmoid(self.se2(F.relu(self.se1(z.mean((2, 3), keepdim=True)))))
        z = self.ln(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        p, q = torch.split(z, [24, 24], dim=1)
        p = F.adaptive_avg_pool2d(self.pw(p) + q.narrow(1, 0, 24), 4)
        return self.head(torch.cat([p.flatten(1), p.mean((2, 3)).view(p.shape[0], -1)], dim=1))


@pytest.fixture
def coupling_net():
    torch.manual_seed(0)
    return CouplingNet().eval()


X16 = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_every_coupling_keeps_the_output_at_factor_two(coupling_net):
    gm = rramfx.trace(coupling_net)
    before = snapshot(gm)
    out = widen_channels(gm, 2.0, X16, preserve_function=True)
    assert_unchanged(gm, before)
    got, want = outputs(out, coupling_net, X16)
    assert got.shape == want.shape == (2, 10)
    assert rel_err(got, want) <= 1e-4
    mods = dict(out.named_modules())
    assert (mods["stem"].in_channels, mods["stem"].out_channels) == (3, 32)
    assert (mods["gn"].num_groups, mods["gn"].num_channels) == (8, 32)  # whole groups are duplicated
    assert (mods["dw"].in_channels, mods["dw"].out_channels, mods["dw"].groups) == (32, 64, 32)  # still depthwise
    assert (mods["grouped"].in_channels, mods["grouped"].out_channels, mods["grouped"].groups) == (64, 64, 4)
    assert mods["bn"].num_features == 64 and mods["prelu"].weight.numel() == 64
    assert mods["ln"].normalized_shape == (96,) and type(mods["ln"]) is nn.LayerNorm  # 2x: plain statistics
    assert (mods["se1"].in_channels, mods["se1"].out_channels, mods["se2"].out_channels) == (96, 24, 96)
    assert (mods["pw"].in_channels, mods["pw"].out_channels) == (48, 48)
    assert (mods["head"].in_features, mods["head"].out_features) == (48 * 16 + 48, 10)  # outputs never change


def test_layernorm_over_unevenly_copied_channels_weights_its_statistics(coupling_net):
    gm = rramfx.trace(coupling_net)
    out = widen_channels(gm, 1.5, X16, preserve_function=True)
    assert rel_err(*outputs(out, coupling_net, X16)) <= 1e-4
    ln = out.get_submodule("ln")
    assert isinstance(ln, WeightedLayerNorm) and ln.normalized_shape == (72,)
    # 48 channels -> 72: 24 of them have one copy (each counts 1/2), the other 24 none (each counts 1)
    weights = sorted(ln.stat_weight.mul(48).tolist())
    assert weights == pytest.approx([0.5] * 48 + [1.0] * 24)
    assert ln.stat_weight.sum().item() == pytest.approx(1.0)
    record = rramfx_meta(out)["widen"]
    assert record["remedied"] == ["node 'ln': LayerNorm 'ln' normalises over it (weights)"]
    assert record["inexact"] == [] and record["max_relative_error"] <= 1e-4
    # trained from scratch, the widened network keeps a plain LayerNorm (as if built wide)
    fresh = widen_channels(gm, 1.5, X16, preserve_function=False)
    assert type(fresh.get_submodule("ln")) is nn.LayerNorm
    assert rramfx_meta(fresh)["widen"]["inexact"] == ["node 'ln': LayerNorm 'ln' normalises over it"]
    assert rramfx_meta(fresh)["widen"]["max_relative_error"] is None
    assert fresh(X16).shape == (2, 10)


class Plain(nn.Module):
    def __init__(self, c=20, classes=5):
        super().__init__()
        self.c1 = nn.Conv2d(3, c, 3, padding=1)
        self.b1 = nn.BatchNorm2d(c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        self.b2 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)) + y)
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("factor,divisor,expected", [(1.5, 1, 30), (1.5, 8, 32), (1.2, 1, 24), (1.0, 8, 24),
                                                     (1.6, 4, 32)])
def test_rounding_follows_the_divisor(factor, divisor, expected):
    torch.manual_seed(0)
    model = Plain().eval()
    x = torch.randn(2, 3, 8, 8)
    out = widen_channels(rramfx.trace(model), factor, x, preserve_function=True, divisor=divisor)
    assert [out.c1.out_channels, out.c2.in_channels, out.c2.out_channels, out.fc.in_features] == [expected] * 4
    assert (out.c1.in_channels, out.fc.out_features) == (3, 5)
    assert rel_err(*outputs(out, model, x)) <= 1e-4


def test_preserve_false_reinitialises_and_trains():
    torch.manual_seed(0)
    model = Plain(c=16, classes=4).train()
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    out = widen_channels(rramfx.trace(model), 1.5, x, preserve_function=False)
    assert out.training  # the training flag is kept
    assert (out.c2.weight.shape, out.fc.weight.shape) == ((24, 24, 3, 3), (4, 24))
    # the old positions hold fresh weights, not the original ones (the paper trains from scratch)
    assert not torch.allclose(out.c2.weight[:16, :16], model.c2.weight)
    assert torch.equal(out.b2.weight[:16], model.b2.weight)  # norm layers keep their per-channel values
    opt = torch.optim.SGD(out.parameters(), lr=0.1)
    before = {k: v.detach().clone() for k, v in out.named_parameters()}
    loss = F.cross_entropy(out(x), y)
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in out.parameters())
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(before[k], v) for k, v in out.named_parameters() if v.dim() > 1)
    with torch.no_grad():
        assert F.cross_entropy(out(x), y).item() < loss.item()


def test_resnet18_channels_and_parameter_count():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10).eval()
    x = input_for("resnet18")
    gm = rramfx.trace(model)
    out = widen_channels(gm, 1.5, x, preserve_function=True)
    got, want = outputs(out, model, x)
    assert rel_err(got, want) <= 1e-4
    old, new = dict(model.named_modules()), dict(out.named_modules())
    convs = [n for n, m in old.items() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20
    for name in convs:
        o, w = old[name], new[name]
        assert w.out_channels == o.out_channels * 3 // 2, name
        assert w.in_channels == (3 if name == "conv1" else o.in_channels * 3 // 2), name
    assert (new["fc"].in_features, new["fc"].out_features) == (768, 10)
    # the input layer and the classifier grow on one side (x1.5), every hidden layer on both (x2.25)
    edge = {"conv1.weight", "fc.weight", "fc.bias"}
    params = dict(model.named_parameters())
    one_sided = sum(p.numel() for n, p in params.items() if n in edge or p.dim() == 1) - params["fc.bias"].numel()
    hidden = sum(p.numel() for n, p in params.items() if n not in edge and p.dim() > 1)
    after = rramfx.param_count(out)
    assert after == 2.25 * hidden + 1.5 * one_sided + 10
    assert abs(after - 2.25 * hidden) / (2.25 * hidden) < 0.05
    record = rramfx_meta(out)["widen"]
    assert (record["params_before"], record["params_after"]) == (rramfx.param_count(model), after)
    assert record["layers"]["layer1.0.conv1"] == {"in": (64, 96), "out": (64, 96)}


class UnknownOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        y = self.c2(torch.relu(self.c1(x)))
        y = torch.cumsum(y, dim=1)  # couples channels in a way the analysis does not model
        return self.fc(self.c3(y).mean((2, 3)))


def test_unknown_operation_is_named_or_kept():
    torch.manual_seed(0)
    model = UnknownOp().eval()
    x = torch.randn(2, 3, 8, 8)
    gm = rramfx.trace(model)
    with pytest.raises(PassError, match=r"cannot widen through node 'cumsum'.*cumsum\(\).*produced by c2"):
        widen_channels(gm, 1.5, x)
    with pytest.warns(UserWarning, match=r"kept 1 set\(s\) of channels at their width: c2 \(node 'cumsum'"):
        out = widen_channels(gm, 1.5, x, preserve_function=True, on_unsupported="keep")
    # c2's channels reach cumsum and stay; c1 and c3 (after it) produce channels of their own and widen
    assert [out.c1.out_channels, out.c2.out_channels, out.c3.in_channels, out.c3.out_channels] == [12, 8, 8, 12]
    kept = rramfx_meta(out)["widen"]["kept"]
    assert [(k["producers"], k["channels"]) for k in kept] == [(["c2"], 8)]
    assert rel_err(*outputs(out, model, x)) <= 1e-4


class EcaLike(nn.Module):
    """ECA attention: a 1-D convolution slides along the channel axis."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.eca = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        y = self.c1(x)
        a = self.eca(y.mean((2, 3)).view(y.shape[0], 1, -1)).view(y.shape[0], -1, 1, 1)
        return self.fc((y * a.sigmoid()).mean((2, 3)))


def test_convolution_across_channels_runs_on_the_original_channels():
    torch.manual_seed(0)
    model = EcaLike().eval()
    x = torch.randn(2, 3, 8, 8)
    gm = rramfx.trace(model)
    out = widen_channels(gm, 1.5, x, preserve_function=True)
    assert rel_err(*outputs(out, model, x)) <= 1e-5
    assert (out.c1.out_channels, out.eca.weight.shape, out.fc.in_features) == (24, (1, 1, 3), 24)
    gathers = [n for n in out.graph.nodes if n.target is torch.index_select]
    assert [n.args[1] for n in gathers] == [2, 2]  # originals in, copies out, along the channel axis
    assert torch.equal(out.widen_originals, torch.arange(16)) and out.widen_sources.tolist() == [
        *range(16), *range(8)]
    assert rramfx_meta(out)["widen"]["remedied"] == ["node 'eca': convolution 'eca' slides along it (gather)"]
    fresh = widen_channels(gm, 1.5, x)  # from scratch, the convolution slides over all 24 channels
    assert not any(n.target is torch.index_select for n in fresh.graph.nodes)
    assert rramfx_meta(fresh)["widen"]["inexact"] == ["node 'eca': convolution 'eca' slides along it"]
    assert fresh(x).shape == (2, 3)


class Standardised(nn.Module):
    """BiT-style weight standardisation with GroupNorm, and NF-style scaled standardisation."""

    def __init__(self):
        from timm.layers import ScaledStdConv2d, StdConv2d

        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.std = StdConv2d(16, 16, 3, padding=1, eps=1e-8)
        self.gn = nn.GroupNorm(8, 16)
        self.scaled = ScaledStdConv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        y = self.stem(x)
        y = torch.relu(self.gn(self.std(y))) + y
        return self.fc(torch.relu(self.scaled(y)).mean((2, 3)))


def test_weight_standardised_layers_keep_their_output():
    torch.manual_seed(0)
    model = Standardised().eval()
    x = torch.randn(2, 3, 8, 8)
    out = widen_channels(rramfx.trace(model), 1.5, x, preserve_function=True)
    assert type(out.std).__name__ == "StdConv2d" and type(out.scaled).__name__ == "ScaledStdConv2d"
    assert (out.std.weight.shape, out.scaled.weight.shape, out.scaled.gain.shape) == (
        (24, 24, 3, 3), (24, 24, 3, 3), (24, 1, 1, 1))
    assert (out.gn.num_groups, out.gn.num_channels) == (12, 24)  # whole groups of two are duplicated
    assert out.scaled.scale == pytest.approx(model.scaled.scale / 1.5 ** 0.5)  # gamma / sqrt(fan-in)
    assert rel_err(*outputs(out, model, x)) <= 1e-5


class ShapeBranch(nn.Module):
    """A head whose forward branches on the input size (the tracer makes it a leaf, like timm's VGG
    ConvMlp); its layers run as one chain."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Conv2d(8, 16, 2)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        if x.shape[-1] < 2:
            x = F.adaptive_avg_pool2d(x, 2)
        return self.fc2(self.act(self.fc1(x)))


def test_leaf_modules_whose_layers_form_a_chain_are_followed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), ShapeBranch(), nn.Flatten()).eval()
    x = torch.randn(2, 3, 4, 4)
    with pytest.warns(UserWarning, match="contain weighted layers"):
        gm = rramfx.trace(model)
    assert rramfx_meta(gm)["auto_leaves"] == ["2"]
    out = widen_channels(gm, 1.5, x, preserve_function=True)
    assert (out.get_submodule("2.fc1").in_channels, out.get_submodule("2.fc1").out_channels) == (12, 24)
    assert out.get_submodule("2.fc2").out_channels == 4  # the model's output
    assert rel_err(*outputs(out, model, x)) <= 1e-5


@pytest.mark.parametrize("kwargs,needle", [
    ({"factor": 0.5}, "factor must be a finite number >= 1"),
    ({"factor": float("inf")}, "factor must be a finite number >= 1"),
    ({"factor": 1.5, "divisor": 0}, "divisor must be an integer >= 1"),
    ({"factor": 1.5, "on_unsupported": "skip"}, "on_unsupported must be one of"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(rramfx.ArgumentError, match=needle):
        widen_channels(rramfx.trace(Plain()), example_inputs=torch.randn(1, 3, 8, 8), **kwargs)


def test_crossbar_layers_are_refused():
    gm = rramfx.prepare(Plain(), rramfx.Policy(drop_rate=0.1))
    with pytest.raises(PassError, match="'c1' is already a crossbar layer; widen before to_crossbar"):
        widen_channels(gm, 1.5, torch.randn(1, 3, 8, 8))


# ---- the public model list -------------------------------------------------------------------------
FAST = {"lcnet_050", "ghostnet_050", "mobilenetv3_small_050", "ecaresnet26t", "convnext_atto"}
#: Models whose exactness needs a remedy at 1.5x, and the remedy.
REMEDIED = {"ecaresnet26t": "(gather)", "convnext_atto": "(weights)"}
EXTRA_FILE = Path(__file__).with_name("models_widen_extra.txt")


def extra_models() -> list[tuple[str, str]]:
    """(source, name) pairs of tests/models_widen_extra.txt: families beyond tests/models.txt."""
    lines = [ln.split("#")[0].strip() for ln in EXTRA_FILE.read_text().splitlines()]
    return [tuple(ln.split(":", 1)) for ln in lines if ln]


def build(source: str, name: str) -> nn.Module:
    if source == "timm":
        return timm.create_model(name, num_classes=10, pretrained=False)
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)


def assert_widens_exactly(model: nn.Module, x: torch.Tensor) -> dict:
    """Widen 1.5x preserving the function: output kept, every hidden layer widened, parameters x1.5^2
    in the hidden layers (x1.5 for the stem and the classifier). Returns the record."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = rramfx.trace(model)
    out = widen_channels(gm, 1.5, x, preserve_function=True)
    got, want = outputs(out, model, x)
    assert got.shape == want.shape
    assert rel_err(got, want) <= 1e-4
    ratio = rramfx.param_count(out) / rramfx.param_count(model)
    assert 2.1 < ratio < 2.3  # hidden layers grow 1.5 x 1.5
    record = rramfx_meta(out)["widen"]
    assert record["kept"] == [] and record["inexact"] == []
    return record


@pytest.mark.parametrize("name", public_model_params(FAST))
def test_public_model_widens_preserving_its_output(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, pretrained=False).eval()
    record = assert_widens_exactly(model, input_for(name))
    if name in REMEDIED:
        assert record["remedied"] and all(r.endswith(REMEDIED[name]) for r in record["remedied"])
    else:
        assert record["remedied"] == []


@pytest.mark.slow
@pytest.mark.parametrize("source,name", extra_models())
def test_more_families_widen_preserving_their_output(source, name):
    torch.manual_seed(0)
    model = build(source, name).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert_widens_exactly(model, x)


def test_the_extra_list_holds_new_families():
    extra = extra_models()
    assert len(extra) >= 15 and len(set(extra)) == len(extra)
    assert not {n for s, n in extra if s == "timm"} & set(public_models())
    assert {s for s, _ in extra} <= {"timm", "torchvision"}
