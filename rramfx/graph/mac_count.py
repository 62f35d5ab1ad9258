"""Counting the multiply-accumulates of a model's weighted layers by running it once.

Static shape arithmetic cannot see what a forward pass really does (a layer called twice, a branch
skipped, inputs whose size decides the output size), so the count comes from forward hooks on one
real pass; the products per element come from `rramfx.crossbar.tiling`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rramfx.crossbar.tiling import geometry, macs
from rramfx.graph.modules import eval_mode

__all__ = ["count_macs"]


def count_macs(model: nn.Module, paths: Iterable[str], args: tuple) -> dict[str, tuple[int, int]]:
    """Calls and MACs (over the whole batch) of the weighted layers at ``paths`` in one forward pass
    ``model(*args)``, in eval mode and without gradients. A layer called twice counts twice, one that
    never runs counts ``(0, 0)``. Hooks and training flags are as before afterwards; an exception of
    the forward pass propagates."""
    counts = {p: [0, 0] for p in paths}

    def hook(path: str, kind: str, fan: int):
        def record(module: nn.Module, inputs: tuple, output: Any) -> None:
            x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            counts[path][0] += 1
            if x is not None and isinstance(output, torch.Tensor):
                counts[path][1] += macs(kind, fan, x.numel(), output.numel())
        return record

    handles = []
    try:
        for path in counts:
            layer = model.get_submodule(path)
            geo = geometry(layer)
            handles.append(layer.register_forward_hook(hook(path, geo.kind, geo.fan)))
        with eval_mode(model), torch.no_grad():
            model(*args)
    finally:
        for h in handles:
            h.remove()
    return {p: (c[0], c[1]) for p, c in counts.items()}
