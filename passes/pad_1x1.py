"""Padding pass: turn selected 1x1 convolutions into 3x3 ones that compute exactly the same thing.

A 1x1 convolution stays on the host under the kernel-size rule, because a stuck cell in a 1x1 kernel
removes a whole input channel from an output and DropConnect cannot train around that. The paper's
alternative for shortcut layers: give the kernel a ring of zero taps (3x3 with one more pixel of zero
padding, the old weight at the centre). The layer computes the same function, now has nine taps per
input channel, goes to RRAM under the same rule, and trains with DropConnect like any 3x3 layer; the
outer taps are ordinary weights that training may make non-zero.
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn

from rramfx.crossbar.layers import CrossbarLayer
from rramfx.errors import ArgumentError, PassError
from rramfx.graph.modules import effective_weight, is_conv, set_scaled_std_weight, set_submodule, standardisation
from rramfx.graph.record import copy_graph_module, rramfx_meta
from rramfx.graph.shapes import shape_prop, tensor_meta
from rramfx.graph.topology import shortcut_convs

__all__ = ["KEYWORDS", "pad_1x1_to_3x3", "pad_1x1_to_3x3_"]

KEYWORDS = ("all", "shortcut")
_PLAIN = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _selection(select: str | Iterable[str]) -> tuple[str, ...]:
    items = (select,) if isinstance(select, str) else tuple(select)
    if not items or not all(isinstance(s, str) and s for s in items):
        raise ArgumentError(
            f"pad_1x1_to_3x3: select must be 'all', 'shortcut', a module-path glob or a list of them, got {select!r}"
        )
    return items


def _why_not(gm: fx.GraphModule, node: fx.Node, m: nn.Module) -> str | None:
    """Why this 1x1 convolution cannot be padded exactly (None when it can)."""
    if isinstance(m, CrossbarLayer):
        return "already a crossbar layer: pad before to_crossbar (rramfx.prepare does)"
    if m.groups > 1 and m.groups == m.in_channels:
        return ("depthwise 1x1 (a per-channel scale): padding would give each channel eight taps that "
                "only multiply zeros or neighbours, not a shortcut worth moving to RRAM")
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r}: a wider {m.padding_mode} border changes the centre tap's input"
    kind = standardisation(m)
    if kind == "std":
        return ("weight-standardised (StdConv2d): zero taps change each row's mean and variance, so no 3x3 "
                "kernel is exact")
    if kind is None and type(m) not in _PLAIN:
        return f"{type(m).__name__} has its own forward; only plain Conv1d/2d/3d and ScaledStdConv2d are padded"
    if getattr(m, "same_pad", False):
        return "dynamic 'same' padding depends on the kernel size"
    meta = tensor_meta(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
    if meta is not None and len(meta.shape) >= 3 and all(int(s) == 1 for s in meta.shape[2:]):
        return ("its input is 1x1 spatially on the example input (global pooling, or an input too small): "
                "the outer taps would only read padding, so the 3x3 kernel adds crossbar cells that hold nothing")
    return None


@torch.no_grad()
def _padded(m: nn.Module) -> nn.Module:
    """A 3x3 (3, 3x3x3) copy of a 1x1 convolution with the old weight at the centre."""
    nd = len(m.kernel_size)
    pad = m.padding if isinstance(m.padding, tuple) else (0,) * nd  # 'same'/'valid' are 0 for 1x1
    new = copy.deepcopy(m)
    new.kernel_size = (3,) * nd
    new.padding = tuple(int(p) + 1 for p in pad)
    new.dilation = (1,) * nd
    new._reversed_padding_repeated_twice = [p for p in reversed(new.padding) for _ in range(2)]
    centre = (slice(None), slice(None), *([1] * nd))
    if standardisation(m) == "scaled":
        target = torch.zeros(*m.weight.shape[:2], *new.kernel_size, dtype=m.weight.dtype, device=m.weight.device)
        target[centre] = effective_weight(m).detach().reshape(m.weight.shape[:2])
        set_scaled_std_weight(new, target)
    else:
        w = torch.zeros(*m.weight.shape[:2], *new.kernel_size, dtype=m.weight.dtype, device=m.weight.device)
        w[centre] = m.weight.detach().reshape(m.weight.shape[:2])
        new.weight = nn.Parameter(w, requires_grad=m.weight.requires_grad)
    return new


def _one_by_one(gm: fx.GraphModule) -> dict[str, fx.Node]:
    """Module path → first call node of every 1x1 convolution that is a node of the graph."""
    nodes: dict[str, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target not in nodes:
            m = gm.get_submodule(node.target)
            if is_conv(m) and all(int(k) == 1 for k in m.kernel_size):
                nodes[node.target] = node
    return nodes


def _select(items: tuple[str, ...], nodes: dict[str, fx.Node], shortcuts: dict) -> dict[str, str]:
    """Selected path → the selection item that chose it; a glob that matches nothing raises."""
    selected: dict[str, str] = {}
    for item in items:
        if item == "all":
            hits = list(nodes)
        elif item == "shortcut":
            hits = [p for p in nodes if p in shortcuts]
        else:
            hits = [p for p in nodes if fnmatch.fnmatchcase(p, item)]
            if not hits:
                raise PassError(
                    f"pad_1x1_to_3x3: pattern {item!r} matches no 1x1 convolution of this graph "
                    f"(1x1 convolutions: {', '.join(list(nodes)[:8]) or 'none'}{' ...' if len(nodes) > 8 else ''})"
                )
        for p in hits:
            selected.setdefault(p, item)
    return selected


def _hidden(gm: fx.GraphModule, items: tuple[str, ...]) -> dict[str, str]:
    """Selected 1x1 convolutions inside leaf modules the tracer could not trace into, with the reason."""
    skipped = {}
    for leaf, inner in rramfx_meta(gm).get("hidden_weighted", {}).items():
        for path in inner:
            m = gm.get_submodule(path)
            if is_conv(m) and all(int(k) == 1 for k in m.kernel_size) and (
                    "all" in items or any(fnmatch.fnmatchcase(path, i) for i in items if i not in KEYWORDS)):
                skipped[path] = f"inside leaf module '{leaf}', not a node of the graph"
    return skipped


def _warn_skipped(skipped: dict[str, str]) -> None:
    if skipped:
        listing = "; ".join(f"{p}: {r}" for p, r in list(skipped.items())[:4])
        more = f" (and {len(skipped) - 4} more)" if len(skipped) > 4 else ""
        warnings.warn(
            f"pad_1x1_to_3x3 left {len(skipped)} selected 1x1 convolution(s) as they were: {listing}{more}. "
            "See rramfx_meta(gm)['pad_1x1']['not_padded'].",
            stacklevel=4,
        )


def pad_1x1_to_3x3_(
    gm: fx.GraphModule, select: str | Iterable[str] = "all", example_inputs: Any = None
) -> fx.GraphModule:
    """In-place form of `pad_1x1_to_3x3`, for pipelines that already own their copy."""
    items = _selection(select)
    if example_inputs is not None:
        shape_prop(gm, example_inputs, "pad_1x1_to_3x3")
    nodes = _one_by_one(gm)
    shortcuts = shortcut_convs(gm) if "shortcut" in items else {}
    padded, skipped = [], {}
    for path in _select(items, nodes, shortcuts):
        m = gm.get_submodule(path)
        reason = _why_not(gm, nodes[path], m)
        if reason is not None:
            skipped[path] = reason
            continue
        set_submodule(gm, path, _padded(m))
        padded.append(path)
    skipped.update(_hidden(gm, items))
    gm.recompile()
    rramfx_meta(gm)["pad_1x1"] = {
        "select": list(items),
        "padded": padded,
        "not_padded": skipped,
        "shortcuts": shortcuts if "shortcut" in items else None,
    }
    _warn_skipped(skipped)
    return gm


def pad_1x1_to_3x3(
    gm: fx.GraphModule, select: str | Iterable[str] = "all", example_inputs: Any = None
) -> fx.GraphModule:
    """Return a copy of ``gm`` whose selected 1x1 convolutions are 3x3 convolutions computing the same.

    The new kernel is the old one at the centre of a ring of zeros, with one more pixel of zero
    padding on every side; stride, groups, bias and the module path stay, so the kernel-size rule then
    places the layer on RRAM where it trains with DropConnect (the paper's padded shortcut layers).

    ``select`` is ``"all"`` (every 1x1 convolution), ``"shortcut"`` (1x1 convolutions on the shorter
    branch of a residual addition, found from the graph: downsample/projection layers), a module-path
    glob (``fnmatch``), or a list mixing them. A glob that matches no 1x1 convolution raises PassError.
    Convolutions that cannot be padded exactly (depthwise 1x1, weight-standardised StdConv2d, a
    non-zero padding mode, a class with its own forward, and, when ``example_inputs`` is given so
    shapes are known, a 1x1 spatial input) are left as they are, reported in a warning and in
    ``rramfx_meta(gm)["pad_1x1"]["not_padded"]`` with the reason. ``gm`` is not changed.
    """
    items = _selection(select)
    out = copy_graph_module(gm)
    return pad_1x1_to_3x3_(out, items, example_inputs)
