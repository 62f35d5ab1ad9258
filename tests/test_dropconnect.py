"""DropConnect's mask: its rate, independence, exact gradient, reproducibility and compact backward;
and the GPU benchmark script, checked on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rramfx
from rramfx.crossbar.layers import DRAW_LEVELS, dropconnect, keep_mask


def _quantised(p: float) -> float:
    return round(p * DRAW_LEVELS) / DRAW_LEVELS


@pytest.mark.parametrize("p", [1e-4, 0.01, 0.2, 0.5, 0.9, 0.9995])
def test_drop_rate_within_five_sigma_of_p(p):
    n = 1 << 20
    torch.manual_seed(0)
    dropped = int((~keep_mask((1024, 1024), p)).sum())
    q = _quantised(p)
    assert abs(q - p) <= 0.5 / DRAW_LEVELS  # the rate is p to 1/65536 (rounded to the nearest level)
    assert abs(dropped - n * q) < 5 * (n * q * (1 - q)) ** 0.5 + 1, (dropped, n * q)


def test_rates_beyond_the_resolution_keep_or_drop_everything():
    assert keep_mask((64, 64), 0.4 / DRAW_LEVELS).all()
    assert not keep_mask((64, 64), 1 - 0.4 / DRAW_LEVELS).any()


def test_drop_rate_per_layer_of_a_prepared_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 128, 3), nn.Conv2d(128, 128, 3))
    p = 0.3
    gm = rramfx.prepare(model, rramfx.Policy(drop_rate=p)).train()
    for layer in rramfx.crossbar_layers(gm).values():
        n = layer.weight.numel()
        dropped = int((layer.effective_weight() == 0).sum())
        assert abs(dropped - n * p) < 5 * (n * p * (1 - p)) ** 0.5


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def test_masks_independent_across_steps_layers_and_neighbouring_weights():
    n = 1 << 20
    bound = 5 / n**0.5  # the correlation of independent masks is about N(0, 1/n)
    torch.manual_seed(1)
    first, second = keep_mask((n,), 0.3), keep_mask((n,), 0.3)  # two steps of one layer
    assert abs(_corr(first, second)) < bound
    gm = rramfx.prepare(nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 1024)),
                        rramfx.Policy(drop_rate=0.3, linear="rram")).train()
    a, b = (m.effective_weight() != 0 for m in rramfx.crossbar_layers(gm).values())
    assert abs(_corr(a, b)) < bound  # two layers of one step
    # Four 16-bit draws share one 64-bit word: lanes of a word are independent too.
    lanes = first.view(-1, 4)
    for i in range(1, 4):
        assert abs(_corr(lanes[:, 0], lanes[:, i])) < 5 / (n / 4) ** 0.5


def test_same_seed_same_mask_other_seed_other_mask():
    torch.manual_seed(5)
    a = keep_mask((257, 33), 0.2)
    torch.manual_seed(5)
    b = keep_mask((257, 33), 0.2)
    c = keep_mask((257, 33), 0.2)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_gradient_are_exact(dtype):
    p = 0.35
    w = torch.randn(64, 32, 3, 3, dtype=dtype, requires_grad=True)
    upstream = torch.randn(64, 32, 3, 3, dtype=dtype)
    torch.manual_seed(2)
    keep = keep_mask(w.shape, p)
    torch.manual_seed(2)
    out = dropconnect(w, p)
    assert out.dtype == dtype
    assert torch.equal(out, w.detach() * keep * (1 / (1 - p)))
    out.backward(upstream)
    assert torch.equal(w.grad, upstream * keep * (1 / (1 - p)))
    assert torch.all(w.grad[~keep] == 0)


def test_gradient_through_a_convolution_is_the_masked_scaled_gradient():
    p = 0.5
    layer = rramfx.prepare(nn.Sequential(nn.Conv2d(8, 16, 3)), rramfx.Policy(drop_rate=p)).train().get_submodule("0")
    x = torch.randn(2, 8, 6, 6)
    torch.manual_seed(3)
    layer(x).square().sum().backward()
    torch.manual_seed(3)
    keep = keep_mask(layer.weight.shape, p)
    eff = (layer.weight.detach() * keep * 2.0).requires_grad_()
    F.conv2d(x, eff, layer.bias.detach()).square().sum().backward()
    assert torch.equal(layer.weight.grad, eff.grad * keep * 2.0)


def test_only_the_one_byte_mask_is_kept_for_the_backward():
    w = torch.randn(128, 64, 3, 3, requires_grad=True)
    saved = []

    def pack(t):
        saved.append((t.dtype, t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = dropconnect(w, 0.2)
    assert saved == [(torch.bool, w.shape)]
    out.sum().backward()


def test_p_zero_is_the_identity_and_no_grad_works():
    w = torch.randn(16, 3, 3, 3, requires_grad=True)
    assert dropconnect(w, 0.0) is w
    torch.manual_seed(6)
    with torch.no_grad():
        out = dropconnect(w, 0.5)
    torch.manual_seed(6)
    assert not out.requires_grad and torch.equal(out, w.detach() * keep_mask(w.shape, 0.5) * 2.0)


def test_channels_last_weight_keeps_its_layout():
    w = torch.randn(32, 16, 3, 3).to(memory_format=torch.channels_last).requires_grad_()
    torch.manual_seed(4)
    out = dropconnect(w, 0.25)
    torch.manual_seed(4)
    keep = keep_mask(w.shape, 0.25)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, w.detach() * keep * (1 / 0.75))


@pytest.mark.slow
def test_gpu_benchmark_script_runs_on_the_cpu(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh"), "--device", "cpu", "--quick"], env=env, check=True,
                   capture_output=True, timeout=600)
    text = (tmp_path / "gpu_benchmarks.txt").read_text()
    for line in ("timm:resnet18", "resnet20", "timm:mobilenetv2_100", "model tv:resnet18:", "monte_carlo"):
        assert line in text, text
