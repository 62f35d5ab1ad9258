"""The crossbar cost model: geometry and tiles, MACs by hand, ISAAC latency/energy, totals, JSON,
errors, the CLI, and the VTS 2024 paper's Table II ratios."""

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

import rramfx
from rramfx.cli import main
from rramfx.cost.estimate import CostReport, Hardware, estimate_cost
from rramfx.cost.paper import MOBILENET_ROUNDED_TO_8, PAPER_TABLE2, TABLE2_CONFIGS, table2_markdown, table2_rows
from rramfx.crossbar.tiling import geometry, tiles_for
from rramfx.errors import CostError

from .conftest import SmallNet, assert_unchanged, snapshot

ISAAC_OPS_PER_S = 478.95e9 * 85.4 * 64
ISAAC_OPS_PER_J = 644.01e9


@pytest.fixture(autouse=True)
def one_thread():
    # Counting MACs runs one real forward; on a loaded 2-core machine torch's intra-op threads mostly
    # wait for each other (1 s per ResNet20 forward on two threads, 11 ms on one), see conftest.py.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small():
    torch.manual_seed(0)
    gm = rramfx.prepare(SmallNet(), rramfx.Policy())
    return gm, estimate_cost(gm, torch.randn(2, 3, 8, 8))


def test_geometry_and_tiles_of_known_layers():
    g = geometry(nn.Conv2d(64, 64, 3))
    assert (g.kind, g.rows, g.cols, g.groups) == ("conv", 576, 64, 1)
    assert g.tiles((128, 128)) == 5 * 1  # ceil(576/128) row tiles x 1 column tile
    assert g.tiles((128, 128), cells_per_weight=4) == 5 * 2  # 2-bit cells: 256 columns
    dw = geometry(nn.Conv2d(96, 96, 3, groups=96))
    assert (dw.rows, dw.cols, dw.groups, dw.tiles((128, 128))) == (9, 1, 96, 7)  # 14 kernels per array
    lin = geometry(nn.Linear(300, 10))
    assert (lin.rows, lin.cols, lin.tiles((128, 128))) == (300, 10, 3)
    tr = geometry(nn.ConvTranspose2d(16, 8, 2, stride=2))
    assert (tr.kind, tr.rows, tr.cols, tr.fan) == ("conv_transpose", 16, 32, 32)
    assert tiles_for(576, 64, 1, (128, 128)) == 5


def test_macs_tiles_and_devices_by_hand(small):
    _, report = small
    # SmallNet on 8x8 inputs, per sample: output elements x products per output element.
    expected = {
        "stem": ("rram", 16 * 64 * 27, 1),  # 27x16 fits one array
        "dw": ("rram", 16 * 64 * 9, 2),  # 16 depthwise 9x1 kernels, 14 per array
        "pw": ("cpu", 32 * 64 * 16, 0),
        "grouped": ("rram", 32 * 64 * 72, 4),  # 4 groups of 72x8, one per array
        "shortcut": ("cpu", 32 * 64 * 16, 0),
        "head.2": ("cpu", 10 * 32, 0),
    }
    got = {c.path: (c.device, c.macs, c.tiles) for c in report.layers}
    assert got == expected
    assert report["grouped"].kernel == "3x3 g4" and report["dw"].kernel == "3x3 dw"
    assert all(c.calls == 1 for c in report.layers) and report.input_shapes == ((3, 8, 8),)


def test_latency_and_energy_follow_isaac_and_the_host(small):
    _, report = small
    hw = report.hardware
    for c in report.layers:
        if c.device == "rram":
            assert c.latency_s == pytest.approx(2 * c.macs / ISAAC_OPS_PER_S, rel=1e-12)
            assert c.energy_j == pytest.approx(2 * c.macs / ISAAC_OPS_PER_J, rel=1e-12)
        else:
            assert c.latency_s == pytest.approx(2 * c.macs / 768e9, rel=1e-12)
            assert c.energy_j == pytest.approx(c.latency_s * 65.0, rel=1e-12)
    assert hw.rram_ops_per_s == pytest.approx(2.6178e15, rel=1e-4)  # 64 ISAAC chips
    one_chip = estimate_cost(small[0], torch.randn(1, 3, 8, 8), dataclasses.replace(hw, chips=1))
    assert one_chip.per_device["rram"].latency_s == pytest.approx(64 * report.per_device["rram"].latency_s)
    assert one_chip.per_device["rram"].energy_j == pytest.approx(report.per_device["rram"].energy_j)


