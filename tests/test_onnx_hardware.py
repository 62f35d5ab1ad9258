"""One hardware description for the cost model and the ONNX annotation: per layer, the crossbar tiles an
exported graph records are the tiles the cost report counts, cells per weight included."""

import json

import onnx
import pytest
import timm
import torch

import rramfx
from rramfx import Policy
from rramfx.cost.estimate import estimate_cost
from rramfx.crossbar.hardware import Hardware, resolve_hardware
from rramfx.errors import ArgumentError
from rramfx.onnx.export import export_onnx
from rramfx.onnx.meta import model_meta, node_meta

from .conftest import SmallNet
from .test_onnx_export import shared_dir

#: name -> (model factory, policy, array size, example input shape). SmallNet with every layer on RRAM
#: (3x3, depthwise, grouped, 1x1, linear) on 16x16 arrays, where a second cell per weight changes the
#: count of most layers; timm resnet18 with the paper's policy on the default 128x128 arrays.
MODELS = {
    "smallnet": (SmallNet, Policy(conv_1x1="rram", linear="rram"), (16, 16), (2, 3, 8, 8)),
    "resnet18": (lambda: timm.create_model("resnet18", num_classes=10, pretrained=False), Policy(), (128, 128),
                 (2, 3, 32, 32)),
}
#: SmallNet's tiles on 16x16 arrays, by hand: stem 27x16 (x2 columns with 2 cells), depthwise 16 groups
#: of 9x1 (one per array, 16 // 9 rows), pw and shortcut 16x32, grouped 4 groups of 72x8 (5 row tiles
#: each; 72x16 still one column tile), head 32x10.
SMALLNET_TILES = {
    1: {"stem": 2, "dw": 16, "pw": 2, "grouped": 20, "shortcut": 2, "head.2": 2},
    2: {"stem": 4, "dw": 16, "pw": 4, "grouped": 20, "shortcut": 4, "head.2": 4},
}
#: resnet18's total on 128x128 arrays (docs/onnx.md); two cells per weight double every layer whose
#: output channels fill more than half a column tile.
RESNET18_TOTAL = {1: 684, 2: 1346}


def _onnx_tiles(path) -> dict[str, int]:
    """Module path -> ``tiles`` of the ``rramfx.crossbar`` key on its main op."""
    return {m["module"]: json.loads(m["crossbar"])["tiles"]
            for n in onnx.load(path).graph.node for m in [node_meta(n)] if "crossbar" in m}


@pytest.mark.parametrize("cells_per_weight", [1, 2])
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_tiles_equal_cost_tiles(name, cells_per_weight, tmp_path_factory):
    factory, policy, tile, shape = MODELS[name]
    torch.manual_seed(0)
    gm = rramfx.prepare(factory().eval(), policy).eval()
    hardware = Hardware(tile=tile, cells_per_weight=cells_per_weight)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    folder = shared_dir(tmp_path_factory, f"hardware-{name}-{cells_per_weight}", lambda d: export_onnx(
        gm, x, d / "model.onnx", hardware=hardware, dynamic_batch=False))  # static batch: twice as fast
    exported = _onnx_tiles(folder / "model.onnx")
    costed = {c.path: c.tiles for c in estimate_cost(gm, x[:1], hardware).layers if c.device == "rram"}
    assert exported == costed
    assert set(costed) == {p for p, d in rramfx.placement(gm).items() if d == "rram"}
    if name == "smallnet":
        assert costed == SMALLNET_TILES[cells_per_weight]
    else:
        assert sum(costed.values()) == RESNET18_TOTAL[cells_per_weight]
    meta = model_meta(onnx.load(folder / "model.onnx"))
    assert Hardware.from_dict(meta["hardware"]) == hardware and meta["tile"] == f"{tile[0]}x{tile[1]}"


def test_tile_is_a_shorthand_for_hardware():
    assert resolve_hardware() == Hardware()
    assert resolve_hardware(tile=(64, 32)) == Hardware(tile=(64, 32))
    hw = Hardware(cells_per_weight=2)
    assert resolve_hardware(hw) is hw
    with pytest.raises(ArgumentError, match=r"f: give hardware= or its tile= shorthand, not both"):
        resolve_hardware(hw, (64, 64), where="f")
    with pytest.raises(ArgumentError, match=r"tile\[1\] must be an int >= 1, got -1"):
        resolve_hardware(tile=(64, -1))
    with pytest.raises(ArgumentError, match=r"tile must be \(rows, cols\) of one crossbar array"):
        resolve_hardware(tile=(64, 64, 1))
