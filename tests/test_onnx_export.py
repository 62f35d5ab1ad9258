"""Annotated ONNX export: metadata on every node, the three fault modes against PyTorch, and errors."""

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from filelock import FileLock
from timm.layers import Conv2dSame, ScaledStdConv2d, StdConv2d
from torch import nn

import rramfx
from rramfx import FaultModel, FaultSet, Policy
from rramfx.crossbar.hardware import Hardware
from rramfx.crossbar.tiling import tiles_for
from rramfx.onnx.export import export_onnx
from rramfx.onnx.feed import onnx_fault_inputs
from rramfx.onnx.meta import OnnxError, layer_info, model_meta, node_meta

from .conftest import SmallNet, assert_unchanged, snapshot

POLICY = Policy(drop_rate=0.2, fault_rate=0.1)
FM = FaultModel(sa1=0.1, sa0=0.02)


def shared_dir(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder of exports made once per test session and shared by pytest-xdist workers: the first
    worker that asks runs ``build(folder)``, the others wait for it and read the files."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / f"rramfx-onnx-{name}"
    with FileLock(f"{folder}.lock"):
        if not (folder / "done").exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            (folder / "done").write_text("ok")
    return folder


def _run(path, feed):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def _torch(gm, x, faults=None):
    g = copy.deepcopy(gm).eval()
    if faults is not None:
        rramfx.apply_faults(g, faults)
    with torch.no_grad():
        return g(x).numpy()


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _healthy(faults):
    return FaultSet({p: torch.zeros_like(c) for p, c in faults.items()}, faults.fault_model, None)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """SmallNet prepared, one chip, and its exports in every mode."""
    torch.manual_seed(0)
    gm = rramfx.prepare(SmallNet().eval(), POLICY).eval()
    faults = rramfx.inject_faults(copy.deepcopy(gm), FM, seed=4)

    def build(d):
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        before = snapshot(gm)
        export_onnx(gm, x, d / "clean.onnx")
        export_onnx(gm, x, d / "inputs.onnx", faults="inputs")
        # a fixed batch (3) where the test does not need a dynamic one: torch.export is twice as fast
        export_onnx(gm, x[:1].expand(3, -1, -1, -1), d / "unscaled.onnx", prescale=False, dynamic_batch=False)
        export_onnx(gm, x[:1].expand(3, -1, -1, -1), d / "baked.onnx", faults=faults, dynamic_batch=False)
        assert_unchanged(gm, before)  # export works on a copy

    d = shared_dir(tmp_path_factory, "small", build)
    return gm, faults, {k: d / f"{k}.onnx" for k in ("clean", "unscaled", "baked", "inputs")}


def test_every_node_is_annotated_and_conv_devices_match_placement(small):
    gm, _, paths = small
    placement = rramfx.placement(gm)
    for mode, path in paths.items():
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        metas = [node_meta(n) for n in model.graph.node]
        assert all(m.get("device") in ("rram", "cpu") for m in metas), mode
        convs = [(m["module"], m["device"]) for n, m in zip(model.graph.node, metas, strict=True)
                 if n.op_type == "Conv"]
        assert sorted(convs) == sorted((p, d) for p, d in placement.items() if p != "head.2"), mode
        gemm = [m for n, m in zip(model.graph.node, metas, strict=True) if n.op_type == "Gemm"]
        assert [(m["module"], m["device"]) for m in gemm] == [("head.2", "cpu")]
        # optimised (no exporter scaffolding left), BatchNorm kept out of the RRAM stem's weights
        assert not any(n.op_type in ("Constant", "Shape", "CastLike") for n in model.graph.node), mode
        assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) == 1


def test_rram_nodes_carry_rates_crossbar_and_macs(small):
    _, _, paths = small
    model = onnx.load(paths["inputs"])
    by_module = {m["module"]: m for n in model.graph.node if n.op_type in ("Conv", "Gemm")
                 for m in [node_meta(n)]}
    stem, dw, grouped, pw = by_module["stem"], by_module["dw"], by_module["grouped"], by_module["pw"]
    assert (float(stem["drop_rate"]), float(stem["fault_rate"])) == (0.2, 0.1)
    assert float(stem["weight_scale"]) == pytest.approx(1 / 0.9)
    assert json.loads(stem["crossbar"]) == {"rows": 27, "cols": 16, "groups": 1, "tile": [128, 128],
                                            "cells_per_weight": 1, "tiles": 1}
    assert json.loads(dw["crossbar"])["tiles"] == 2  # 16 groups of 9x1, 14 to a tile along the diagonal
    assert json.loads(grouped["crossbar"]) == {"rows": 72, "cols": 8, "groups": 4, "tile": [128, 128],
                                               "cells_per_weight": 1, "tiles": 4}
    assert json.loads(grouped["op"]) == {"type": "conv", "kernel": [3, 3], "groups": 4, "in": 32, "out": 32,
                                         "macs": 32 * 32 * 32 * 72}
    assert "crossbar" not in pw and "fault_rate" not in pw and json.loads(pw["op"])["macs"] == 32 * 32 * 32 * 16
    assert json.loads(by_module["head.2"]["op"]) == {"type": "linear", "in": 32, "out": 10, "macs": 320}