def test_device_totals_sum_to_the_overall(small):
    _, report = small
    rram, cpu, total = report.per_device["rram"], report.per_device["cpu"], report.total
    assert (rram.layers, cpu.layers, total.layers) == (3, 3, 6)
    assert rram.macs + cpu.macs == total.macs == sum(c.macs for c in report.layers)
    assert rram.tiles + cpu.tiles == total.tiles == 7 and cpu.tiles == 0
    assert rram.latency_s + cpu.latency_s == pytest.approx(total.latency_s, rel=1e-12)
    assert rram.energy_j + cpu.energy_j == pytest.approx(total.energy_j, rel=1e-12)
    assert total.ops == 2 * total.macs


def test_all_on_moves_every_layer(small):
    gm, report = small
    every = estimate_cost(gm, torch.randn(1, 3, 8, 8), all_on="rram")
    assert every.total.macs == report.total.macs and every.per_device["cpu"].layers == 0
    assert every["pw"].tiles == 1 and every.total.latency_s == pytest.approx(every.total.ops / ISAAC_OPS_PER_S)
    assert estimate_cost(gm, torch.randn(1, 3, 8, 8), all_on="cpu").total.tiles == 0


def test_cells_per_weight_change_tiles_not_time(small):
    gm, report = small
    wide = estimate_cost(gm, torch.randn(1, 3, 8, 8), Hardware(cells_per_weight=4))
    assert wide["stem"].tiles == 1 and wide["grouped"].tiles == 4  # 27x64 and 72x32 still fit
    big = estimate_cost(gm, torch.randn(1, 3, 8, 8), Hardware(tile=(16, 16)))
    assert big["stem"].tiles == 2 * 1 and big["grouped"].tiles == 4 * 5 * 1
    assert wide.total.latency_s == report.total.latency_s


def test_json_round_trip_and_table(small):
    _, report = small
    back = CostReport.from_json(report.to_json())
    assert back == report
    data = json.loads(report.to_json())
    assert data["totals"]["total"]["macs"] == report.total.macs and data["hardware"]["tile"] == [128, 128]
    text = report.table()
    assert "grouped" in text and "3x3 g4" in text and "72x8 x4" in text
    assert "total" in text and "644.01 GOPs/W" in text and "768 GOPs/s at 65 W" in text


def test_input_model_is_left_unchanged(small_net):
    gm = rramfx.prepare(small_net, rramfx.Policy()).train()
    x = torch.randn(2, 3, 8, 8)
    before, code, rng = snapshot(gm), gm.code, torch.get_rng_state()
    estimate_cost(gm, x)
    assert_unchanged(gm, before)
    assert gm.code == code and gm.training and torch.equal(torch.get_rng_state(), rng)
    assert all(not m._forward_hooks for m in gm.modules())
    assert all(p.grad is None for p in gm.parameters())


def test_bad_input_names_what_to_do(small_net):
    with pytest.raises(CostError, match=r"rramfx.prepare\(model, policy\).*got SmallNet"):
        estimate_cost(small_net, torch.randn(1, 3, 8, 8))
    with pytest.raises(CostError, match="no rramfx 'placement' record.*rramfx.prepare"):
        estimate_cost(rramfx.trace(small_net), torch.randn(1, 3, 8, 8))
    gm = rramfx.prepare(small_net, rramfx.Policy())
    with pytest.raises(CostError, match="could not run the model on example_inputs .*RuntimeError"):
        estimate_cost(gm, torch.randn(1, 5, 8, 8))
    with pytest.raises(CostError, match="batch tensor.*got list"):
        estimate_cost(gm, [1, 2])
    with pytest.raises(CostError, match="all_on must be"):
        estimate_cost(gm, torch.randn(1, 3, 8, 8), all_on="gpu")
    with pytest.raises(rramfx.ArgumentTypeError, match="hardware must be"):
        estimate_cost(gm, torch.randn(1, 3, 8, 8), hardware={"chips": 1})


@pytest.mark.parametrize("kwargs,needle", [
    ({"chips": 0}, "Hardware.chips must be an int >= 1, got 0"),
    ({"tile": (128,)}, "Hardware.tile must be (rows, cols)"),
    ({"tile": (128, 0)}, "Hardware.tile[1] must be an int >= 1"),
    ({"cells_per_weight": 2.5}, "Hardware.cells_per_weight"),
    ({"host_gops": math.nan}, "Hardware.host_gops must be a finite number > 0"),
    ({"rram_gops_per_w": -1}, "Hardware.rram_gops_per_w"),
])
def test_hardware_is_validated(kwargs, needle):
    with pytest.raises(CostError) as err:
        Hardware(**kwargs)
    assert needle in str(err.value)
    with pytest.raises(CostError, match="unknown Hardware field"):
        Hardware.from_dict({"chip": 3})
    hw = dataclasses.replace(Hardware(), chips=8, tile=[64, 64])
    assert hw.tile == (64, 64) and Hardware.from_dict(hw.to_dict()) == hw


