"""Compose rramfx's structural passes by hand on a timm ResNet-18 and print what each one changed.

Two pipelines:

1. pad the shortcut 1x1 convolutions to 3x3 and widen every hidden layer by 1.5x, both exactly
   function-preserving: the result computes what the original does, with more of it on RRAM;
2. the same after replacing two convolutions with MobileNetV2 linear bottlenecks (a new network,
   to be trained from scratch), as in the follow-up report.

Run with ``.venv/bin/python examples/compose_passes.py`` (about a minute on two CPU cores; nothing
is downloaded).
"""

from __future__ import annotations

import functools
import warnings

import timm
import torch

import rramfx
from rramfx.graph import rramfx_meta
from rramfx.passes import assign_devices, compose, pad_1x1_to_3x3, replace_with_bottleneck, widen_channels


def rram_share(gm: torch.fx.GraphModule) -> str:
    """Layers and weights on RRAM under the default kernel-size rule."""
    placed = assign_devices(gm, rramfx.Policy())
    lines = rramfx.summary(placed).splitlines()
    return lines[-2].strip()


def show(title: str, gm: torch.fx.GraphModule, reference: torch.nn.Module, x: torch.Tensor) -> None:
    meta = rramfx_meta(gm)
    print(f"== {title}")
    print(f"passes run, in order: {' -> '.join(meta['passes'])}")
    if "bottleneck" in meta:
        for r in meta["bottleneck"]["replaced"]:
            print(f"  bottleneck  {r['path']}: {r['in']} -> {r['hidden']} (dw {r['kernel'][0]}x{r['kernel'][1]}, "
                  f"stride {r['stride'][0]}) -> {r['out']} channels, residual={r['residual']}")
    pad = meta["pad_1x1"]
    print(f"  padded to 3x3: {', '.join(pad['padded'])}")
    for path, why in pad["not_padded"].items():
        print(f"  not padded: {path}: {why}")
    widen = meta["widen"]
    print(f"  {widen['summary']}")
    for path in ("conv1", "layer1.0.conv1", "layer4.1.conv2", "fc"):
        print(f"    {path:16s} {widen['layers'].get(path)}")
    print(f"  RRAM before: {rram_share(rramfx.trace(reference))}")
    print(f"  RRAM after:  {rram_share(gm)}")
    with torch.no_grad():
        err = ((gm.eval()(x) - reference(x)).abs().max() / reference(x).abs().max()).item()
    print(f"  max relative output change against the original: {err:.1e}\n")


def main() -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    gm = rramfx.trace(model, example_inputs=x)
    print(f"timm resnet18: {rramfx.param_count(model):,} parameters\n")

    pad = functools.partial(pad_1x1_to_3x3, select="shortcut", example_inputs=x)
    widen = functools.partial(widen_channels, factor=1.5, example_inputs=x, preserve_function=True)
    exact = compose(pad, widen)
    show(repr(exact), exact(gm), model, x)

    # The report's experiment on this network: two residual convolutions become linear bottlenecks
    # (indices count k×k convolutions in execution order, the stem first). The network changes, so
    # widening it with preserve_function=False (fresh weights) is what a training run would use.
    bottleneck = functools.partial(replace_with_bottleneck, targets=[5, 9], expand_ratio=6)
    widen_fresh = functools.partial(widen_channels, factor=1.5, example_inputs=x, preserve_function=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = compose(bottleneck, pad, widen_fresh)(gm)
    show("bottleneck -> pad -> widen (fresh weights)", new, model, x)
    print("(the second network is a different one: its output is not meant to match)")


if __name__ == "__main__":
    main()
