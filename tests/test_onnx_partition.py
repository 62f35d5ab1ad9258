"""Deployment partition: maximal same-device segments that run standalone and chain to the whole model."""

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch

import rramfx
from rramfx import FaultModel, Policy
from rramfx.onnx.export import export_onnx
from rramfx.onnx.feed import onnx_fault_inputs
from rramfx.onnx.inspect import inspect_onnx
from rramfx.onnx.meta import OnnxError
from rramfx.onnx.partition import partition_onnx, run_partitioned
from rramfx.onnx.plan import Plan

from .conftest import SmallNet
from .test_onnx_export import shared_dir


def _session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """timm resnet18: its 1x1 downsample convolutions and fc stay on the host between RRAM convs."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10, pretrained=False).eval()
    gm = rramfx.prepare(model, Policy(drop_rate=0.2, fault_rate=0.1)).eval()

    def build(d):
        path = export_onnx(gm, torch.randn(2, 3, 32, 32), d / "resnet18.onnx", faults="inputs")
        partition_onnx(path, d / "parts")

    d = shared_dir(tmp_path_factory, "resnet18", build)
    return gm, d / "resnet18.onnx", Plan.load(d / "parts"), d / "parts"


def test_segments_alternate_devices_and_run_standalone(resnet):
    _, _, plan, out = resnet
    devices = [s.device for s in plan.segments]
    # stem+layer1 convs | maxpool | ... : every block's residual add runs on the host
    assert devices == ["rram", "cpu"] * 9
    for seg in plan.segments:
        model = onnx.load(out / seg.file)
        onnx.checker.check_model(model, full_check=True)
        assert {p.key: p.value for p in model.metadata_props}["rramfx.segment_device"] == seg.device
        assert all(n.metadata_props[0].key for n in model.graph.node)
        kinds = {p.value for n in model.graph.node for p in n.metadata_props if p.key == "rramfx.device"}
        assert kinds == {seg.device}
        names = [i.name for i in _session(out / seg.file).get_inputs()]
        assert names == [t.name for t in seg.inputs]
    rram_convs = sum(n.op_type == "Conv" for s in plan.segments if s.device == "rram"
                     for n in onnx.load(out / s.file).graph.node)
    assert rram_convs == 17


def test_partitioned_run_equals_the_whole_model(resnet):
    gm, path, _, out = resnet
    x = torch.randn(3, 3, 32, 32)
    chip = rramfx.inject_faults(copy.deepcopy(gm), FaultModel(sa1=0.1, sa0=0.01), seed=9)
    feed = {"x": x.numpy(), **onnx_fault_inputs(chip)}
    whole = _session(path).run(None, feed)[0]
    parts = run_partitioned(out, feed)
    assert len(parts) == 1 and parts[0].shape == (3, 10)
    assert np.abs(parts[0] - whole).max() <= 1e-5 * np.abs(whole).max()
    g = copy.deepcopy(gm)
    rramfx.apply_faults(g, chip)
    with torch.no_grad():
        want = g(x).numpy()
    assert np.abs(parts[0] - want).max() <= 1e-4 * np.abs(want).max()


def test_manifest_lists_interfaces_and_boundary_bytes(resnet):
    _, _, plan, out = resnet
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "rramfx.partition/1"
    assert [s["file"] for s in manifest["segments"]] == [f"{i:02d}_{d}.onnx" for i, d in
                                                         enumerate(["rram", "cpu"] * 9)]
    first = manifest["segments"][0]
    data = [t for t in first["inputs"] if t["role"] == "data"]
    assert data == [{"name": "x", "dtype": "float32", "shape": ["batch", 3, 32, 32],
                     "bytes_per_sample": 3 * 32 * 32 * 4, "role": "data"}]
    codes = [t for t in first["inputs"] if t["role"] == "fault_codes"]
    assert [t["name"] for t in codes] == ["conv1.fault_codes"] and codes[0]["dtype"] == "uint8"
    transfers = manifest["transfers"]
    assert transfers[0] == {"before_segment": 0, "source": "cpu", "target": "rram", "tensors": ["x"],
                            "bytes_per_sample": 12288}
    # the stem's output (64 x 16 x 16 floats) goes to the host for the max-pool
    assert transfers[1]["before_segment"] == 1 and transfers[1]["bytes_per_sample"] == 64 * 16 * 16 * 4
    assert all(t["bytes_per_sample"] > 0 for t in transfers)
    assert manifest["boundary_bytes_per_sample"] == sum(t["bytes_per_sample"] for t in transfers)
    assert manifest["outputs"][0]["shape"] == ["batch", 10]
    reloaded = Plan.load(out)
    assert reloaded.segments == plan.segments and reloaded.boundary_bytes_per_sample == plan.boundary_bytes_per_sample


def test_small_net_plan_and_inspect(tmp_path):
    torch.manual_seed(0)
    gm = rramfx.prepare(SmallNet().eval(), Policy(drop_rate=0.1, fault_rate=0.05)).eval()
    path = export_onnx(gm, torch.randn(2, 3, 32, 32), tmp_path / "small.onnx")
    report = inspect_onnx(path)
    data = report["data"]
    rram = 32 * 32 * (16 * 27 + 16 * 9 + 32 * 72)  # stem, depthwise, grouped
    cpu = 32 * 32 * (32 * 16 + 32 * 16) + 320      # pw, shortcut, head
    assert data["macs_per_sample"] == {"rram": rram, "cpu": cpu}
    assert data["rram_mac_share"] == pytest.approx(rram / (rram + cpu))
    assert data["layers"] == {"rram": 3, "cpu": 3} and data["crossbar_tiles"] == 1 + 2 + 4
    assert [s["device"] for s in data["segments"]] == ["rram", "cpu", "rram", "cpu"]
    assert "73.8% on rram" in report["text"] and "segments: 4 (2 rram, 2 cpu)" in report["text"]
    plan = partition_onnx(path, tmp_path / "parts")
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    whole = _session(path).run(None, {"x": x})[0]
    assert np.abs(plan.run(x)[0] - whole).max() <= 1e-6 * np.abs(whole).max()


def test_errors(tmp_path):
    with pytest.raises(OnnxError, match="does not exist"):
        partition_onnx(tmp_path / "missing.onnx", tmp_path / "out")
    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    onnx.save(plain, tmp_path / "plain.onnx")
    with pytest.raises(OnnxError, match="has no rramfx metadata"):
        inspect_onnx(tmp_path / "plain.onnx")
    with pytest.raises(OnnxError, match="has no manifest.json"):
        run_partitioned(tmp_path, np.zeros(1, np.float32))