class _Gate(nn.Module):
    """A leaf module that skips its convolution on small inputs (control flow torch.fx cannot see)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x) if x.shape[-1] > 8 else x


def test_layer_that_never_runs_is_reported(small_net):
    with pytest.warns(UserWarning, match="leaf module"):
        gm = rramfx.prepare(nn.Sequential(_Gate(), small_net), rramfx.Policy(), leaf_modules=[_Gate])
    with pytest.warns(UserWarning, match=r"1 weighted layer\(s\) did not run.*: 0.conv"):
        report = estimate_cost(gm, torch.randn(1, 3, 8, 8))
    assert report["0.conv"].calls == 0 and report["0.conv"].macs == 0 and report["0.conv"].tiles == 1
    assert estimate_cost(gm, torch.randn(1, 3, 16, 16))["0.conv"].macs == 3 * 256 * 27


# ---- the paper's Table II -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table2():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = table2_rows((*TABLE2_CONFIGS, MOBILENET_ROUNDED_TO_8))
    finally:
        torch.set_num_threads(threads)
    return {(r.label, r.width): r for r in rows}


PAPER = {("ResNet20", 1.2): 1.406, ("ResNet20", 1.4): 1.893, ("ResNet20", 1.6): 2.485,
         ("VGG13", 1.2): 1.426, ("VGG13", 1.4): 1.942, ("VGG13", 1.6): 2.534, ("MobileNetV2", 1.2): 1.412}


def test_paper_table_values_are_transcribed():
    for (label, width), ratio in PAPER.items():
        model = {"ResNet20": "resnet20", "VGG13": "vgg13", "MobileNetV2": "mobilenetv2"}[label]
        lat = PAPER_TABLE2[(model, width)][0] / PAPER_TABLE2[(model, 1.0)][0]
        assert lat == pytest.approx(ratio, abs=5e-4)


@pytest.mark.parametrize("key", list(PAPER))
def test_table2_latency_and_energy_ratios_within_5_percent(table2, key):
    row = table2[key]
    assert row.paper_latency == pytest.approx(PAPER[key], abs=5e-4)
    assert abs(row.latency_diff) < 0.05 and abs(row.energy_diff) < 0.05
    assert row.latency == pytest.approx(row.energy, rel=1e-9)  # one device: both are ops x a constant


def test_table2_rram_layers_alone(table2):
    # ResNet20 and VGG13: the k x k layers hold > 99% of the MACs, so RRAM-only matches as well.
    for key in [k for k in PAPER if k[0] != "MobileNetV2"]:
        assert abs(table2[key].rram_latency / table2[key].paper_latency - 1) < 0.05
    # MobileNetV2's RRAM layers are depthwise (and the stem): MACs linear in width, ~1.2x, not the
    # paper's 1.41x, which therefore counts the host's 1x1 convolutions at ISAAC's rates too.
    assert table2[("MobileNetV2", 1.2)].rram_latency == pytest.approx(1.197, abs=0.002)


def test_table2_mobilenet_rounded_to_8_does_not_match(table2):
    # MobileNet's rounding to multiples of 8 widens the 16-channel stage by 50% at width 1.2.
    row = table2[(MOBILENET_ROUNDED_TO_8.label, 1.2)]
    assert row.latency == pytest.approx(1.516, abs=0.002) and row.latency_diff > 0.05
    assert "| MobileNetV2 | 1.2 | 1.420 |" in table2_markdown([table2[("MobileNetV2", 1.2)]])


# ---- CLI ---------------------------------------------------------------------------------------------

def test_cli_cost_json_and_table(capsys):
    assert main(["cost", "resnet20", "--width", "1.2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["total"]["macs"] == 57_919_298 and data["input_shapes"] == [[3, 32, 32]]
    assert data["layers"][0]["path"] == "conv1" and data["layers"][0]["tiles"] == 1  # 27x19
    assert main(["cost", "tests.conftest:SmallNet", "--input-shape", "3,8,8", "--tile", "16x16",
                 "--cells-per-weight", "2"]) == 0
    out = capsys.readouterr().out
    assert "grouped" in out and "16x16 arrays, cells per weight 2" in out


@pytest.mark.parametrize("args,needle", [
    (["resnet20", "--input-shape", "3,x,32"], "argument --input-shape: must be C,H,W"),
    (["resnet20", "--tile", "128"], "argument --tile: must look like 128x128"),
    (["resnet20", "--chips", "0"], "argument --chips: must be an integer >= 1, got '0'"),
    (["tests.conftest:SmallNet", "--input-shape", "3,1"], "argument --input-shape: must be C,H,W"),
    (["resnet2"], "unknown reference model 'resnet2'"),
])
def test_cli_cost_bad_arguments(args, needle, capsys):
    try:
        code = main(["cost", *args])
    except SystemExit as e:  # a bad flag value: argparse's usage error, one line too
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1
