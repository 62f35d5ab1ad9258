"""A chip's read weights under every encoding x fault pattern, baked into ONNX and fed: the graph computes
what PyTorch computes on that chip (max abs output difference <= 1e-5), and ``rramfx export --chip``."""

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import rramfx
from rramfx import Chip, Hardware, Policy
from rramfx.cli import main
from rramfx.crossbar.patterns import Clustered, Independent, Lines
from rramfx.onnx.chip_sessions import read_weight_graph
from rramfx.onnx.export import export_onnx
from rramfx.onnx.meta import model_meta

from .test_onnx_export import shared_dir

TILE = (32, 32)
ENCODINGS = {
    "single": Hardware(tile=TILE),
    "differential": Hardware(tile=TILE, encoding="differential", scale="column"),
    "bit_sliced_layer": Hardware(tile=TILE, encoding="bit_sliced", scale="layer"),
    "bit_sliced_column": Hardware(tile=TILE, encoding="bit_sliced", scale="column", signed="differential"),
}
PATTERNS = {
    "independent": Independent(sa1=0.08, sa0=0.02),
    "lines": Lines(wordline=0.06, bitline=0.04, sa0_share=0.25),
    "clustered": Clustered(rate=0.1, mean_size=6, sa0_share=0.2),
}


class ConvNet(nn.Module):
    """Conv -> BatchNorm -> ReLU twice, a 1x1 on RRAM and a linear head: small, with BN to fuse."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 8, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, num_classes))

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        return self.head(torch.relu(self.c3(torch.relu(self.b2(self.c2(x))))))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(3)
    net = ConvNet().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics: onnxruntime fuses them into the convs
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    gm = rramfx.prepare(net, Policy(fault_rate=0.1, conv_1x1="rram")).eval()
    d = shared_dir(tmp_path_factory, "encodings",
                   lambda d: export_onnx(gm, torch.randn(2, 3, 8, 8), d / "clean.onnx"))
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    return gm, read_weight_graph(d / "clean.onnx"), x


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_read_weights_baked_match_pytorch(setup, encoding, pattern):
    gm, graph, x = setup
    hardware = ENCODINGS[encoding]
    layers = rramfx.crossbar_layers(gm)
    arrays = rramfx.crossbar_map(gm, hardware).arrays
    chip = Chip.draw(PATTERNS[pattern], arrays, hardware, seed=11)
    g = copy.deepcopy(gm)
    faults = rramfx.apply_chip(g, chip)
    assert sum(int((c != 0).sum()) for c in faults.values()) > 0
    with torch.no_grad():
        want = g(x).numpy()
        weights = {p: faults.fault_model.read_weight(layers[p].weight, faults[p], 1 / (1 - 0.1)) for p in faults}
    model = graph.bake(weights)
    assert model_meta(model)["fault_mode"] == "read_weights"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {graph.data_inputs[0]: x.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-5
    rramfx.clear_faults(g)
    with torch.no_grad():
        clean = g(x).numpy()
    assert np.abs(got - clean).max() > 1e-3  # the chip's faults did change the output


def test_export_chip_from_the_command_line(tmp_path, capsys):
    hardware = ENCODINGS["bit_sliced_column"]
    torch.manual_seed(0)
    net = ConvNet()
    state = tmp_path / "w.pt"
    torch.save(net.state_dict(), state)
    gm = rramfx.prepare(net, Policy(fault_rate=0.1)).eval()
    arrays = rramfx.crossbar_map(gm, hardware).arrays
    chip_file = Chip.draw(Lines(wordline=0.1, bitline=0.05), arrays, hardware, seed=2).save(tmp_path / "chip.json")
    out = tmp_path / "chip.onnx"
    argv = ["export", "--model", "tests.test_onnx_encodings:ConvNet", "--fault-rate", "0.1", "--out", str(out),
            "--input-size", "3,8,8", "--chip", str(chip_file), "--weights", str(state)]
    torch.manual_seed(1)  # the weights come from the file, not the seed
    assert main(argv) == 0
    assert f"fault mode read weights of chip {chip_file}" in capsys.readouterr().out
    meta = model_meta(onnx.load(out))
    assert meta["fault_mode"] == "read_weights" and meta["tile"] == "32x32"
    g = copy.deepcopy(gm)
    rramfx.apply_chip(g, Chip.load(chip_file))
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = g(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-5


def test_export_chip_too_small_says_how_many_arrays(tmp_path, capsys):
    chip_file = Chip.healthy(1, Hardware(tile=TILE)).save(tmp_path / "one.json")
    out = tmp_path / "x.onnx"
    assert main(["export", "--model", "tests.test_onnx_encodings:ConvNet", "--out", str(out),
                 "--input-size", "3,8,8", "--chip", str(chip_file)]) == 2
    err = capsys.readouterr().err
    assert "the model needs 6 arrays of 32x32" in err and "this chip has 1" in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["export", "--model", "tests.test_onnx_encodings:ConvNet", "--out", str(out), "--faults", "3",
                 "--chip", str(chip_file)]) == 2
    assert "--chip bakes that chip's read weights in: drop --faults 3" in capsys.readouterr().err


@pytest.mark.parametrize("encoding", ["single", "bit_sliced_column"])
def test_export_on_chip_with_the_aware_mapping_matches_pytorch(setup, tmp_path, encoding):
    gm, _, x = setup
    hardware = ENCODINGS[encoding]
    arrays = rramfx.crossbar_map(gm, hardware).arrays
    chip = Chip.draw(Independent(sa1=0.1, sa0=0.05), arrays + 2, hardware, seed=4)
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    aware = rramfx.fault_aware_map(rramfx.crossbar_layers(gm), chip)
    path = rramfx.export_on_chip(gm, torch.randn(2, 3, 8, 8), chip, tmp_path / "aware.onnx", mapping=aware)
    assert all(torch.equal(before[k], v) for k, v in gm.state_dict().items())  # gm left as it was
    assert all(m.fault_codes is None for m in rramfx.crossbar_layers(gm).values())
    g = copy.deepcopy(gm)
    rramfx.apply_chip(g, chip, aware)
    with torch.no_grad():
        want = g(x).numpy()
        naive = copy.deepcopy(gm)
        rramfx.apply_chip(naive, chip)
        naive_out = naive(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-5
    assert np.abs(naive_out - want).max() > 1e-3  # the aware mapping is a different placement
    assert model_meta(onnx.load(path))["fault_mode"] == "read_weights"


def test_export_on_chip_with_the_measured_fault_rate_matches_pytorch(setup, tmp_path):
    gm, _, x = setup
    hardware = ENCODINGS["single"]
    chip = Chip.draw(Independent(sa1=0.15), rramfx.crossbar_map(gm, hardware).arrays, hardware, seed=6)
    path = rramfx.export_on_chip(gm, torch.randn(2, 3, 8, 8), chip, tmp_path / "m.onnx", mapping="aware",
                                 fault_rate="measured")
    g = copy.deepcopy(gm)
    rramfx.apply_chip(g, chip, "aware")
    rates = rramfx.crossbar.measured_fault_rates(g)
    assert rates and all(0 <= r < 0.15 for r in rates.values())  # aware: less lost than the SA1 rate
    for name, layer in rramfx.crossbar_layers(g).items():
        layer.fault_rate = rates[name]
    with torch.no_grad():
        want = g(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0] - want).max() <= 1e-5
    assert all(m.fault_rate == 0.1 for m in rramfx.crossbar_layers(gm).values())  # gm's own p' untouched


def test_measured_fault_rate_flag_needs_a_chip(tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert main(["export", "--model", "tests.test_onnx_encodings:ConvNet", "--out", str(out),
                 "--input-size", "3,8,8", "--measured-fault-rate"]) == 2
    assert "--measured-fault-rate measures p' on a tested chip: give --chip FILE" in capsys.readouterr().err
    assert not out.exists()
