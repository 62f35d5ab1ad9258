"""Issue 13, CLI and files side: bad flag values are refused at parse time (one line on stderr naming
the flag, exit code 2, no traceback, nothing written); output paths that cannot be written are refused
before the work starts, by the CLI and by the public functions that write; damaged or duplicated rows of
a sweep's results.json are a `ResultsFileError` naming the file, the row and the field.

Every case runs in a fresh folder (the test's cwd) holding only the fixtures of `_workspace`; after the
call the folder must hold exactly the same files."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

import rramfx
from rramfx.cli import main
from rramfx.crossbar.faults import FaultModel, FaultSet
from rramfx.errors import ArgumentError, ResultsFileError, SweepError
from rramfx.experiment.report import write_report

from .bad_inputs import BadInput, assert_model_unchanged, snapshot_model
from .tiny import TinyNet, loaders

#: Valid commands the bad flags are added to: each parses, so only the bad flag is reported.
_BASE = {
    "train": ["train", "--model", "resnet20", "--dataset", "synthetic", "--out", "out/m.pt"],
    "sweep": ["sweep", "--model", "resnet20", "--dataset", "synthetic", "--out", "out/sweep"],
    "evaluate": ["evaluate", "model.pt"],
    "export": ["export", "--model", "resnet20", "--out", "out/m.onnx"],
    "cost": ["cost", "resnet20"],
    "prepare": ["prepare", "--model", "resnet20"],
}

#: (kind, command, flag, bad value): each must be a usage error naming ``flag``.
_FLAGS = [
    ("count", "train", "--epochs", "-1"), ("count", "train", "--epochs", "0"), ("count", "train", "--epochs", "2.5"),
    ("count", "train", "--batch-size", "0"), ("count", "train", "--train-subset", "-5"),
    ("count", "train", "--test-subset", "x"), ("count", "train", "--in-chans", "0"),
    ("count", "export", "--in-chans", "0"), ("count", "prepare", "--num-classes", "0"),
    ("count", "sweep", "--trials", "0"), ("count", "sweep", "--trials", "-3"), ("count", "sweep", "--epochs", "-2"),
    ("count", "sweep", "--recal-batches", "0"), ("count", "sweep", "--workers", "0"),
    ("count", "sweep", "--threads", "-1"), ("count", "sweep", "--cpus-per-cell", "0"),
    ("count", "sweep", "--chips-per-cell", "0"),
    ("count", "sweep", "--batch-size", "-128"), ("count", "evaluate", "--trials", "0"),
    ("count", "evaluate", "--batch-size", "-1"), ("count", "evaluate", "--workers", "0"),
    ("count", "evaluate", "--recal-batches", "-1"), ("count", "export", "--opset", "0"),
    ("count", "export", "--cells-per-weight", "0"), ("count", "cost", "--chips", "0"),
    ("count", "cost", "--cells-per-weight", "-2"), ("count", "cost", "--num-classes", "ten"),
    ("seed", "train", "--seed", "-1"), ("seed", "sweep", "--chip-seed", "-2"), ("seed", "evaluate", "--seed", "x"),
    ("number", "train", "--lr", "0"), ("number", "train", "--lr", "-0.1"), ("number", "train", "--lr", "nan"),
    ("number", "train", "--weight-decay", "-1"), ("number", "train", "--width", "0"),
    ("number", "sweep", "--width", "inf"), ("number", "sweep", "--gpus-per-cell", "-1"),
    ("number", "cost", "--width", "-1"), ("number", "sweep", "--lr", "fast"),
    ("rate", "sweep", "--sa0-fraction", "5"), ("rate", "evaluate", "--sa0-fraction", "-0.1"),
    ("rate", "train", "--drop-rate", "1"), ("rate", "train", "--drop-rate", "-0.1"),
    ("rate", "prepare", "--drop-rate", "1.5"), ("rate", "prepare", "--fault-rate", "1.5"),
    ("rate", "export", "--sa1", "1"), ("rate", "export", "--sa0", "-0.2"), ("rate", "export", "--fault-rate", "nan"),
    ("list", "sweep", "--drop-rates", "0,,0.1"), ("list", "sweep", "--drop-rates", "0,1"),
    ("list", "sweep", "--drop-rates", "a,b"), ("list", "sweep", "--drop-rates", ""),
    ("list", "sweep", "--drop-rates", "0.1,0.1"), ("list", "sweep", "--fault-rates", "0.1;0.2"),
    ("list", "sweep", "--fault-rates", "0,0.1,"), ("list", "sweep", "--seeds", "0,-1"),
    ("list", "sweep", "--seeds", "0,1.5"), ("list", "sweep", "--seeds", "0,0"),
    ("list", "evaluate", "--fault-rates", "0,2"),
    ("shape", "export", "--input-size", "3,32"), ("shape", "export", "--input-size", "3,32,32,1"),
    ("shape", "export", "--input-size", "0,32,32"), ("shape", "export", "--input-size", "3,2,2"),
    ("shape", "export", "--input-size", "3,x,32"), ("shape", "cost", "--input-shape", "3,32"),
    ("shape", "cost", "--tile", "0x3"), ("shape", "export", "--tile", "128"),
    ("shape", "train", "--image-size", "2"), ("shape", "sweep", "--image-size", "0"),
    ("shape", "evaluate", "--image-size", "-32"),
    ("choice", "export", "--faults", "-1"), ("choice", "export", "--faults", "maybe"),
    ("choice", "train", "--dataset", "nosuch"), ("choice", "sweep", "--engine", "nope"),
]

#: (kind, argv, culprit): output paths that cannot be written ("afile" is a regular file).
_TRAIN, _SWEEP = _BASE["train"][:-1], _BASE["sweep"][:-1]  # without OUT
_PATHS = [
    ("output-path", [*_TRAIN, "afile/m.pt"], "--out 'afile/m.pt'"),
    ("output-path", [*_TRAIN, "."], "--out '.' is a folder"),
    ("output-path", [*_TRAIN, "/proc/m.pt"], "--out '/proc/m.pt'"),
    ("output-path", [*_SWEEP, "afile"], "--out 'afile' is a file"),
    ("output-path", [*_SWEEP, "afile/s"], "--out 'afile/s'"),
    ("output-path", ["export", "--model", "resnet20", "--out", "afile/m.onnx"], "--out 'afile/m.onnx'"),
    ("output-path", ["export", "--model", "resnet20", "--out", "."], "--out '.' is a folder"),
    ("output-path", ["export", "--model", "resnet20", "--out", "/proc/m.onnx"], "--out '/proc/m.onnx' is not writable"),
    ("output-path", ["partition", "missing.onnx", "afile/p"], "OUT_DIR 'afile/p'"),
    ("output-path", ["partition", "missing.onnx", "/proc/p"], "OUT_DIR '/proc/p' is not writable"),
]

#: Damaged results.json contents (each in res_<name>/ of the workspace) and what the error names.
_ROW = {"drop_rate": 0.1, "fault_rate": 0.2, "seed": 0, "accuracy": 0.8, "chip_std": 0.01}
_RESULTS = {
    "empty-list": ([], "no 'rows' list"),
    "dict-no-rows": ({"config": {}}, "no 'rows' list"),
    "string": ("results", "no 'rows' list"),
    "rows-a-dict": ({"rows": {"a": 1}}, "no 'rows' list"),
    "config-string": ({"config": "x", "rows": [_ROW]}, "field 'config'"),
    "row-a-list": ({"rows": [[0.1, 0.2, 0, 0.8]]}, "row 0 must be an object"),
    "accuracy-string": ({"rows": [{**_ROW, "accuracy": "80%"}]}, "row 0: field 'accuracy'"),
    "accuracy-over-1": ({"rows": [{**_ROW, "accuracy": 80.0}]}, "row 0: field 'accuracy'"),
    "accuracy-nan": ({"rows": [{**_ROW, "accuracy": float("nan")}]}, "row 0: field 'accuracy'"),
    "accuracy-bool": ({"rows": [{**_ROW, "accuracy": True}]}, "row 0: field 'accuracy'"),
    "seed-missing": ({"rows": [{k: v for k, v in _ROW.items() if k != "seed"}]}, "row 0: field 'seed'"),
    "seed-float": ({"rows": [{**_ROW, "seed": 0.5}]}, "row 0: field 'seed'"),
    "fault-rate-negative": ({"rows": [{**_ROW, "fault_rate": -0.1}]}, "row 0: field 'fault_rate'"),
    "chip-std-string": ({"rows": [{**_ROW, "chip_std": "x"}]}, "row 0: field 'chip_std'"),
    "duplicate": ({"rows": [_ROW, {**_ROW, "accuracy": 0.6}]}, "row 1 repeats row 0"),
    "duplicate-identical": ({"rows": [_ROW, {**_ROW, "seed": 1}, dict(_ROW)]}, "row 2 repeats row 0"),
}


def _prepared():
    return rramfx.prepare(TinyNet(), rramfx.Policy())


def _with_model(fn):
    """A call that builds a prepared TinyNet, runs ``fn(gm)`` and checks that ``gm`` is unchanged."""
    def call():
        gm = _prepared()
        before = snapshot_model(gm)
        try:
            fn(gm)
        finally:
            assert_model_unchanged(gm, before)
    return call


def _sweep_config():
    return rramfx.SweepConfig(model="resnet20", dataset="synthetic", drop_rates=(0.0,), fault_rates=(0.0,),
                              epochs=1, trials=1)


def _x():
    return next(iter(loaders(8, 8)[1]))[0][:2]


API_CASES = [
    BadInput("api-output-path", "export_onnx-under-file",
             _with_model(lambda gm: rramfx.export_onnx(gm, _x(), "afile/m.onnx")), ArgumentError, "'afile/m.onnx'"),
    BadInput("api-output-path", "export_onnx-folder",
             _with_model(lambda gm: rramfx.export_onnx(gm, _x(), ".")), ArgumentError,
             "export_onnx path '.' is a folder"),
    BadInput("api-output-path", "export_onnx-proc",
             _with_model(lambda gm: rramfx.export_onnx(gm, _x(), "/proc/m.onnx")), ArgumentError, "'/proc/m.onnx'"),
    BadInput("api-output-path", "partition_onnx-under-file", partial(rramfx.partition_onnx, "missing.onnx", "afile/p"),
             ArgumentError, "partition_onnx out_dir 'afile/p'"),
    BadInput("api-output-path", "sweep-out-is-file", partial(rramfx.sweep, _sweep_config(), "afile", log=None),
             SweepError, "sweep out_dir 'afile' is a file"),
    BadInput("api-output-path", "sweep-under-file", partial(rramfx.sweep, _sweep_config(), "afile/s", log=None),
             SweepError, "sweep out_dir 'afile/s'"),
    BadInput("api-output-path", "train-checkpoint-under-file",
             _with_model(lambda gm: rramfx.train(gm, loaders(64, 8)[0], 1, checkpoint="afile/c.pt", progress=False)),
             ArgumentError, "checkpoint 'afile/c.pt'"),
    BadInput("api-output-path", "train-checkpoint-folder",
             _with_model(lambda gm: rramfx.train(gm, loaders(64, 8)[0], 1, checkpoint=".", progress=False)),
             ArgumentError, "checkpoint '.' is a folder"),
    BadInput("api-output-path", "save_prepared-under-file",
             _with_model(lambda gm: rramfx.save_prepared("afile/m.pt", gm, model="tests.tiny:TinyNet")),
             ArgumentError, "save_prepared path 'afile/m.pt'"),
    BadInput("api-output-path", "faultset-save-proc",
             partial(lambda: FaultSet({}, FaultModel(sa1=0.1), 0).save("/proc/f.pt")), ArgumentError, "'/proc/f.pt'"),
    BadInput("api-output-path", "policy-save-under-file", partial(lambda: rramfx.Policy().save("afile/p.json")),
             ArgumentError, "Policy.save path 'afile/p.json'"),
    BadInput("api-output-path", "policy-save-not-a-path", partial(lambda: rramfx.Policy().save(5)),
             ArgumentError, "Policy.save path must be a file path"),
    *(BadInput("results-file", name, partial(write_report, f"res_{name}"), ResultsFileError,
               f"res_{name}/results.json") for name in _RESULTS),
    BadInput("results-file", "sweep-resume-config-string",
             partial(rramfx.sweep, _sweep_config(), "res_config-string", log=None), ResultsFileError,
             "res_config-string/results.json': field 'config'"),
]

CLI_CASES = [
    *(BadInput(f"cli-{kind}", f"{cmd}{flag}={value}", partial(main, [*_BASE[cmd], flag, value]), SystemExit,
               f"argument {flag}:") for kind, cmd, flag, value in _FLAGS),
    *(BadInput(kind, " ".join(argv[:1] + argv[-2:]), partial(main, argv), SystemExit, culprit)
      for kind, argv, culprit in _PATHS),
    *(BadInput("cli-results-file", f"report-{name}", partial(main, ["report", f"res_{name}"]), SystemExit,
               f"res_{name}/results.json") for name in ("empty-list", "accuracy-string", "duplicate")),
]

CASES = API_CASES + CLI_CASES


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """The test's cwd: ``afile`` (a regular file) and one results folder per `_RESULTS` case."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    for name, (content, _) in _RESULTS.items():
        (tmp_path / f"res_{name}").mkdir()
        (tmp_path / f"res_{name}" / "results.json").write_text(json.dumps(content))
    return tmp_path