def test_tile_count_rule():
    assert tiles_for(27, 16, 1, (128, 128)) == 1
    assert tiles_for(4608, 512, 1, (128, 128)) == 36 * 4
    assert tiles_for(9, 1, 960, (128, 128)) == 69  # 14 depthwise kernels per tile
    assert tiles_for(200, 8, 4, (128, 128)) == 4 * 2
    info = layer_info(nn.Conv2d(64, 64, 3), "rram", Hardware(tile=(64, 32)))
    assert json.loads(info["rramfx.crossbar"])["tiles"] == 9 * 2
    info = layer_info(nn.Conv2d(64, 64, 3), "rram", Hardware(tile=(64, 32), cells_per_weight=2))
    assert json.loads(info["rramfx.crossbar"])["tiles"] == 9 * 4  # 128 columns of cells
    assert json.loads(info["rramfx.crossbar"])["cells_per_weight"] == 2
    assert "rramfx.crossbar" not in layer_info(nn.Linear(4, 2), "cpu", Hardware())


def test_model_metadata_round_trips_the_policy(small):
    gm, faults, paths = small
    meta = model_meta(onnx.load(paths["baked"]))
    assert meta["version"] == rramfx.__version__ and meta["batch"] == "3" and meta["tile"] == "128x128"
    assert model_meta(onnx.load(paths["inputs"]))["batch"] == "dynamic"
    dims = onnx.load(paths["baked"]).graph.input[0].type.tensor_type.shape.dim  # exported with a fixed batch
    assert [d.dim_value for d in dims] == [3, 3, 32, 32]
    assert Policy.from_dict(meta["policy"]) == POLICY
    assert Hardware.from_dict(meta["hardware"]) == Hardware()  # the description the tiles were counted on
    assert meta["placement"] == rramfx.placement(gm)
    assert meta["fault_mode"] == "baked"
    assert meta["faults"] == {"fault_model": FM.to_dict(), "seed": 4, "counts": faults.counts()}
    clean = model_meta(onnx.load(paths["clean"]))
    assert clean["fault_mode"] == "none" and "faults" not in clean


def test_clean_graph_is_prescaled_by_the_expected_fault_rate(small):
    gm, faults, paths = small
    x = torch.randn(3, 3, 32, 32)
    plain = _torch(gm, x)
    assert _rel(_run(paths["unscaled"], {"x": x.numpy()}), plain) < 1e-5
    x5 = torch.randn(5, 3, 32, 32)  # another batch size than the example's: the batch dimension is dynamic
    healthy_chip = _torch(gm, x5, _healthy(faults))  # what the chip computes with no stuck cell: x 1/(1-p')
    got = _run(paths["clean"], {"x": x5.numpy()})
    assert _rel(got, healthy_chip) < 1e-5 and _rel(got, _torch(gm, x5)) > 1e-3
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(paths["clean"]).graph.initializer}
    w = gm.get_submodule("grouped").weight.detach().numpy()
    assert np.array_equal(inits["grouped.weight"], w * np.float32(1 / 0.9))
    assert np.array_equal(inits["pw.weight"], gm.get_submodule("pw").weight.detach().numpy())  # host: as is


def test_baked_chip_matches_pytorch(small):
    gm, faults, paths = small
    x = torch.randn(3, 3, 32, 32)
    want = _torch(gm, x, faults)
    assert _rel(_run(paths["baked"], {"x": x.numpy()}), want) < 1e-4
    assert _rel(want, _torch(gm, x)) > 1e-2  # the chip matters
    inits = {i.name: i for i in onnx.load(paths["baked"]).graph.initializer}
    for path, codes in faults.items():
        init = inits[f"{path}.fault_codes"]
        assert init.data_type == onnx.TensorProto.UINT8
        assert np.array_equal(onnx.numpy_helper.to_array(init), codes.numpy())


