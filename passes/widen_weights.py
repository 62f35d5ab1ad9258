"""Weight arithmetic of the widening pass: copying channels, Net2WiderNet splitting, and the weights
of widened weight-standardised convolutions."""

from __future__ import annotations

import math

import torch
from torch import nn

from rramfx.graph.modules import effective_weight

__all__ = ["set_param", "split_copies", "std_split", "take"]


def take(t: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``t`` with its ``dim`` gathered at ``index`` (new channel j copies old channel index[j])."""
    return t.index_select(dim, index.to(t.device))


def split_copies(t: torch.Tensor, dim: int, index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Net2WiderNet on the input side: copies of one channel share its weight equally."""
    shape = [1] * t.dim()
    shape[dim] = -1
    return take(t, dim, index) / counts.to(t.device, t.dtype).view(shape)


def set_param(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace a parameter or buffer by ``value`` (a new tensor of any shape), keeping its kind."""
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad))
    else:
        setattr(module, name, value.detach().clone())


def _alternating_signs(in_idx: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """+1, -1, +1, ... over the copies of each old channel (0 for the last of an odd number)."""
    rank = torch.zeros_like(in_idx)
    seen: dict[int, int] = {}
    for j, i in enumerate(in_idx.tolist()):
        rank[j] = seen.get(i, 0)
        seen[i] = rank[j].item() + 1
    sign = torch.where(rank % 2 == 0, 1.0, -1.0)
    return torch.where((counts % 2 == 1) & (rank == counts - 1), 0.0, sign)


def std_split(module: nn.Module, out_idx: torch.Tensor, in_idx: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The raw weight of a widened StdConv2d that computes exactly what the original does.

    A standardised row always has the same variance, so plain splitting (which lowers it) cannot be
    represented. Each copy of a split weight gets an extra ±c (the copies' extras cancel, since the
    copied inputs are equal) with c chosen per row to restore the row's variance; the raw weight is
    then that row times the original row's sqrt(var + eps), which standardises back to it exactly.
    """
    w = module.weight.detach()
    w_hat = effective_weight(module).detach()
    sigma2 = w.reshape(w.shape[0], -1).var(dim=1, unbiased=False)[out_idx.to(w.device)]
    target = split_copies(take(w_hat, 0, out_idx), 1, in_idx, counts)
    sign = _alternating_signs(in_idx, counts).to(w.dtype).to(w.device).view(1, -1, *([1] * (w.dim() - 2)))
    rows = target.reshape(target.shape[0], -1)
    v0 = sigma2 / (sigma2 + module.eps)
    deficit = rows.shape[1] * v0 - (rows ** 2).sum(dim=1)
    n_delta = (sign != 0).sum() * math.prod(w.shape[2:])
    c = torch.sqrt(torch.clamp(deficit, min=0.0) / max(int(n_delta), 1))
    target = target + c.view(-1, *([1] * (w.dim() - 1))) * sign
    return target * torch.sqrt(sigma2 + module.eps).view(-1, *([1] * (w.dim() - 1)))
