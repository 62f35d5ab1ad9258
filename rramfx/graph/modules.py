"""Questions about a network's modules: which layers could hold crossbar weights, their kernel size and
device, and the weight a weight-standardised convolution really computes with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "HOST_ONLY_TYPES",
    "WEIGHTED_TYPES",
    "effective_weight",
    "eval_mode",
    "host_only_layers",
    "is_conv",
    "is_weighted",
    "kernel_label",
    "kernel_taps",
    "module_device",
    "set_scaled_std_weight",
    "set_submodule",
    "standardisation",
    "weighted_layers",
]

#: The layer types whose weights can be programmed into a crossbar (subclasses included:
#: timm's ``Conv2dSame``/``StdConv2d``, torchvision's wrappers, a user's own).
WEIGHTED_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def is_weighted(module: nn.Module) -> bool:
    """True for convolutions and linear layers, the layers that a crossbar could hold."""
    return isinstance(module, WEIGHTED_TYPES)


#: Layers with weights that rramfx does not simulate: they run on the host, unfaulted. Recurrent
#: layers hold their weights as plain parameters; MultiheadAttention reads its ``out_proj.weight``
#: directly instead of calling the Linear, so a crossbar layer there would never be used.
HOST_ONLY_TYPES: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.MultiheadAttention)


def host_only_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Module path → layer for every outermost layer of `HOST_ONLY_TYPES`, in registration order."""
    found: dict[str, nn.Module] = {}
    for name, m in module.named_modules():
        if isinstance(m, HOST_ONLY_TYPES) and not any(name.startswith(p + ".") for p in found):
            found[name] = m
    return found


def weighted_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Module path → layer for every weighted layer, in registration order (shared layers once);
    layers inside a `HOST_ONLY_TYPES` layer are left out (they are not simulated)."""
    host = tuple(p + "." if p else "" for p in host_only_layers(module))  # "": the model is one
    return {name: m for name, m in module.named_modules()
            if name and is_weighted(m) and not name.startswith(host)}


def kernel_taps(module: nn.Module) -> int:
    """Number of spatial taps of a layer's kernel: 9 for 3x3, 1 for 1x1 convolutions and linears."""
    if isinstance(module, nn.modules.conv._ConvNd):
        taps = 1
        for k in module.kernel_size:
            taps *= int(k)
        return taps
    return 1


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the ``with`` block, then give every submodule back its own
    training flag (not one flag for all: a model may hold frozen eval-mode parts while it trains).

    For passes and measurements that run a model once (shape propagation, MAC counting) and must
    leave it as they found it, even when the forward pass raises."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` inside ``root`` (the parent must exist)."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def is_conv(module: nn.Module) -> bool:
    """True for forward (not transposed) convolutions of any dimension and their subclasses."""
    return isinstance(module, nn.modules.conv._ConvNd) and not module.transposed


def standardisation(module: nn.Module) -> str | None:
    """``"std"`` for timm's StdConv2d, ``"scaled"`` for ScaledStdConv2d (weight standardised over each
    output row, times a learned gain), None for an ordinary layer. A pass that rewrites weights must
    treat the two kinds specially: zeros or split columns change a row's mean and variance."""
    names = {c.__name__ for c in type(module).__mro__ if c.__module__.startswith("timm.")}
    if names & {"ScaledStdConv2d", "ScaledStdConv2dSame"}:
        return "scaled"
    if names & {"StdConv2d", "StdConv2dSame"}:
        return "std"
    return None


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight a (possibly weight-standardised) convolution really computes with."""
    kind = standardisation(module)
    w = module.weight
    if kind is None:
        return w
    scale = (module.gain * module.scale).view(-1) if kind == "scaled" else None
    return torch.nn.functional.batch_norm(
        w.reshape(1, w.shape[0], -1), None, None, weight=scale, training=True, momentum=0.0, eps=module.eps
    ).reshape_as(w)


def set_scaled_std_weight(module: nn.Module, target: torch.Tensor) -> None:
    """Make a ScaledStdConv2d compute with exactly ``target`` (whose rows must have zero mean):
    the raw weight becomes ``target`` and the per-row gain absorbs the standardisation, which is
    exact because standardising a zero-mean row only divides it by its standard deviation."""
    rows = target.reshape(target.shape[0], -1)
    fan_in = rows.shape[1]
    module.scale = module.scale * (module.weight[0].numel() / fan_in) ** 0.5  # gamma / sqrt(fan_in)
    var = rows.var(dim=1, unbiased=False)
    gain = torch.sqrt(var + module.eps) / module.scale
    module.weight = nn.Parameter(target.detach().clone(), requires_grad=module.weight.requires_grad)
    module.gain = nn.Parameter(gain.view(-1, 1, 1, 1).to(module.gain.dtype), requires_grad=module.gain.requires_grad)


def kernel_label(layer: nn.Module) -> str:
    """A layer's kernel as people write it: ``"3x3"``, ``"1x1 dw"`` (depthwise), ``"3x3 g4"`` (grouped),
    ``"linear"``."""
    if isinstance(layer, nn.Linear):
        return "linear"
    text = "x".join(str(k) for k in layer.kernel_size)
    if layer.groups > 1:
        text += " dw" if layer.groups == layer.in_channels == layer.out_channels else f" g{layer.groups}"
    return text