def test_fault_codes_as_inputs_simulate_any_chip(small):
    gm, faults, paths = small
    model = onnx.load(paths["inputs"])
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["x", "stem.fault_codes", "dw.fault_codes", "grouped.fault_codes"]
    assert inputs["grouped.fault_codes"].elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inputs["grouped.fault_codes"].shape.dim] == [32, 8, 3, 3]
    x = torch.randn(2, 3, 32, 32)
    for seed in (0, 1):
        chip = rramfx.inject_faults(copy.deepcopy(gm), FM, seed=seed)
        got = _run(paths["inputs"], {"x": x.numpy(), **onnx_fault_inputs(chip)})
        assert _rel(got, _torch(gm, x, chip)) < 1e-4
    zeros = _run(paths["inputs"], {"x": x.numpy(), **onnx_fault_inputs(_healthy(faults))})
    assert _rel(zeros, _run(paths["clean"], {"x": x.numpy()})) < 1e-5


class OddNet(nn.Module):
    """Layers whose forward is not torch's own (timm's same-padding and weight-standardised convs)."""

    def __init__(self):
        super().__init__()
        self.same = Conv2dSame(3, 8, 3, stride=2)
        self.std = StdConv2d(8, 8, 3, padding=1)
        self.scaled = ScaledStdConv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.same(x))
        x = torch.relu(self.scaled(torch.relu(self.std(x))))
        return self.fc(x.mean((2, 3)))


def test_timm_conv_subclasses_and_an_rram_linear(tmp_path):
    torch.manual_seed(0)
    gm = rramfx.prepare(OddNet().eval(), Policy(fault_rate=0.05, overrides={"fc": "rram"})).eval()
    faults = rramfx.inject_faults(copy.deepcopy(gm), FaultModel(sa1=0.05, sa0=0.05), seed=2)
    x = torch.randn(2, 3, 33, 33)
    path = export_onnx(gm, x, tmp_path / "odd.onnx", faults=faults)
    assert _rel(_run(path, {"x": x.numpy()}), _torch(gm, x, faults)) < 1e-4
    gemm = [node_meta(n) for n in onnx.load(path).graph.node if n.op_type == "Gemm"]
    assert gemm[0]["device"] == "rram" and json.loads(gemm[0]["crossbar"])["rows"] == 8


def test_errors_name_the_problem(small, tmp_path):
    gm, _, _ = small
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(rramfx.PlacementError, match="rramfx.prepare"):
        export_onnx(rramfx.trace(SmallNet()), x, tmp_path / "a.onnx")
    with pytest.raises(rramfx.ArgumentError, match="faults must be None, 'inputs' or an rramfx.FaultSet"):
        export_onnx(gm, x, tmp_path / "a.onnx", faults="chip0")
    with pytest.raises(rramfx.ArgumentError, match=r"tile\[0\] must be an int >= 1, got 0"):
        export_onnx(gm, x, tmp_path / "a.onnx", tile=(0, 128))
    with pytest.raises(rramfx.ArgumentError, match=r"tile must be \(rows, cols\)"):
        export_onnx(gm, x, tmp_path / "a.onnx", tile="128x128")
    with pytest.raises(rramfx.ArgumentTypeError, match="export_onnx: hardware must be an rramfx.Hardware, got dict"):
        export_onnx(gm, x, tmp_path / "a.onnx", hardware={"tile": (64, 64)})
    with pytest.raises(rramfx.ArgumentError, match="give hardware= or its tile= shorthand, not both"):
        export_onnx(gm, x, tmp_path / "a.onnx", hardware=Hardware(), tile=(64, 64))
    host_only = rramfx.prepare(SmallNet(), Policy(conv_kxk="cpu"))
    with pytest.raises(OnnxError, match="no RRAM layer"):
        export_onnx(host_only, x, tmp_path / "a.onnx", faults="inputs")
    with pytest.raises(rramfx.FaultError, match="another model"):
        other = rramfx.inject_faults(rramfx.prepare(nn.Sequential(nn.Conv2d(3, 16, 5)), POLICY), FM, seed=0)
        export_onnx(gm, x, tmp_path / "a.onnx", faults=FaultSet({"stem": other["0"]}, FM, 0))
    assert not (tmp_path / "a.onnx").exists()
