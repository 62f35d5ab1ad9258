"""Normalisations and reductions with weighted statistics, which a function-preserving widening puts
in place of LayerNorm, one-group GroupNorm, means, sums, norms and softmax over channels when copies
are not spread evenly.

A widening by a non-integer factor copies some channels once and others not at all. A LayerNorm
over such channels sees the copied ones twice, so its mean and variance change. Giving every
element a *statistics weight* of 1 / (number of copies of its source) makes each original channel
count exactly once, however many copies it has: the weighted mean and variance of the widened
channels are the plain mean and variance of the original ones, and the output is unchanged (so are
a weighted sum, p-norm or softmax normaliser). The weights are a buffer (``stat_weight``), normalised
to sum to one where they replace a mean; they do not train. With every channel copied equally (an
integer factor) the weights are uniform, the operation is the plain one, and the pass leaves it.
"""

from __future__ import annotations

import torch
from torch import nn

from rramfx.errors import ArgumentError

__all__ = ["WeightedLayerNorm", "weighted_group_norm", "weighted_layer_norm", "weighted_normalize", "weighted_reduce",
           "weighted_softmax"]


def weighted_layer_norm(x: torch.Tensor, normalized_shape: list[int] | tuple[int, ...],
                        weight: torch.Tensor | None = None, bias: torch.Tensor | None = None, eps: float = 1e-5,
                        stat_weight: torch.Tensor | None = None) -> torch.Tensor:
    """`torch.nn.functional.layer_norm` whose mean and variance weight each element by ``stat_weight``
    (shape ``normalized_shape``, summing to one); without it, the plain layer norm."""
    if stat_weight is None:
        return nn.functional.layer_norm(x, normalized_shape, weight, bias, eps)
    dims = tuple(range(-len(normalized_shape), 0))
    mean = (x * stat_weight).sum(dims, keepdim=True)
    centred = x - mean
    var = (centred * centred * stat_weight).sum(dims, keepdim=True)
    y = centred * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def weighted_group_norm(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
                        bias: torch.Tensor | None = None, eps: float = 1e-5,
                        stat_weight: torch.Tensor | None = None) -> torch.Tensor:
    """`torch.nn.functional.group_norm` with one group whose statistics weight each channel by
    ``stat_weight`` (one per channel, summing to one; spatial positions count equally)."""
    if stat_weight is None or num_groups != 1:
        return nn.functional.group_norm(x, num_groups, weight, bias, eps)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    w = stat_weight.view(shape)
    spatial = tuple(range(2, x.dim()))
    mean = (x * w).sum(1, keepdim=True)
    mean = mean.mean(spatial, keepdim=True) if spatial else mean
    centred = x - mean
    var = (centred * centred * w).sum(1, keepdim=True)
    var = var.mean(spatial, keepdim=True) if spatial else var
    y = centred * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.view(shape)
    return y + bias.view(shape) if bias is not None else y


def weighted_reduce(x: torch.Tensor, op: str, dim: int | tuple[int, ...], keepdim: bool = False,
                    stat_weight: torch.Tensor | None = None, p: float = 2.0) -> torch.Tensor:
    """``x.mean/sum/norm(dim, keepdim)`` whose elements are weighted by ``stat_weight`` (broadcastable
    to ``x``; 1 in the dims it does not weight). For ``mean`` each weighted dim sums to one and the
    other reduced dims are plain means; for ``sum`` and ``norm`` (a p-norm) the weights are
    1 / copies, so every original element counts once."""
    dims = tuple(d % x.dim() for d in ((dim,) if isinstance(dim, int) else dim))
    w = stat_weight if stat_weight is not None else torch.ones((), dtype=x.dtype, device=x.device)
    if op == "norm":
        y = (x.abs() ** p * w).sum(dims, keepdim=True) ** (1.0 / p)
    elif op == "sum":
        y = (x * w).sum(dims, keepdim=True)
    else:
        weighted = tuple(d for d in dims if stat_weight is not None and stat_weight.shape[d] != 1)
        rest = tuple(d for d in dims if d not in weighted)
        y = (x * w).sum(weighted, keepdim=True) if weighted else x
        y = y.mean(rest, keepdim=True) if rest else y
    if keepdim:
        return y
    for d in sorted(dims, reverse=True):
        y = y.squeeze(d)
    return y


def weighted_normalize(x: torch.Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: None = None,
                       stat_weight: torch.Tensor | None = None) -> torch.Tensor:
    """`torch.nn.functional.normalize` (without ``out``) whose p-norm weights each element by
    ``stat_weight``."""
    if out is not None:
        raise ArgumentError("weighted_normalize: out must be None (it does not write into out=)")
    return x / weighted_reduce(x, "norm", dim, True, stat_weight, p).clamp_min(eps)


def weighted_softmax(x: torch.Tensor, dim: int, stat_weight: torch.Tensor | None = None,
                     log: bool = False) -> torch.Tensor:
    """Softmax along ``dim`` whose normaliser weights each term by ``stat_weight`` (1 / copies,
    broadcastable to ``x``): every copy of a channel gets its source's probability."""
    shifted = x - x.amax(dim, keepdim=True).detach()
    w = stat_weight if stat_weight is not None else 1.0
    log_norm = torch.log((shifted.exp() * w).sum(dim, keepdim=True))
    return shifted - log_norm if log else torch.exp(shifted - log_norm)


class WeightedLayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` with statistics weights (buffer ``stat_weight``, see `weighted_layer_norm`):
    what a function-preserving widening makes of a LayerNorm over unevenly copied channels."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__(normalized_shape, eps, elementwise_affine, bias)
        self.register_buffer("stat_weight", torch.full(self.normalized_shape, 1.0 / max(1, self._numel())))

    def _numel(self) -> int:
        n = 1
        for s in self.normalized_shape:
            n *= s
        return n

    @classmethod
    def from_layer_norm(cls, ln: nn.LayerNorm, stat_weight: torch.Tensor) -> WeightedLayerNorm:
        """A copy of ``ln`` (same parameters, same state_dict keys plus ``stat_weight``)."""
        new = cls(ln.normalized_shape, ln.eps, ln.elementwise_affine, ln.bias is not None)
        new.weight, new.bias = ln.weight, ln.bias
        new.stat_weight = stat_weight.to(ln.weight.device if ln.weight is not None else stat_weight.device)
        new.train(ln.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return weighted_layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps, self.stat_weight)
