"""Today's single-cell path, pinned before the crossbar mapping, encodings and fault patterns were
added (issue 12): the same seeds give the same fault codes, read weights and faulty outputs, bit for bit."""

import hashlib

import pytest
import torch

import rramfx
from rramfx import FaultModel, Hardware, Policy
from rramfx.crossbar.cellfaults import CellFaults
from rramfx.crossbar.faults import chip_seed

from .conftest import SmallNet

#: chip i = chip_seed(7, i) of FaultModel(sa1=0.1, sa0=0.03) on SmallNet (every layer on RRAM, p' 0.1):
#: sha256[:24] of the codes and of the eval read weights (layers in path order), the first output row
#: of a fixed input, and the code counts. Computed with the code of commit a1db42c.
REFERENCE = {
    0: ("abf7f1f53702831cd7da8551", "1258d155de14db82ae8957dc",
        [0.21089, -0.1725, 0.01964, 0.01813, 0.02899, -0.23357, 0.03911, 0.13729, -0.19437, -0.06424],
        {"healthy": 3695, "SA1": 417, "SA0": 112}),
    1: ("aab64096ca481e3b099ec772", "c7348f6bad7e10b4a11e3f57",
        [0.17398, -0.2005, 0.0328, -0.00902, 0.09364, -0.18393, -0.02026, 0.14653, -0.19766, -0.05116],
        {"healthy": 3648, "SA1": 431, "SA0": 145}),
    2: ("86e3b4acf9ff1f60aca99e33", "a6b973bba1d2452e80a09a02",
        [0.14983, -0.17587, 0.05883, 0.02292, 0.08644, -0.21131, 0.01021, 0.06915, -0.16617, -0.02625],
        {"healthy": 3663, "SA1": 445, "SA0": 116}),
}


def _model():
    torch.manual_seed(0)
    return rramfx.prepare(SmallNet(), Policy(conv_1x1="rram", linear="rram", fault_rate=0.1)).eval()


@pytest.mark.parametrize("chip", sorted(REFERENCE))
def test_single_cell_chips_are_unchanged(chip):
    gm = _model()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    faults = rramfx.inject_faults(gm, FaultModel(sa1=0.1, sa0=0.03), seed=chip_seed(7, chip))
    codes, weights = hashlib.sha256(), hashlib.sha256()
    with torch.no_grad():
        for path in sorted(faults):
            codes.update(path.encode())
            codes.update(faults[path].numpy().tobytes())
            weights.update(gm.get_submodule(path).effective_weight().numpy().tobytes())
        out = gm(x)
    digest_codes, digest_weights, row, counts = REFERENCE[chip]
    assert codes.hexdigest()[:24] == digest_codes
    assert weights.hexdigest()[:24] == digest_weights
    assert [round(v, 5) for v in out[0].tolist()] == row
    assert faults.counts() == counts


@pytest.mark.parametrize("scale", [1.0, 1 / 0.9])
def test_single_encoding_reads_exactly_what_fault_model_reads(scale):
    # The single encoding on cell codes is today's corruption, bit for bit, on the same codes.
    gm = _model()
    faults = rramfx.inject_faults(gm, FaultModel(sa1=0.1, sa0=0.03), seed=chip_seed(7, 0))
    single = CellFaults(Hardware())
    for path, c in faults.items():
        w = gm.get_submodule(path).weight.detach()
        want = FaultModel(sa1=0.1, sa0=0.03).read_weight(w, c, scale)
        assert torch.equal(single.read_weight(w, c, scale), want)
        assert torch.equal(single.corrupt(w, c), FaultModel().corrupt(w, c))
