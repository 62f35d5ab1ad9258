"""Issue 13, files: checked torch files (format, version, sha256 over the payload) refuse damaged,
truncated and foreign files with the stage's error naming the file; legacy files without a checksum
still load; fault sets refuse codes their fault model does not know."""

import io

import pytest
import torch

import rramfx
from rramfx.crossbar.faults import FaultModel, FaultSet, fault_model_from_dict
from rramfx.errors import FaultError, FaultSetFileError, FileFormatError, ModelFileError
from rramfx.files import load_checked_torch, save_checked_torch
from rramfx.training.saved import load_prepared, save_prepared

from .tiny import TinyNet


def _chip():
    return FaultSet({"conv1": torch.tensor([[0, 1], [2, 0]], dtype=torch.uint8)}, FaultModel(sa1=0.1, sa0=0.1), 3)


def test_checked_torch_round_trip_and_damage(tmp_path):
    path = save_checked_torch(tmp_path / "x.pt", "rramfx.Test", 2, {"w": torch.arange(6.0)})
    version, payload = load_checked_torch(path, "rramfx.Test")
    assert version == 2 and torch.equal(payload["w"], torch.arange(6.0))
    record = torch.load(path, weights_only=True)
    raw = bytearray(record["payload"])
    raw[-30] ^= 0xFF  # one flipped byte inside the payload
    record["payload"] = bytes(raw)
    torch.save(record, path)
    with pytest.raises(FileFormatError, match="x.pt' fails its checksum"):
        load_checked_torch(path, "rramfx.Test")
    data = (tmp_path / "x.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="t.pt' is not a readable rramfx.Test file, or it is truncated"):
        load_checked_torch(tmp_path / "t.pt", "rramfx.Test")
    with pytest.raises(FileFormatError, match=r"x.pt' is not an rramfx.Other file \(format 'rramfx.Test'\)"):
        save_checked_torch(path, "rramfx.Test", 2, {})
        load_checked_torch(path, "rramfx.Other")


def test_fault_set_round_trip_and_legacy_file(tmp_path):
    chip = _chip()
    loaded = FaultSet.load(chip.save(tmp_path / "c.pt"))
    assert torch.equal(loaded["conv1"], chip["conv1"]) and loaded.seed == 3
    buf = io.BytesIO()  # a file written before checksums
    torch.save({"format": "rramfx.FaultSet/1", "fault_model": chip.fault_model.to_dict(), "seed": 3,
                "codes": {"conv1": chip["conv1"]}}, buf)
    (tmp_path / "old.pt").write_bytes(buf.getvalue())
    assert torch.equal(FaultSet.load(tmp_path / "old.pt")["conv1"], chip["conv1"])


@pytest.mark.parametrize("codes, needle", [
    (torch.tensor([0.0, 1.0]), "integer fault codes, got dtype torch.float32"),
    (torch.tensor([0, -1]), r"fault codes \[-1\]"),
    (torch.tensor([0, 7]), r"fault codes \[7\]; valid codes: \[0, 1, 2\]"),
    ([0, 1], "must be a tensor of fault codes"),
])
def test_fault_set_refuses_bad_codes(codes, needle, tmp_path):
    with pytest.raises(rramfx.ArgumentError, match=needle) as info:
        FaultSet({"conv1": codes}, FaultModel(sa1=0.1), 0)
    assert "conv1" in str(info.value)
    record = {"format": "rramfx.FaultSet/1", "fault_model": {"kind": "stuck_at", "sa1": 0.1, "sa0": 0.0},
              "seed": 0, "codes": {"conv1": codes}}
    if isinstance(codes, torch.Tensor):
        torch.save(record, tmp_path / "bad.pt")
        with pytest.raises(FaultSetFileError, match="bad.pt'.*conv1"):
            FaultSet.load(tmp_path / "bad.pt")


def test_fault_set_with_a_bad_fault_model_is_a_file_error(tmp_path):
    torch.save({"format": "rramfx.FaultSet/1", "fault_model": {"kind": "stuck_at", "bogus": 1}, "seed": 0,
                "codes": {}}, tmp_path / "f.pt")
    with pytest.raises(FaultSetFileError, match="does not take these fields"):
        FaultSet.load(tmp_path / "f.pt")
    with pytest.raises(FaultError, match="unknown fault model kind"):
        fault_model_from_dict({"kind": ["x"]})


def test_model_file_of_another_model_is_refused(tmp_path):
    gm = rramfx.prepare(TinyNet(), rramfx.Policy())
    path = save_prepared(tmp_path / "m.pt", gm, model="resnet20", model_kwargs={"num_classes": 10})
    with pytest.raises(ModelFileError, match="m.pt' .*does not fit this model.*nothing was loaded"):
        load_prepared(path)
    with pytest.raises(ModelFileError, match="m.pt' .*does not fit this model"):
        load_prepared(path, model=TinyNet(num_classes=7))
    gm2, _ = load_prepared(path, model=TinyNet())
    assert all(torch.equal(a, b) for a, b in zip(gm.state_dict().values(), gm2.state_dict().values(), strict=True))


def test_cli_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    from rramfx.cli import main

    bad = tmp_path / "p.json"
    bad.write_bytes(b"\xff\xfe{")
    assert main(["prepare", "--model", "resnet20", "--policy", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "p.json' is not UTF-8" in err and "Traceback" not in err
    with pytest.raises(rramfx.errors.PolicyFileError, match="not UTF-8"):
        main(["--debug", "prepare", "--model", "resnet20", "--policy", str(bad)])
