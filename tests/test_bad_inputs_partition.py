"""Issue 13, partitions: the manifest records each segment's sha256; a missing, truncated or changed
segment, or a malformed manifest, is an OnnxFileError naming the file before onnxruntime runs."""

import json

import numpy as np
import pytest
import torch

import rramfx
from rramfx.errors import OnnxFileError
from rramfx.onnx import export_onnx
from rramfx.onnx.partition import partition_onnx, run_partitioned
from rramfx.policy import Policy

from .conftest import SmallNet


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_parts")
    torch.manual_seed(0)
    gm = rramfx.prepare(SmallNet().eval(), Policy(drop_rate=0.1, fault_rate=0.05)).eval()
    path = export_onnx(gm, torch.randn(2, 3, 32, 32), d / "small.onnx")
    plan = partition_onnx(path, d / "parts")
    return d / "parts", [s.file for s in plan.segments]


def _copy(parts, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    for f in parts.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def test_manifest_records_sha256_and_damage_is_named(parts, tmp_path):
    src, files = parts
    x = np.zeros((2, 3, 32, 32), np.float32)
    manifest = json.loads((src / "manifest.json").read_text())
    assert sorted(manifest["sha256"]) == sorted(files) and all(len(v) == 64 for v in manifest["sha256"].values())
    assert run_partitioned(src, x)[0].shape == (2, 10)
    out = _copy(src, tmp_path)
    (out / files[0]).unlink()
    with pytest.raises(OnnxFileError, match=f"segment '.*{files[0]}' named in .* is missing"):
        run_partitioned(out, x)
    out.joinpath(files[0]).write_bytes((src / files[0]).read_bytes()[:100])
    with pytest.raises(OnnxFileError, match=f"segment '.*{files[0]}' does not match the sha256"):
        run_partitioned(out, x)


@pytest.mark.parametrize("text", [b"\xff\xfe not utf-8", b"{not json", b'{"format": "x"}', b"[1, 2]",
                                  b'{"segments": [{"file": "a.onnx"}], "sha256": 5}'])
def test_malformed_manifest_is_an_onnx_file_error(parts, tmp_path, text):
    out = _copy(parts[0], tmp_path)
    (out / "manifest.json").write_bytes(text)
    with pytest.raises(OnnxFileError, match="manifest.json"):
        run_partitioned(out, np.zeros((2, 3, 32, 32), np.float32))
