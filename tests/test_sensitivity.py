"""Per-layer fault sensitivity and the greedy placement search: rankings, the same chips for every
layer, host layers measured as if on RRAM, the budget honoured, the found policy reproducible, and the
caller's model left as it was."""

import dataclasses
import math

import pytest
import torch
from torch import nn

import rramfx
from rramfx.graph.record import rramfx_meta
from rramfx.search.greedy_placement import search_placement
from rramfx.search.layer_sensitivity import SensitivityError, sensitivity
from rramfx.search.working_copy import layer_macs

from .conftest import SmallNet, assert_unchanged, snapshot
from .tiny import TinyNet, _trained_state, loaders

K = 100.0  # the fragile layer computes K*h - (K-1)*h: exact without faults, wild with one weight stuck
SA1 = rramfx.FaultModel(sa1=0.1)


class FragileNet(TinyNet):
    """TinyNet with a host layer between pooling and the head that is the identity by catastrophic
    cancellation: losing either of a row's two weights multiplies a feature by about ±K."""

    def __init__(self):
        super().__init__()
        self.fragile = nn.Linear(128, 64, bias=False)
        with torch.no_grad():
            eye = torch.eye(64)
            self.fragile.weight.copy_(torch.cat([K * eye, -(K - 1) * eye], dim=1))

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        h = torch.flatten(self.pool(x), 1)
        return self.fc(self.fragile(torch.cat([h, h], dim=1)))


def fragile_model() -> FragileNet:
    model = FragileNet()
    missing, unexpected = model.load_state_dict(_trained_state(0.0, 5), strict=False)
    assert missing == ["fragile.weight"] and not unexpected
    return model.eval()


def fragile_gm(**policy) -> torch.fx.GraphModule:
    return rramfx.prepare(fragile_model(), rramfx.Policy(**policy)).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one torch thread is many times faster (see conftest)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def test_loader():
    return loaders(n_test=256)[1]


def test_fragile_host_layer_ranks_first_and_macs_are_counted(test_loader):
    gm = fragile_gm()
    assert rramfx.placement(gm)["fragile"] == "cpu"
    report = sensitivity(gm, test_loader, SA1, trials=4)
    assert report.ranking()[0] == "fragile"
    assert report["fragile"].device == "cpu" and report["conv2"].device == "rram"
    assert report["fragile"].drop > 0.3 > max(r.drop for r in report.layers[1:])
    assert [r.drop for r in report.layers] == sorted((r.drop for r in report.layers), reverse=True)
    assert report.clean_accuracy == rramfx.evaluate(gm, test_loader) > 0.9
    # 12x12 inputs: conv1 8x12x12 outputs x 1 input x 9 taps, conv2 16x6x6 x 8 x 9, linears in x out
    assert {r.path: r.macs for r in report.layers} == {"conv1": 10368, "conv2": 41472, "fragile": 8192, "fc": 256}
    assert report.total_macs == 10368 + 41472 + 8192 + 256 and report.samples == 256
    text = report.table()
    assert "fragile" in text and "99." not in text.splitlines()[3]  # the fragile row shows its collapse
    assert report.table(markdown=True).splitlines()[1].startswith("| -")
    assert report.to_dict()["layers"][0]["path"] == "fragile"


def test_a_layer_sees_the_chips_of_a_model_that_has_only_it_on_rram(test_loader):
    gm = fragile_gm()
    report = sensitivity(gm, test_loader, SA1, trials=3, seed=5, layers=["conv*"])
    assert sorted(report.ranking()) == ["conv1", "conv2"]
    only_conv2 = fragile_gm(overrides={"conv1": "cpu"})
    expected = rramfx.monte_carlo(only_conv2, test_loader, SA1, trials=3, seed=5, fault_rate=0.1)
    assert report["conv2"].result.accuracies == expected.accuracies
    assert report.fault_rate == 0.1  # p' defaults to the SA1 rate


def test_no_faults_give_zero_drop_and_same_seed_same_report(test_loader):
    gm = fragile_gm()
    report = sensitivity(gm, test_loader, rramfx.FaultModel(), trials=2)
    assert all(r.drop == 0.0 for r in report.layers)
    assert report.ranking() == list(rramfx.placement(gm))  # ties keep module order
    a = sensitivity(gm, test_loader, SA1, trials=3, seed=1).to_dict()
    b = sensitivity(gm, test_loader, SA1, trials=3, seed=1).to_dict()
    c = sensitivity(gm, test_loader, SA1, trials=3, seed=2).to_dict()
    a.pop("seconds"), b.pop("seconds"), c.pop("seconds")
    assert a == b
    assert [r["accuracies"] for r in a["layers"]] != [r["accuracies"] for r in c["layers"]]


def test_generous_budget_puts_every_mac_on_rram(test_loader):
    gm = fragile_gm()
    result = search_placement(gm, test_loader, budget=0.99, fault_model=SA1, trials=3)
    assert set(result.placement.values()) == {"rram"} and result.rram_mac_share == 1.0
    assert result.steps[-1].path == "fragile"  # the worst sensitivity per MAC is tried last
    assert result.loss == result.clean_accuracy - result.accuracy.mean <= 0.99
    assert math.isclose(result.rule_mac_share, (10368 + 41472) / (10368 + 41472 + 8192 + 256))


