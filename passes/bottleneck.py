"""Bottleneck pass: replace selected k×k convolutions with MobileNetV2 linear bottlenecks.

The follow-up report asked whether the inverted-residual block of MobileNetV2 is what made that
network tolerate DropConnect and faults so well, by swapping ResNet20 convolutions for such blocks
(its runs replaced the 4th, 6th, 10th, 12th, 16th and 18th convolutions). The block is
1x1 expand (C_in → t·C_in) + BN + ReLU6, k×k depthwise with the original stride + BN + ReLU6, 1x1
project (→ C_out) + BN with no activation (the *linear* bottleneck), plus the input added back when
the stride is 1 and C_in = C_out. Under the kernel-size rule the depthwise layer goes to RRAM and
the two pointwise layers stay on the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import fx, nn

from rramfx.crossbar.layers import CrossbarLayer
from rramfx.errors import ArgumentError, PassError
from rramfx.graph.modules import kernel_taps, module_device, set_submodule
from rramfx.graph.record import copy_graph_module, rramfx_meta
from rramfx.graph.topology import conv_nodes

__all__ = ["LinearBottleneck", "replace_with_bottleneck", "replace_with_bottleneck_"]

_PARTS = ("expand", "expand_bn", "expand_act", "dw", "dw_bn", "dw_act", "project", "project_bn")


class LinearBottleneck(nn.Module):
    """MobileNetV2's inverted residual with a linear projection, standing in for one convolution.

    In a GraphModule made by `replace_with_bottleneck` the block's layers are graph nodes of their
    own (so placement, DropConnect and export see them); this forward is the same computation for
    eager use.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int] | str, dilation: tuple[int, int], expand_ratio: float) -> None:
        super().__init__()
        hidden = max(1, round(in_channels * expand_ratio))
        self.expand = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.expand_act = nn.ReLU6(inplace=False)
        self.dw = nn.Conv2d(hidden, hidden, kernel_size, stride=stride, padding=padding, dilation=dilation,
                            groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.dw_act = nn.ReLU6(inplace=False)
        self.project = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.residual = tuple(stride) == (1, 1) and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for name in _PARTS:
            y = getattr(self, name)(y)
        return x + y if self.residual else y

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


def _resolve(gm: fx.GraphModule, targets: Iterable[int | str]) -> list[fx.Node]:
    """Graph nodes for module paths and 1-based indices over the k×k convolutions in execution order."""
    kxk = [n for n in conv_nodes(gm) if kernel_taps(gm.get_submodule(n.target)) > 1]
    by_path = {n.target: n for n in conv_nodes(gm)}
    out: list[fx.Node] = []
    for t in targets:
        if isinstance(t, bool) or not isinstance(t, (int, str)):
            raise ArgumentError(f"replace_with_bottleneck: a target is a module path or a 1-based index, got {t!r}")
        if isinstance(t, int):
            if not 1 <= t <= len(kxk):
                raise PassError(
                    f"replace_with_bottleneck: index {t} is out of range; this graph runs {len(kxk)} k×k "
                    "convolutions (indices count them from 1 in execution order, 1x1 ones excluded)"
                )
            node = kxk[t - 1]
        else:
            if t not in by_path:
                raise PassError(
                    f"replace_with_bottleneck: '{t}' is not a convolution called in this graph "
                    f"(first k×k convolutions: {', '.join(n.target for n in kxk[:6])})"
                )
            node = by_path[t]
        if node in out:
            raise PassError(f"replace_with_bottleneck: '{node.target}' is targeted twice")
        out.append(node)
    return out


def _check(gm: fx.GraphModule, node: fx.Node) -> nn.Conv2d:
    m = gm.get_submodule(node.target)
    path = node.target
    if isinstance(m, CrossbarLayer):
        raise PassError(f"replace_with_bottleneck: '{path}' is already a crossbar layer; replace before to_crossbar")
    if type(m) is not nn.Conv2d:
        raise PassError(f"replace_with_bottleneck: '{path}' is a {type(m).__name__}; only plain nn.Conv2d is replaced")
    if kernel_taps(m) == 1:
        raise PassError(f"replace_with_bottleneck: '{path}' is a 1x1 convolution; a bottleneck replaces k×k ones")
    if m.groups != 1:
        raise PassError(
            f"replace_with_bottleneck: '{path}' is grouped or depthwise (groups={m.groups}); it is already "
            "a cheap convolution, a bottleneck replaces a dense k×k one"
        )
    if m.padding_mode != "zeros":
        raise PassError(f"replace_with_bottleneck: '{path}' uses padding_mode={m.padding_mode!r}; only zeros")
    users = sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == path)
    if users != 1:
        raise PassError(f"replace_with_bottleneck: '{path}' is called {users} times; a shared layer cannot be replaced")
    if len(node.args) != 1 or node.kwargs:
        raise PassError(f"replace_with_bottleneck: '{path}' is called with more than one input")
    return m


