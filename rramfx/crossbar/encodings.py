"""Weight encodings: how a weight is held in cells, and what a crossbar with stuck cells reads back.

``codes`` are cell codes (0 healthy, `SA1` stuck at the lowest conductance, `SA0` at the highest):

- ``single`` (``codes`` of the weight's shape): one cell holds the weight; an SA1 cell reads 0, an SA0
  cell the layer's largest magnitude with the weight's sign. This is `FaultModel.corrupt` itself, so
  the single encoding is today's (the VTS 2024 paper's) behaviour bit for bit.
- ``differential`` (``[*shape, 2]``, cells G+ then G-): the weight is G+ - G-, with G+ = max(w, 0) and
  G- = max(-w, 0) in units where the full scale g_max is the layer's (or the output column's) largest
  magnitude. A stuck-low cell removes its side's contribution (its side reads 0), a stuck-high cell
  drives its side to g_max.
- ``bit_sliced`` (``[*shape, cells]``): the weight is quantised to ``weight_bits`` bits, q = round(w / s ·
  L) with L = 2**(weight_bits-1) - 1 and full scale s (per layer, or per output column), and q is
  written in base 2**bits_per_cell over ``slices`` cells, most significant digit first. ``offset``
  sign: the cells hold q + 2**(weight_bits-1); ``differential`` sign: |q| on the positive slices (cells
  0 .. slices-1) when q > 0, on the negative slices (the next ``slices``) when q < 0. A stuck cell pins
  its digit to 0 (SA1) or to the largest digit 2**bits_per_cell - 1 (SA0); the read weight is the
  number the digits spell, times s / L. With no stuck cell it is the quantised weight (quantisation
  alone, to compare against).

"Output column" is the weight's first dimension (an output channel of a convolution or linear layer; for
a transposed convolution, its input channel: a row scale applied to the inputs).

Every function is whole-tensor torch arithmetic (no loop over cells), differentiable where it can be:
the quantisation passes the gradient straight through, stuck values are constants.
"""

from __future__ import annotations

import torch

from rramfx.crossbar.faults import SA0, SA1, FaultModel
from rramfx.crossbar.hardware import Hardware
from rramfx.errors import FaultError

__all__ = ["cells_shape", "full_scale", "quantized", "read_cells"]

_SINGLE = FaultModel()


def cells_shape(weight_shape: tuple[int, ...], hardware: Hardware) -> tuple[int, ...]:
    """The shape of one layer's cell codes under ``hardware``'s encoding."""
    if hardware.encoding == "single":
        return tuple(weight_shape)
    return (*weight_shape, hardware.weight_cells)


def full_scale(weight: torch.Tensor, hardware: Hardware) -> torch.Tensor:
    """The largest magnitude the cells can hold: per layer (a scalar) or per output column (broadcast
    over the weight's other dimensions); 1 where the weight is all zeros."""
    w = weight.detach().abs()
    per_column = hardware.scale == "column" and w.dim() > 1
    s = w.amax(dim=tuple(range(1, w.dim())), keepdim=True) if per_column else w.amax()
    return torch.where(s > 0, s, torch.ones_like(s))


def read_cells(weight: torch.Tensor, codes: torch.Tensor | None, hardware: Hardware) -> torch.Tensor:
    """The weight a crossbar of ``hardware``'s encoding reads when its cells have ``codes`` (None: no
    stuck cell; for ``bit_sliced`` this is the quantised weight)."""
    if codes is not None and tuple(codes.shape) != cells_shape(tuple(weight.shape), hardware):
        raise FaultError(f"cell codes of shape {tuple(codes.shape)} do not fit a weight of shape "
                         f"{tuple(weight.shape)} under the {hardware.encoding} encoding "
                         f"(expected {cells_shape(tuple(weight.shape), hardware)})")
    if hardware.encoding == "single":
        return weight if codes is None else _SINGLE.corrupt(weight, codes)
    if hardware.encoding == "differential":
        return _differential(weight, codes, hardware)
    return _bit_sliced(weight, codes, hardware)


def quantized(weight: torch.Tensor, hardware: Hardware) -> torch.Tensor:
    """The weight as healthy cells hold it: quantised for ``bit_sliced``, itself otherwise."""
    return read_cells(weight, None, hardware)


def _pin(value: torch.Tensor, codes: torch.Tensor, high: torch.Tensor | float) -> torch.Tensor:
    """``value`` with SA1 cells at 0 and SA0 cells at ``high``."""
    value = torch.where(codes == SA0, high, value)
    return torch.where(codes == SA1, torch.zeros_like(value), value)


def _differential(weight: torch.Tensor, codes: torch.Tensor | None, hardware: Hardware) -> torch.Tensor:
    pos, neg = weight.clamp(min=0), (-weight).clamp(min=0)
    if codes is None:
        return pos - neg
    g_max = full_scale(weight, hardware).to(weight.dtype)
    return _pin(pos, codes[..., 0], g_max) - _pin(neg, codes[..., 1], g_max)


def _bit_sliced(weight: torch.Tensor, codes: torch.Tensor | None, hardware: Hardware) -> torch.Tensor:
    levels = 2 ** (hardware.weight_bits - 1) - 1
    step = (full_scale(weight, hardware) / levels).to(weight.dtype)
    q = torch.round(weight.detach() / step).clamp_(-levels, levels)
    quant = weight + (q * step - weight).detach()  # the quantised weight, gradient passed straight through
    if codes is None:
        return quant
    cells = codes.reshape(-1, codes.shape[-1])
    hit = torch.nonzero(cells.amax(1)).squeeze(1)  # weights with a stuck cell (uint8 max: any code != 0)
    if hit.numel() == 0:
        return quant
    error = _digit_error(q.reshape(-1)[hit].to(torch.int32), cells[hit], hardware)
    delta = error.to(weight.dtype) * step.expand_as(weight).reshape(-1)[hit]
    return quant.reshape(-1).index_add(0, hit, delta).reshape(weight.shape)


def _digit_error(q: torch.Tensor, codes: torch.Tensor, hardware: Hardware) -> torch.Tensor:
    """What the stuck digits add to the integers ``q`` (``[n]``; ``codes``: ``[n, cells]``): the sum over
    cells of (pinned digit - digit) · base**significance, one pass per cell position (not per cell)."""
    slices, bits, top = hardware.slices, hardware.bits_per_cell, (1 << hardware.bits_per_cell) - 1
    if hardware.signed == "offset":
        sides = [(q + (1 << (hardware.weight_bits - 1)), 1)]
    else:  # the positive slices hold q when q > 0, the negative slices -q when q < 0
        sides = [(q.clamp(min=0), 1), ((-q).clamp(min=0), -1)]
    error = torch.zeros_like(q)
    for side, (number, sign) in enumerate(sides):
        for k in range(slices):  # cell k holds the digit of significance slices - 1 - k
            shift = bits * (slices - 1 - k)
            code = codes[:, side * slices + k].to(torch.int32)
            digit = (number >> shift) & top
            pinned = torch.where(code == SA0, top, torch.where(code == SA1, 0, digit))
            error += sign * ((pinned - digit) << shift)
    return error
