"""``rramfx export``, ``rramfx partition`` and ``rramfx inspect`` from the command line."""

import json

import numpy as np
import onnx
import pytest
import torch

import rramfx
from rramfx.cli import main
from rramfx.onnx.meta import model_meta, node_meta
from rramfx.onnx.partition import run_partitioned

from .conftest import SmallNet

SPEC = "tests.conftest:SmallNet"


def test_export_partition_inspect(tmp_path, capsys):
    policy = tmp_path / "p.toml"
    policy.write_text('drop_rate = 0.2\nfault_rate = 0.1\n\n[overrides]\n"pw" = "rram"\n')
    out = tmp_path / "small.onnx"
    assert main(["export", "--model", SPEC, "--num-classes", "4", "--policy", str(policy), "--out", str(out),
                 "--faults", "inputs", "--input-size", "3,16,16", "--tile", "64x64"]) == 0
    assert "4 RRAM layers, fault mode inputs, input 3x16x16" in capsys.readouterr().out
    meta = model_meta(onnx.load(out))
    assert meta["placement"]["pw"] == "rram" and meta["policy"]["fault_rate"] == 0.1
    assert meta["faults"]["fault_model"] == {"kind": "stuck_at", "sa1": 0.1, "sa0": 0.0}  # SA1 defaults to p'
    assert meta["tile"] == "64x64"

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fault mode inputs (stuck_at" in text and "weighted layers: 4 rram" in text and "% on rram" in text
    assert main(["inspect", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"] == {"rram": 4, "cpu": 2} and 0.8 < data["rram_mac_share"] < 1

    parts = tmp_path / "parts"
    assert main(["partition", str(out), str(parts)]) == 0
    assert f"wrote {len(data['segments'])} segments and manifest.json" in capsys.readouterr().out
    manifest = json.loads((parts / "manifest.json").read_text())
    assert [s["device"] for s in manifest["segments"]] == [s["device"] for s in data["segments"]]
    feed = {"x": np.ones((2, 3, 16, 16), np.float32)}
    feed.update({t["name"]: np.zeros(t["shape"], np.uint8) for t in manifest["inputs"] if t["role"] == "fault_codes"})
    assert run_partitioned(parts, feed)[0].shape == (2, 4)


def test_export_with_a_baked_chip(tmp_path, capsys):
    out = tmp_path / "chip.onnx"
    assert main(["export", "--model", SPEC, "--out", str(out), "--faults", "7", "--sa1", "0.2", "--sa0", "0.05",
                 "--input-size", "3,16,16", "--fault-rate", "0.2"]) == 0
    assert "fault mode baked (seed 7)" in capsys.readouterr().out
    meta = model_meta(onnx.load(out))
    assert meta["fault_mode"] == "baked" and meta["faults"]["seed"] == 7
    assert meta["faults"]["fault_model"] == {"kind": "stuck_at", "sa1": 0.2, "sa0": 0.05}
    counts = meta["faults"]["counts"]
    cells = 16 * 3 * 9 + 16 * 9 + 32 * 8 * 9
    assert sum(counts.values()) == cells and 0.1 < counts["SA1"] / cells < 0.3


def test_export_and_cost_count_the_same_tiles(tmp_path, capsys):
    """`rramfx export` and `rramfx cost` parse --tile/--cells-per-weight alike: the same tiles per layer."""
    hw = ["--tile", "16x16", "--cells-per-weight", "2"]
    out = tmp_path / "small.onnx"
    assert main(["export", "--model", SPEC, "--out", str(out), "--input-size", "3,8,8", *hw]) == 0
    assert main(["cost", SPEC, "--input-shape", "3,8,8", "--json", *hw]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after export's "wrote ..." line
    costed = {c["path"]: c["tiles"] for c in report["layers"] if c["device"] == "rram"}
    model = onnx.load(out)
    exported = {m["module"]: json.loads(m["crossbar"])["tiles"]
                for n in model.graph.node for m in [node_meta(n)] if "crossbar" in m}
    assert exported == costed == {"stem": 4, "dw": 16, "grouped": 20}
    assert model_meta(model)["hardware"]["cells_per_weight"] == 2 and report["hardware"]["cells_per_weight"] == 2
    with pytest.raises(SystemExit, match="2"):  # a usage error, at parse time
        main(["export", "--model", SPEC, "--out", str(out), "--tile", "16x0"])
    assert "argument --tile: must be two positive integers like 128x128, got '16x0'" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(rramfx, "save_prepared"), reason="rramfx.save_prepared not present")
def test_export_a_trained_model_file(tmp_path, capsys):
    torch.manual_seed(0)
    gm = rramfx.prepare(SmallNet(num_classes=4), rramfx.Policy(drop_rate=0.2, fault_rate=0.1))
    with torch.no_grad():
        gm.get_submodule("stem").weight.mul_(2)  # weights that a fresh model would not have
    rramfx.save_prepared(tmp_path / "m.pt", gm, model=SPEC, model_kwargs={"num_classes": 4})
    out = tmp_path / "m.onnx"
    assert main(["export", "--trained", str(tmp_path / "m.pt"), "--fault-rate", "0.2", "--out", str(out),
                 "--input-size", "3,16,16", "--no-prescale"]) == 0
    model = onnx.load(out)
    meta = model_meta(model)
    assert meta["policy"]["fault_rate"] == 0.2 and meta["policy"]["drop_rate"] == 0.2
    stem = next(node_meta(n) for n in model.graph.node if node_meta(n).get("module") == "stem")
    assert float(stem["fault_rate"]) == 0.2
    weight = next(i for i in model.graph.initializer if i.name == "stem.weight")
    assert np.array_equal(onnx.numpy_helper.to_array(weight), gm.get_submodule("stem").weight.detach().numpy())
    assert main(["export", "--trained", str(tmp_path / "m.pt"), "--model", SPEC, "--out", str(out)]) == 2
    assert "--trained takes the model, its weights and its policy from the file" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["inspect", "/nonexistent/m.onnx"], "ONNX file '/nonexistent/m.onnx' does not exist"),
    (["partition", "/nonexistent/m.onnx", "out"], "ONNX file '/nonexistent/m.onnx' does not exist"),
    (["export", "--model", "timm:resnet1", "--out", "x.onnx"], "unknown timm model 'timm:resnet1'"),
    (["export", "--model", SPEC, "--out", "x.onnx", "--faults", "some"], "argument --faults: must be 'inputs'"),
    (["export", "--model", SPEC, "--out", "x.onnx", "--input-size", "3,a"], "argument --input-size: must be C,H,W"),
    (["export", "--model", SPEC, "--out", "x.onnx", "--faults", "3"], "the fault model draws no faults"),
    (["export", "--out", "x.onnx"], "give --model SPEC"),
    (["export", "--trained", "nope.pt", "--out", "x.onnx"], "model file 'nope.pt' does not exist"),
])
def test_errors_are_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as e:  # a bad flag value is argparse's usage error, as one line too
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_an_onnx_file_without_rramfx_metadata(tmp_path, capsys):
    plain = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    onnx.save(plain, tmp_path / "plain.onnx")
    for argv in (["inspect", str(tmp_path / "plain.onnx")], ["partition", str(tmp_path / "plain.onnx"), "o"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "has no rramfx metadata" in err and "rramfx export" in err and err.count("\n") == 1
    (tmp_path / "junk.onnx").write_text("not a model")
    assert main(["inspect", str(tmp_path / "junk.onnx")]) == 2
    assert "is not a readable ONNX model" in capsys.readouterr().err