def _files(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


@pytest.mark.parametrize("case", API_CASES, ids=lambda c: f"{c.kind}:{c.name}")
def test_api_refuses_before_writing(case: BadInput, workspace):
    before = _files(workspace)
    with pytest.raises(case.error) as info:
        case.call()
    message = str(info.value)
    assert case.culprit in message, message
    if case.name in _RESULTS:  # the field or row at fault, beside the file
        assert _RESULTS[case.name][1] in message, message
    assert _files(workspace) == before


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: f"{c.kind}:{c.name}")
def test_cli_refuses_in_one_line(case: BadInput, workspace, capsys):
    before = _files(workspace)
    try:
        code = case.call()
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert case.culprit in err, err
    assert _files(workspace) == before


def test_sa0_fraction_is_named_not_the_fault_model(workspace, capsys):
    """The issue's example: ``--sa0-fraction 5`` was reported as ``FaultModel.sa1 ... got -0.4``."""
    with pytest.raises(SystemExit):
        main([*_BASE["sweep"], "--sa0-fraction", "5"])
    err = capsys.readouterr().err
    assert err == ("rramfx sweep: error: argument --sa0-fraction: must be a fraction in [0, 1] such as 0.5, "
                   "got '5' (see rramfx sweep --help)\n")


def test_good_values_still_parse():
    """The flag types accept what the help shows: lists come back as tuples of numbers."""
    from rramfx.cli import build_parser

    args = build_parser().parse_args([*_BASE["sweep"], "--drop-rates", "0, 0.1,0.2", "--seeds", "0,1,2",
                                      "--sa0-fraction", "1", "--image-size", "8", "--recal-batches", "4"])
    assert args.drop_rates == (0.0, 0.1, 0.2) and args.seeds == (0, 1, 2)
    assert args.sa0_fraction == 1.0 and args.image_size == 8 and args.recal_batches == 4
    args = build_parser().parse_args([*_BASE["export"], "--input-size", "1,28,28", "--tile", "64x32", "--faults", "7"])
    assert args.input_size == (1, 28, 28) and args.tile == (64, 32) and args.faults == "7"
    args = build_parser().parse_args([*_BASE["evaluate"], "--recal-batches", "0", "--seed", "0"])
    assert args.recal_batches == 0 and args.seed == 0


def test_identical_rows_are_not_averaged_as_seeds(workspace):
    """A valid folder renders, and the same folder with one row repeated is refused (not averaged as a
    second training seed: summary would say seeds=2 and a zero seed spread)."""
    rows = [{**_ROW, "seed": s, "accuracy": a} for s, a in ((0, 0.8), (1, 0.6))]
    (workspace / "ok").mkdir()
    (workspace / "ok" / "results.json").write_text(json.dumps({"config": {}, "rows": rows}))
    paths = write_report(workspace / "ok")
    assert "70.00" in paths["markdown"].read_text()
    (workspace / "ok" / "results.json").write_text(json.dumps({"config": {}, "rows": [*rows, rows[0]]}))
    with pytest.raises(ResultsFileError, match=r"row 2 repeats row 0 \(drop_rate 0.1, fault_rate 0.2, seed 0\)"):
        write_report(workspace / "ok")


def test_case_counts():
    """The table's size by kind (reported in the issue's closing note)."""
    kinds: dict[str, int] = {}
    for c in CASES:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    assert kinds["results-file"] == len(_RESULTS) + 1 and kinds["output-path"] == len(_PATHS)
    assert sum(kinds.values()) == len(_FLAGS) + len(_PATHS) + 3 + len(API_CASES)