def test_tiny_budget_keeps_the_fragile_layer_on_the_host_and_the_policy_round_trips(test_loader):
    gm = fragile_gm(drop_rate=0.2)
    before = snapshot(gm)
    placed, record = rramfx.placement(gm), dict(rramfx_meta(gm)["policy"])
    chip = rramfx.inject_faults(gm, SA1, seed=3)
    result = search_placement(gm, test_loader, 0.005, SA1, trials=3)
    assert result.placement["fragile"] == "cpu" and result.placement["conv2"] == "rram"
    assert result.loss <= 0.005 and 0 < result.rram_mac_share < 1
    assert next(s for s in result.steps if s.path == "fragile").reason == "alone over budget"
    assert result.policy.drop_rate == 0.2 and len(result.policy.overrides) == 4
    again = rramfx.prepare(fragile_model(), result.policy)
    assert rramfx.placement(again) == result.placement
    assert isinstance(again.get_submodule("conv1"), rramfx.CrossbarLayer) == (result.placement["conv1"] == "rram")
    # the caller's model: weights, modules, placement, policy record and applied chip as they were
    assert_unchanged(gm, before)
    assert rramfx.placement(gm) == placed and rramfx_meta(gm)["policy"] == record
    layers = rramfx.crossbar_layers(gm)
    assert set(layers) == {"conv1", "conv2"} and all(torch.equal(layers[p].fault_codes, chip[p]) for p in chip)
    assert "rram" in result.table() and result.to_dict()["policy"]["overrides"]["fragile"] == "cpu"


def test_search_reuses_a_matching_report_and_refuses_another(test_loader):
    gm = fragile_gm()
    report = sensitivity(gm, test_loader, SA1, trials=3)
    result = search_placement(gm, test_loader, 0.5, SA1, trials=3, report=report)
    assert result.sensitivity is report
    with pytest.raises(SensitivityError, match="trials 3 there, 4 here"):
        search_placement(gm, test_loader, 0.5, SA1, trials=4, report=report)
    partial = sensitivity(gm, test_loader, SA1, trials=3, layers="conv1")
    with pytest.raises(SensitivityError, match="conv2, fc, fragile not measured"):
        search_placement(gm, test_loader, 0.5, SA1, trials=3, report=partial)


def test_the_whole_candidate_placement_is_checked_not_only_each_layer_alone(test_loader):
    gm = fragile_gm()
    report = sensitivity(gm, test_loader, SA1, trials=3)
    rows = tuple(dataclasses.replace(r, drop=0.0) for r in report.layers)  # hide the fragile layer's drop
    result = search_placement(gm, test_loader, 0.05, SA1, trials=3, report=dataclasses.replace(report, layers=rows))
    assert [s.path for s in result.steps] == ["conv2", "conv1", "fragile", "fc"]  # by MACs on equal drops
    step = result.steps[2]
    assert step.reason == "over budget" and not step.accepted and step.loss > 0.3
    assert result.placement == {"conv1": "rram", "conv2": "rram", "fragile": "cpu", "fc": "rram"}
    assert result.accuracy.mean == result.steps[3].accuracy  # the last kept step's evaluation


@pytest.mark.parametrize("budget", [0, 1, 1.5, -0.01, "0.01", True, math.nan, None])
def test_bad_budget_is_named(budget, test_loader):
    with pytest.raises(SensitivityError, match=r"budget must be .*\(0, 1\)"):
        search_placement(fragile_gm(), test_loader, budget, SA1, trials=2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fault_model": 0.1}, "fault_model must be an rramfx.FaultModel"),
    ({"trials": 0}, "trials must be a positive int"),
    ({"seed": -1}, "seed must be a non-negative int"),
    ({"fault_rate": 1.0}, r"fault_rate must be in \[0, 1\)"),
    ({"layers": ["conv9"]}, "'conv9' matches no weighted layer.*conv1"),
    ({"layers": []}, "layers must name at least one layer"),
    ({"loader": None}, "loader must be a re-iterable of .inputs, labels. batches"),
])
def test_bad_arguments_are_named(kwargs, message, test_loader):
    args = {"loader": test_loader, "fault_model": SA1, "trials": 2, **kwargs}
    with pytest.raises(rramfx.ArgumentError, match=message):  # SensitivityError for the sensitivity-only ones
        sensitivity(fragile_gm(), **args)


def test_unprepared_model_is_refused(test_loader):
    with pytest.raises(TypeError, match="GraphModule"):
        sensitivity(TinyNet(), test_loader, SA1)
    with pytest.raises(rramfx.PlacementError, match="prepare it"):
        sensitivity(rramfx.trace(TinyNet()), test_loader, SA1)


def test_mac_count_of_grouped_depthwise_and_transposed_layers():
    torch.manual_seed(0)
    gm = rramfx.prepare(SmallNet(), rramfx.Policy()).eval()
    macs = layer_macs(gm, torch.randn(2, 3, 8, 8))
    assert macs == {"stem": 16 * 64 * 3 * 9, "dw": 16 * 64 * 1 * 9, "pw": 32 * 64 * 16,
                    "grouped": 32 * 64 * 8 * 9, "shortcut": 32 * 64 * 16, "head.2": 32 * 10}
    up = rramfx.prepare(nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)), rramfx.Policy()).eval()
    assert layer_macs(up, torch.randn(2, 4, 5, 5)) == {"0": 4 * 25 * 3 * 9}  # each input meets 6/2 kernels