def replace_with_bottleneck_(
    gm: fx.GraphModule, targets: Sequence[int | str], expand_ratio: float = 6
) -> fx.GraphModule:
    """In-place form of `replace_with_bottleneck`, for pipelines that already own their copy."""
    _check_ratio(expand_ratio)
    nodes = _resolve(gm, targets)
    record = []
    for node in nodes:
        m = _check(gm, node)
        path = node.target
        block = LinearBottleneck(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                                 expand_ratio).to(module_device(m), m.weight.dtype)
        block.train(m.training)
        set_submodule(gm, path, block)
        with gm.graph.inserting_before(node):
            y = node.args[0]
            for name in _PARTS:
                y = gm.graph.call_module(f"{path}.{name}", (y,))
            if block.residual:
                y = gm.graph.call_function(torch.add, (node.args[0], y))
        node.replace_all_uses_with(y)
        gm.graph.erase_node(node)
        record.append({"path": path, "in": m.in_channels, "out": m.out_channels, "hidden": block.expand.out_channels,
                       "kernel": list(m.kernel_size), "stride": list(m.stride), "residual": block.residual})
    gm.graph.lint()
    gm.recompile()
    rramfx_meta(gm)["bottleneck"] = {"expand_ratio": expand_ratio, "replaced": record}
    return gm


def _check_ratio(expand_ratio: float) -> None:
    if isinstance(expand_ratio, bool) or not isinstance(expand_ratio, (int, float)) or not expand_ratio > 0:
        raise ArgumentError(f"replace_with_bottleneck: expand_ratio must be a number > 0, got {expand_ratio!r}")


def replace_with_bottleneck(
    gm: fx.GraphModule, targets: Sequence[int | str], expand_ratio: float = 6
) -> fx.GraphModule:
    """Return a copy of ``gm`` with the ``targets`` convolutions replaced by linear bottlenecks.

    ``targets`` are module paths or 1-based indices counting the k×k convolutions (1x1 ones are not
    counted) in the order the graph runs them, a network's stem included: in a CIFAR ResNet20 the
    stem is 1 and the block convolutions 2 to 19, so the report's "4th, 6th, ..." of the 18 block
    convolutions are indices 5, 7, ... here, or simply their module paths. Each target must be a
    dense (groups=1) ``nn.Conv2d``; anything else raises PassError naming it.

    Each replacement is a `LinearBottleneck` at the convolution's module path (1x1 expand to
    ``expand_ratio``·C_in + BN + ReLU6, k×k depthwise with the original stride, padding and dilation
    + BN + ReLU6, 1x1 project to C_out + BN), inlined as graph nodes; the input is added back when
    the stride is 1 and C_in = C_out. The output shape is unchanged; the new layers are freshly
    initialised (the replaced network is trained from scratch). The old convolution's weights are
    gone, so its state_dict keys change to ``<path>.expand.weight`` and so on. ``gm`` is not changed.
    """
    _check_ratio(expand_ratio)
    out = copy_graph_module(gm)
    return replace_with_bottleneck_(out, targets, expand_ratio)
