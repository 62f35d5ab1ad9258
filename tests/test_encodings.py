"""Weight encodings (issue 12): read weights computed by hand on small tensors, an element-by-element
oracle for every encoding x fault pattern, and the quantisation-alone read."""

import pytest
import torch
from torch import nn

from rramfx import SA0, SA1, CellFaults, Clustered, FaultError, Hardware, Independent, Lines
from rramfx.crossbar.encodings import cells_shape, full_scale, quantized, read_cells
from rramfx.crossbar.faults import draw_fault_set

#: Weights that are multiples of 1/8 with full scale 7/8: with 4-bit weights the step is exactly 1/8,
#: so every read below is exact in float32.
W = torch.tensor([0.875, -0.375, 0.125, -0.875])
HS, HD = SA1, SA0  # stuck low (reads 0), stuck high (reads the largest value)


def test_single_reads_zero_or_the_largest_magnitude_with_the_weights_sign():
    codes = torch.tensor([0, HS, HD, HD], dtype=torch.uint8)
    assert read_cells(W, codes, Hardware()).tolist() == [0.875, 0.0, 0.875, -0.875]


def test_differential_pins_one_side_of_the_pair():
    # G+ / G- of W: (0.875, 0), (0, 0.375), (0.125, 0), (0, 0.875); g_max = 0.875.
    codes = torch.tensor([[0, 0], [0, HS], [HD, 0], [HD, 0]], dtype=torch.uint8)
    assert read_cells(W, codes, Hardware(encoding="differential")).tolist() == [0.875, 0.0, 0.875, 0.0]
    codes = torch.tensor([[HS, 0], [HD, HD], [0, HD], [HS, HS]], dtype=torch.uint8)
    assert read_cells(W, codes, Hardware(encoding="differential")).tolist() == [0.0, 0.0, -0.75, 0.0]


def test_bit_sliced_offset_pins_a_digit():
    # 4-bit weights, 2-bit cells: q = [7, -3, 1, -7]; q + 8 = 15, 5, 9, 1 = (3,3), (1,1), (2,1), (0,1) in base 4.
    hw = Hardware(encoding="bit_sliced", weight_bits=4, bits_per_cell=2, signed="offset")
    assert hw.weight_cells == 2
    codes = torch.tensor([[HS, 0], [0, HD], [HD, 0], [0, 0]], dtype=torch.uint8)
    # (0,3) = 3, (1,3) = 7, (3,1) = 13, (0,1) = 1  ->  q' = -5, -1, 5, -7
    assert read_cells(W, codes, hw).tolist() == [-0.625, -0.125, 0.625, -0.875]


def test_bit_sliced_differential_pins_a_digit_of_one_side():
    # magnitudes over 2 cells per side [P msd, P lsd, N msd, N lsd]: 7 = (1,3), 3 = (0,3), 1 = (0,1).
    hw = Hardware(encoding="bit_sliced", weight_bits=4, bits_per_cell=2, signed="differential")
    assert hw.weight_cells == 4
    codes = torch.tensor([[0, HS, 0, 0], [0, 0, HD, 0], [0, 0, 0, HD], [HS, HS, HS, HS]], dtype=torch.uint8)
    # P 7 -> (1,0) = 4; N 3 -> (3,3) = 15; N 0 -> (0,3) = 3 against P 1; all cells low: 0.
    assert read_cells(W, codes, hw).tolist() == [0.5, -1.875, -0.25, 0.0]


def test_bit_sliced_quantises_per_layer_or_per_column():
    w = torch.tensor([[0.875, -0.3], [0.25, -0.05]])
    layer = Hardware(encoding="bit_sliced", weight_bits=4)
    column = Hardware(encoding="bit_sliced", weight_bits=4, scale="column")
    assert quantized(w, layer).tolist() == [[0.875, -0.25], [0.25, -0.0]]  # step 1/8: -0.3 -> -2, -0.05 -> 0
    step = torch.tensor(0.25) / 7  # row 1's full scale 0.25: -0.05 / step = -1.4 -> -1
    assert torch.equal(quantized(w, column)[1], torch.stack([7 * step, -1 * step]))
    assert full_scale(w, column).tolist() == [[0.875], [0.25]] and full_scale(w, layer).item() == 0.875
    assert torch.equal(quantized(w, Hardware()), w) and torch.equal(quantized(w, Hardware(encoding="differential")), w)


def test_bad_code_shape_names_the_encoding():
    with pytest.raises(FaultError, match=r"do not fit a weight of shape \(4,\) under the differential encoding"):
        read_cells(W, torch.zeros(4, dtype=torch.uint8), Hardware(encoding="differential"))


