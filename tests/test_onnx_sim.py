"""onnxruntime Monte-Carlo: the same chips as the PyTorch side, trial by trial."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import rramfx
from rramfx import FaultModel, Policy
from rramfx.crossbar.faults import chip_seed
from rramfx.onnx.export import export_onnx
from rramfx.onnx.meta import OnnxError
from rramfx.onnx.simulate import ort_monte_carlo

from .test_onnx_export import shared_dir

FM = FaultModel(sa1=0.15, sa0=0.03)


def _net() -> nn.Module:
    """Small, and without global pooling, so that its predictions differ between inputs and chips."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten(),
                         nn.Linear(4 * 16 * 16, 10))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    gm = rramfx.prepare(_net().eval(), Policy(drop_rate=0.2, fault_rate=0.15)).eval()
    d = shared_dir(tmp_path_factory, "sim",
                   lambda d: export_onnx(gm, torch.randn(2, 3, 16, 16), d / "small.onnx", faults="inputs"))
    path = d / "small.onnx"
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, 16, 16, generator=gen)
    with torch.no_grad():
        labels = gm(x).argmax(1)
    labels[::4] = (labels[::4] + 1) % 10  # a quarter wrong on the healthy chip
    return gm, path, d, x, labels


def test_same_chips_as_a_pytorch_loop(setup):
    gm, path, _, x, labels = setup
    result = ort_monte_carlo(path, (x, labels), FM, trials=6, seed=11, batch_size=16)
    assert result.predictions.shape == (6, 40) and result.samples == 40 and result.fault_rate == 0.15
    g = copy.deepcopy(gm)
    accuracies = []
    for i in range(6):
        rramfx.inject_faults(g, FM, seed=chip_seed(11, i))
        with torch.no_grad():
            pred = g(x).argmax(1).numpy()
        assert np.array_equal(pred, result.predictions[i]), f"chip {i}"
        accuracies.append(float((pred == labels.numpy()).mean()))
    assert list(result.accuracies) == accuracies
    assert len(set(map(tuple, result.predictions))) == 6  # different chips, different predictions
    assert len(set(accuracies)) > 1
    assert result.mean == pytest.approx(np.mean(accuracies))
    assert result.seeds == tuple(chip_seed(11, i) for i in range(6))


def test_agrees_with_rramfx_monte_carlo(setup):
    from rramfx.evaluation.chips import monte_carlo

    gm, path, _, x, labels = setup
    loader = [(x[i:i + 16], labels[i:i + 16]) for i in range(0, 40, 16)]
    torch_side = monte_carlo(gm, loader, FM, trials=5, seed=2)
    ort_side = ort_monte_carlo(path, loader, FM, trials=5, seed=2)
    assert list(ort_side.accuracies) == list(torch_side.accuracies)
    assert ort_side.std == pytest.approx(torch_side.std)


def test_inputs_only_and_errors(setup, tmp_path):
    gm, path, _, x, _ = setup
    result = ort_monte_carlo(path, x[:8], FM, trials=2, seed=0)
    assert result.accuracies is None and result.predictions.shape == (2, 8)
    clean = export_onnx(gm, x[:2], tmp_path / "clean.onnx")
    with pytest.raises(OnnxError, match="needs an export with faults='inputs'"):
        ort_monte_carlo(clean, x, FM, trials=1, seed=0)
    with pytest.raises(rramfx.ArgumentError, match="trials must be a positive int"):
        ort_monte_carlo(path, x, FM, trials=0, seed=0)


def test_empty_data_is_an_error(setup):
    _, path, _, x, _ = setup
    with pytest.raises(rramfx.ArgumentError, match="data holds no samples"):
        ort_monte_carlo(path, x[:0], FM, trials=1, seed=0)
