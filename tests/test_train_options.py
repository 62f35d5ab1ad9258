"""The training step's speed options (compile, channels_last, precision) on a tiny model: each computes
what the default step computes (bf16 to its rounding), and bad values name the option."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import rramfx
from rramfx.cli import main
from rramfx.data import ImageLoader, synthetic
from rramfx.errors import ArgumentError, ArgumentTypeError
from rramfx.training.loop import TrainOptions
from tests.tiny import TinyNet

ROOT = Path(__file__).resolve().parents[1]


def _loaders(in_chans: int = 3) -> tuple[ImageLoader, ImageLoader]:
    train = ImageLoader(synthetic(256, in_chans=in_chans, size=12), 64, shuffle=True, seed=0)
    test = ImageLoader(synthetic(128, in_chans=in_chans, size=12, split="test"), 128)
    return train, test


def _train(epochs: int = 3, **options) -> tuple[torch.fx.GraphModule, list[dict[str, float]]]:
    torch.manual_seed(0)
    gm = rramfx.prepare(TinyNet(in_chans=3), rramfx.Policy(drop_rate=0.2))
    history = rramfx.train(gm, _loaders()[0], epochs, lr=0.1, progress=False, seed=0, **options)
    return gm, history


def _outputs(gm: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([gm.eval()(x) for x, _ in _loaders()[1]])


def _losses(history: list[dict[str, float]]) -> list[float]:
    return [r["loss"] for r in history]


def test_channels_last_trains_and_evaluates_as_the_default():
    plain, h_plain = _train()
    last, h_last = _train(channels_last=True)
    assert _losses(h_last) == pytest.approx(_losses(h_plain), rel=1e-4)
    assert torch.allclose(_outputs(last), _outputs(plain), atol=1e-5, rtol=0)
    # the model comes back laid out as it went in, and in channels-last it computes the same outputs
    assert all(p.is_contiguous() for p in last.parameters())
    reference = _outputs(plain)
    plain.to(memory_format=torch.channels_last)
    assert torch.allclose(_outputs(plain), reference, atol=1e-5, rtol=0)


def test_bf16_trains_with_fp32_parameters():
    gm, history = _train(precision="bf16")
    losses = _losses(history)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in gm.parameters())
    assert all(b.dtype in (torch.float32, torch.long) for b in gm.buffers())
    # amp=True is the older spelling of precision="bf16"; precision="fp32" is the CPU default
    assert _losses(_train(amp=True)[1]) == losses
    assert _losses(_train(precision="fp32")[1]) == _losses(_train()[1])


@pytest.mark.parametrize("backend", [
    pytest.param("aot_eager", id="dynamo-aot_eager"),  # the tracing, graph breaks and autograd, no C++ build
    pytest.param(None, id="inductor", marks=pytest.mark.slow),  # ~5 s with a warm inductor cache, ~20 s cold
])
def test_compile_trains_as_eager_and_reports_its_time(monkeypatch, backend):
    if backend is not None:
        real = torch.compile
        monkeypatch.setattr(torch, "compile", lambda model: real(model, backend=backend))
    _, eager = _train(epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback here
        _, compiled = _train(epochs=2, compile=True)
    assert _losses(compiled) == pytest.approx(_losses(eager), rel=1e-4)
    assert compiled[0]["compile_seconds"] > 0 and compiled[1]["compile_seconds"] == 0
    assert "compile_seconds" not in eager[0]


def test_compiled_dropconnect_draws_the_eager_masks():
    torch.manual_seed(0)
    gm = rramfx.prepare(TinyNet(in_chans=3), rramfx.Policy(drop_rate=0.5)).train()
    x = torch.randn(4, 3, 12, 12)
    torch.manual_seed(1)
    eager = gm(x)
    after_eager = torch.rand(1)
    torch.manual_seed(1)
    compiled = torch.compile(gm, backend="aot_eager")(x)
    assert torch.allclose(compiled, eager, atol=1e-5) and torch.equal(torch.rand(1), after_eager)


@pytest.mark.parametrize("where", ["torch.compile", "compiled call"])
def test_a_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, where):
    def broken_compile(model, *args, **kwargs):
        if where == "torch.compile":
            raise RuntimeError("no C++ compiler here")

        def call(x):
            model(x)  # draws masks and updates nothing that matters before failing
            raise RuntimeError("no C++ compiler here")
        return call

    _, eager = _train(epochs=2)
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning) as caught:
        _, fell_back = _train(epochs=2, compile=True)
    assert len(caught) == 1 and "no C++ compiler here" in str(caught[0].message)
    assert "eager" in str(caught[0].message)
    assert _losses(fell_back) == pytest.approx(_losses(eager), rel=1e-3)


@pytest.mark.parametrize("options,error,name", [
    ({"compile": "yes"}, ArgumentTypeError, "compile"),
    ({"channels_last": 1}, ArgumentTypeError, "channels_last"),
    ({"precision": "fp16"}, ArgumentError, "precision"),
    ({"precision": "fp32", "amp": True}, ArgumentError, "precision"),
    ({"amp": "on"}, ArgumentTypeError, "amp"),
])
def test_bad_speed_options_name_the_option(options, error, name):
    with pytest.raises(error, match=rf"^{name}"):
        TrainOptions(1, **options)
    gm = rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=0.2))
    with pytest.raises(error, match=rf"^{name}"):
        rramfx.train(gm, _loaders(1)[0], 1, progress=False, **options)


def test_cli_passes_the_speed_options_through(tmp_path, monkeypatch, capsys):
    import rramfx.experiment.cells as cells

    seen = []
    real = cells.run_training

    def spy(gm, loader, options, **kwargs):
        seen.append(options)
        return real(gm, loader, replace(options, compile=False), **kwargs)  # compiling here would be slow

    monkeypatch.setattr(cells, "run_training", spy)
    args = ["train", "--model", "mini_mobilenet_1", "--dataset", "synthetic", "--train-subset", "64",
            "--test-subset", "32", "--epochs", "1", "--out", str(tmp_path / "m.pt"), "--quiet", "--device", "cpu"]
    assert main([*args, "--compile", "--channels-last", "--precision", "bf16"]) == 0
    assert [(o.compile, o.channels_last, o.precision) for o in seen] == [(True, True, "bf16")]
    assert main([*args, "--overwrite"]) == 0  # an existing OUT is skipped without it
    assert (seen[1].compile, seen[1].channels_last, seen[1].precision) == (False, False, None)


@pytest.mark.slow
def test_train_options_benchmark_quick():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_options.py"), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200, check=True).stdout
    ratios = [float(v) for v in re.findall(r"(?m)^\S.*?\s(\d+\.\d+)x\s*$", out)]
    assert ratios and all(r > 0 for r in ratios), out