# ---- every encoding x pattern against an element-by-element oracle ---------------------------------


def _oracle(w: torch.Tensor, codes: torch.Tensor, hw: Hardware) -> torch.Tensor:
    """The read weights computed one weight and one cell at a time, in Python integers."""
    flat, out = w.reshape(-1).tolist(), []
    cells = codes.reshape(len(flat), -1).tolist()
    top_w = max(abs(v) for v in flat)
    step = top_w / (2 ** (hw.weight_bits - 1) - 1)
    for v, cs in zip(flat, cells, strict=True):
        if hw.encoding == "single":
            out.append({0: v, SA1: 0.0, SA0: top_w if v >= 0 else -top_w}[cs[0]])
        elif hw.encoding == "differential":
            sides = [max(v, 0.0), max(-v, 0.0)]
            sides = [{0: s, SA1: 0.0, SA0: top_w}[c] for s, c in zip(sides, cs, strict=True)]
            out.append(sides[0] - sides[1])
        else:
            out.append(_sliced(round(v / step), cs, hw) * step)
    return torch.tensor(out).reshape(w.shape)


def _sliced(q: int, cells: list[int], hw: Hardware) -> int:
    base, n = 2 ** hw.bits_per_cell, hw.slices
    numbers = [q + 2 ** (hw.weight_bits - 1)] if hw.signed == "offset" else [max(q, 0), max(-q, 0)]
    values = []
    for side, number in enumerate(numbers):
        digits = [(number // base ** (n - 1 - k)) % base for k in range(n)]
        digits = [{0: d, SA1: 0, SA0: base - 1}[cells[side * n + k]] for k, d in enumerate(digits)]
        values.append(sum(d * base ** (n - 1 - k) for k, d in enumerate(digits)))
    return values[0] - 2 ** (hw.weight_bits - 1) if hw.signed == "offset" else values[0] - values[1]


ENCODINGS = {
    "single": Hardware(tile=(16, 16)),
    "differential": Hardware(tile=(16, 16), encoding="differential"),
    "bit_sliced_offset": Hardware(tile=(16, 16), encoding="bit_sliced", weight_bits=6, bits_per_cell=2),
    "bit_sliced_differential": Hardware(tile=(16, 16), encoding="bit_sliced", weight_bits=5, bits_per_cell=1,
                                        signed="differential"),
}
PATTERNS = {
    "independent": Independent(sa1=0.15, sa0=0.05),
    "lines": Lines(wordline=0.1, bitline=0.1, sa0_share=0.3),
    "clustered": Clustered(rate=0.15, mean_size=4, sa0_share=0.3),
    "varying": Independent(sa1=0.1, sa0=0.05, spread=0.8),
}


def _layers():
    torch.manual_seed(0)
    layers = {"conv": nn.Conv2d(4, 6, 3), "dw": nn.Conv2d(6, 6, 3, groups=6), "fc": nn.Linear(20, 7)}
    with torch.no_grad():  # multiples of 1/32 with full scale 31/32: 6-bit and 5-bit steps are exact
        for m in layers.values():
            m.weight.copy_(torch.randint(-31, 32, m.weight.shape) / 32)
            m.weight[(0,) * m.weight.dim()] = 31 / 32
    return layers


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_encoding_and_pattern_reads_what_the_oracle_reads(encoding, pattern):
    hw, layers = ENCODINGS[encoding], _layers()
    faults = draw_fault_set(layers, CellFaults(hw, PATTERNS[pattern]), seed=4)
    assert sum(int((c != 0).sum()) for c in faults.values()) > 10  # the chip has stuck cells
    for path, layer in layers.items():
        codes = faults[path]
        assert tuple(codes.shape) == cells_shape(tuple(layer.weight.shape), hw)
        read = faults.fault_model.read_weight(layer.weight, codes, 1.0)
        expected = _oracle(layer.weight.detach(), codes, hw)
        if hw.encoding == "bit_sliced" and hw.weight_bits == 6:
            assert torch.equal(read, expected)
        else:
            assert torch.allclose(read, expected, rtol=0, atol=1e-6)
        assert torch.equal(read, faults.fault_model.corrupt(layer.weight, codes).detach())


def test_corrupt_keeps_a_gradient_through_quantisation():
    w = W.clone().requires_grad_()
    hw = Hardware(encoding="bit_sliced", weight_bits=4)
    read_cells(w, torch.tensor([[HS, 0], [0, 0], [0, 0], [0, 0]], dtype=torch.uint8), hw).sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 1.0, 1.0]  # straight through; the stuck digit is a constant
