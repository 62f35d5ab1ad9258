"""Packed chips: one session on onnxruntime's optimised graph, each chip's weights fed as inputs, gives
what a session per chip gives, bit for bit where onnxruntime computes the same kernels."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import rramfx
from rramfx import FaultModel, Policy
from rramfx.onnx.chip_sessions import read_weight_graph
from rramfx.onnx.export import export_onnx
from rramfx.onnx.packed_weights import WeightSlot, _decode_slot, pack_chips
from rramfx.onnx.simulate import ort_monte_carlo

from .test_onnx_export import shared_dir

FM = FaultModel(sa1=0.15, sa0=0.03)


def _convs() -> nn.Module:
    """Conv -> BatchNorm pairs with 16 and 32 channels: onnxruntime fuses the BatchNorm into the weight
    (a factor per output channel) and re-lays the weights out in NCHWc blocks (8 or 16 channels)."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 16, 1), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def _randomise_bn(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so the fusion changes the weights
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module", params=["cpu_linear", "rram_linear"])
def setup(request, tmp_path_factory):
    torch.manual_seed(2)
    net = _randomise_bn(_convs().eval())
    policy = Policy(drop_rate=0.2, fault_rate=0.15, conv_1x1="rram", linear=request.param.split("_")[0])
    gm = rramfx.prepare(net, policy).eval()
    d = shared_dir(tmp_path_factory, f"packed_{request.param}",
                   lambda d: export_onnx(gm, torch.randn(2, 3, 8, 8), d / "net.onnx", faults="inputs"))
    x = torch.randn(20, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    return gm, d / "net.onnx", x, request.param


def test_a_packed_chip_equals_its_own_session(setup):
    gm, path, x, kind = setup
    graph = read_weight_graph(path)
    packed = pack_chips(graph)
    assert packed is not None
    assert {s.layer for s in packed.slots} == set(graph.names) == set(rramfx.crossbar_layers(gm))
    convs = [s for s in packed.slots if len(s.shape) == 4]
    assert len(convs) == 4
    assert sum(s.factor is not None for s in convs) >= 3  # the fused BatchNorms are factors of the gather
    assert any(not np.array_equal(s.index, np.arange(s.index.size)) for s in convs)  # NCHWc blocks: a gather
    session = packed.session(threads=1)
    data = {graph.data_inputs[0]: x.numpy()}
    outs = []
    for seed in (3, 4):
        weights = graph.read_weights(rramfx.inject_faults(copy.deepcopy(gm), FM, seed=seed))
        got = session.run(None, {**data, **packed.feed(weights)})[0]
        want = graph.session(weights, threads=1).run(None, data)[0]
        if kind == "cpu_linear":  # the same kernels on the same values
            assert np.array_equal(got, want)
        else:  # a Gemm weight fed as an input is not pre-packed: its sums run in another order
            assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
        outs.append(got)
    assert np.abs(outs[0] - outs[1]).max() > 1e-2 * np.abs(outs[0]).max()  # each chip is its own


def test_packed_default_equals_chip_sessions_and_pytorch(setup):
    gm, path, x, _ = setup
    with torch.no_grad():
        labels = gm(x).argmax(1)
    labels[::3] = (labels[::3] + 1) % 10
    loader = [(x[i:i + 8], labels[i:i + 8]) for i in range(0, 20, 8)]
    torch_side = rramfx.monte_carlo(gm, loader, FM, trials=5, seed=4)
    packed = ort_monte_carlo(path, loader, FM, trials=5, seed=4, threads=1)
    sessions = ort_monte_carlo(path, loader, FM, trials=5, seed=4, threads=1, method="chip_sessions")
    assert list(packed.accuracies) == list(sessions.accuracies) == list(torch_side.accuracies)
    assert np.array_equal(packed.predictions, sessions.predictions)
    assert len(set(packed.accuracies)) > 1


def test_not_packed_for_other_providers(setup):
    graph = read_weight_graph(setup[1])
    assert pack_chips(graph, providers=["CUDAExecutionProvider"]) is None


def test_a_weight_that_does_not_decode_is_refused():
    layers = ["a", "b"]
    healthy = {"a": np.zeros(8, np.float32), "b": np.zeros(8, np.float32)}
    i = np.arange(8)
    ones = np.full(8, 2.0, np.float32)  # a factor of 2 on every position
    low = ((i % 4096 + 1) * 2).astype(np.float32)
    high = (((i // 4096) * 2 + 0 + 1) * 2).astype(np.float32)  # layer "a"
    slot = _decode_slot("w", ones, low, high, layers, healthy)
    assert isinstance(slot, WeightSlot) and slot.layer == "a" and np.array_equal(slot.index, i)
    assert np.array_equal(slot.values(np.arange(8, dtype=np.float32)), 2 * np.arange(8, dtype=np.float32))
    mixed = high.copy()
    mixed[3] = 2 * 2  # one position from layer "b"
    assert _decode_slot("w", ones, low, mixed, layers, healthy) is None
    assert _decode_slot("w", ones, low * 1.5, high, layers, healthy) is None  # not a whole index
    assert _decode_slot("w", ones, low, high, layers, {"a": np.zeros(4, np.float32), "b": healthy["b"]}) is None
    padded = ones.copy()
    padded[5] = 0
    assert _decode_slot("w", padded, low, high, layers, healthy) is None  # a padded position must read 0
    low0, high0 = low.copy(), high.copy()
    low0[5] = high0[5] = 0
    slot = _decode_slot("w", padded, low0, high0, layers, healthy)
    assert slot.values(np.ones(8, np.float32))[5] == 0 and slot.factor is not None


def test_a_layer_onnxruntime_multiplies_by_zero_gets_no_slot(tmp_path):
    """timm zero-initialises the last BatchNorm of each residual block: the fused weight is 0 whatever the
    chip, so that layer has no slot, and the chips still compute what their own sessions compute."""
    torch.manual_seed(3)
    net = _randomise_bn(_convs().eval())
    net[4].weight.data.zero_()  # the second conv's BatchNorm
    gm = rramfx.prepare(net, Policy(drop_rate=0.2, fault_rate=0.15, conv_1x1="rram")).eval()
    export_onnx(gm, torch.randn(2, 3, 8, 8), tmp_path / "net.onnx", faults="inputs")
    graph = read_weight_graph(tmp_path / "net.onnx")
    packed = pack_chips(graph)
    assert packed is not None
    assert set(graph.names) - {s.layer for s in packed.slots} == {"3"}  # the second conv, at index 3
    weights = graph.read_weights(rramfx.inject_faults(copy.deepcopy(gm), FM, seed=1))
    data = {graph.data_inputs[0]: np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)}
    got = packed.session(threads=1).run(None, {**data, **packed.feed(weights)})[0]
    assert np.array_equal(got, graph.session(weights, threads=1).run(None, data)[0])
