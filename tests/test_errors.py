"""One exception hierarchy: every class in rramfx/errors.py and exported, one type per kind of mistake
wherever it is checked, messages that name the argument, and old ``except`` clauses still catching."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import pytest
import torch

import rramfx
import rramfx.errors as E
from rramfx.cost.estimate import CostReport

from .tiny import TinyNet, loaders

ROOT = Path(__file__).resolve().parents[1]
FM = rramfx.FaultModel(sa1=0.2)
X = torch.randn(2, 1, 12, 12)

ERROR_CLASSES = sorted((obj for obj in vars(E).values()
                        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == E.__name__),
                       key=lambda c: c.__name__)


@pytest.fixture(scope="module")
def data():
    return loaders(n_train=64, n_test=32)[1]


@pytest.fixture(scope="module")
def prepared():
    torch.manual_seed(0)
    return rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=0.1)).eval()


# ---- (a) where the classes live ------------------------------------------------------------------


def test_every_error_class_is_a_rramfx_error_exported_from_errors_and_the_root():
    assert len(ERROR_CLASSES) >= 20
    for cls in ERROR_CLASSES:
        assert issubclass(cls, rramfx.RramfxError), cls
        assert cls.__name__ in E.__all__, f"{cls.__name__} missing from rramfx.errors.__all__"
        assert cls.__name__ in rramfx.__all__, f"{cls.__name__} missing from rramfx.__all__"
        assert getattr(rramfx, cls.__name__) is cls
        assert cls.__doc__ and len(cls.__doc__.split()) >= 8, f"{cls.__name__} needs a docstring saying when"
    assert sorted(E.__all__) == sorted(c.__name__ for c in ERROR_CLASSES)


def test_every_exception_class_of_the_public_api_comes_from_errors():
    for name in rramfx.__all__:
        obj = getattr(rramfx, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert obj.__module__ == "rramfx.errors", name


@pytest.mark.parametrize(("module", "name"), [
    ("rramfx.training.loop", "TrainError"), ("rramfx.training", "TrainError"),
    ("rramfx.onnx.meta", "OnnxError"), ("rramfx.onnx", "OnnxError"),
    ("rramfx.search.layer_sensitivity", "SensitivityError"), ("rramfx.search", "SensitivityError"),
    ("rramfx.experiment.report", "ReportError"), ("rramfx.experiment.grid", "SweepError"),
    ("rramfx.experiment", "SweepError"), ("rramfx.models.spec", "ModelSpecError"),
    ("rramfx.data.datasets", "DataError"), ("rramfx.data", "DataError"),
])
def test_old_homes_still_export_the_same_class(module, name):
    mod = __import__(module, fromlist=[name])
    assert getattr(mod, name) is getattr(E, name)


def test_builtin_bases_keep_old_except_clauses_working():
    assert issubclass(E.ArgumentError, ValueError)
    assert issubclass(E.ArgumentTypeError, TypeError) and issubclass(E.ArgumentTypeError, E.ArgumentError)
    for cls in (E.PolicyError, E.FaultError, E.CostError, E.SweepError, E.SensitivityError, E.ModelSpecError,
                E.DataError):
        assert issubclass(cls, E.ArgumentError), cls  # settings and stage inputs: ArgumentErrors, ValueErrors
    for old in (TypeError, E.PlacementError, E.CostError):  # what "not prepared" raised before
        assert issubclass(E.NotPreparedError, old)
    for cls, old in ((E.PolicyFileError, E.PolicyError), (E.FaultSetFileError, E.FaultError),
                     (E.ModelFileError, E.TrainError), (E.OnnxFileError, E.OnnxError),
                     (E.ResultsFileError, E.ReportError), (E.ResultsFileError, E.SweepError),
                     (E.DataFileError, E.DataError)):
        assert issubclass(cls, E.FileFormatError) and issubclass(cls, old) and issubclass(cls, ValueError)
    assert issubclass(E.UnknownLayerError, KeyError)


# ---- (b) one type per kind of mistake ------------------------------------------------------------


def _unprepared_calls(data):
    m = TinyNet()
    return {
        "monte_carlo": lambda: rramfx.monte_carlo(m, data, FM, trials=2),
        "sensitivity": lambda: rramfx.sensitivity(m, data, FM, trials=2),
        "search_placement": lambda: rramfx.search_placement(m, data, 0.05, FM, trials=2),
        "recalibrate_bn": lambda: rramfx.recalibrate_bn(m, data, 0.1),
        "estimate_cost": lambda: rramfx.estimate_cost(m, X),
        "export_onnx": lambda: rramfx.export_onnx(m, X, "never-written.onnx"),
        "placement": lambda: rramfx.placement(m),
        "summary": lambda: rramfx.summary(m),
        "crossbar_layers": lambda: rramfx.crossbar_layers(m),
        "set_drop_rate": lambda: rramfx.set_drop_rate(m, 0.1),
        "inject_faults": lambda: rramfx.inject_faults(m, FM),
        "assign_devices": lambda: rramfx.passes.assign_devices(m, rramfx.Policy()),
        "to_crossbar": lambda: rramfx.passes.to_crossbar(m, rramfx.Policy()),
    }


def test_an_unprepared_module_is_a_not_prepared_error_everywhere(data):
    for name, call in _unprepared_calls(data).items():
        with pytest.raises(E.NotPreparedError, match=r"\bgm\b") as err:
            call()
        assert type(err.value) is E.NotPreparedError, name
        assert "TinyNet" in str(err.value), name


def test_a_traced_but_unprepared_graph_is_a_not_prepared_error(data):
    gm = rramfx.trace(TinyNet())
    for call in (lambda: rramfx.estimate_cost(gm, X), lambda: rramfx.export_onnx(gm, X, "never-written.onnx"),
                 lambda: rramfx.sensitivity(gm, data, FM, trials=2), lambda: rramfx.placement(gm)):
        with pytest.raises(E.NotPreparedError, match="no rramfx 'placement' record.*rramfx"):
            call()


def test_not_prepared_is_still_caught_by_the_documented_old_types(data):
    m = TinyNet()
    with pytest.raises(TypeError, match="prepared torch.fx.GraphModule"):
        rramfx.monte_carlo(m, data, FM)
    with pytest.raises(TypeError, match="prepared torch.fx.GraphModule"):
        rramfx.sensitivity(m, data, FM)
    with pytest.raises(rramfx.CostError, match=r"rramfx.prepare\(model, policy\)"):  # docs/cost-model.md
        rramfx.estimate_cost(m, X)
    with pytest.raises(rramfx.PlacementError, match="rramfx.prepare"):
        rramfx.placement(m)
    with pytest.raises(rramfx.PlacementError, match="rramfx.prepare"):
        rramfx.export_onnx(m, X, "never-written.onnx")


def _same_type(calls, expected, needle):
    types = set()
    for call in calls:
        with pytest.raises(expected, match=needle) as err:
            call()
        types.add(type(err.value))
    assert types == {expected}, types


def test_bad_trials_seed_and_fault_model_give_one_type(prepared, data):
    pytest.importorskip("onnxruntime")
    missing = "never-written.onnx"  # the arguments are checked before the file is read
    _same_type([lambda: rramfx.monte_carlo(prepared, data, FM, trials=0),
                lambda: rramfx.sensitivity(prepared, data, FM, trials=0),
                lambda: rramfx.search_placement(prepared, data, 0.05, FM, trials=0),
                lambda: rramfx.ort_monte_carlo(missing, X, FM, trials=0)],
               E.ArgumentError, "trials must be a positive int, got 0")
    _same_type([lambda: rramfx.monte_carlo(prepared, data, FM, trials=1, seed=-1),
                lambda: rramfx.sensitivity(prepared, data, FM, trials=1, seed=-1),
                lambda: rramfx.inject_faults(prepared, FM, seed=-1),
                lambda: rramfx.ort_monte_carlo(missing, X, FM, trials=1, seed=-1)],
               E.ArgumentError, "seed must be a non-negative int, got -1")
    _same_type([lambda: rramfx.monte_carlo(prepared, data, 0.1),
                lambda: rramfx.sensitivity(prepared, data, 0.1),
                lambda: rramfx.inject_faults(prepared, 0.1),
                lambda: rramfx.ort_monte_carlo(missing, X, 0.1)],
               E.ArgumentTypeError, "fault_model must be an rramfx.FaultModel, got float")
    with pytest.raises(ValueError):  # old `except ValueError` clauses still catch them
        rramfx.monte_carlo(prepared, data, FM, trials=0)


def test_a_bad_rate_is_an_argument_error_wherever_it_is_checked(prepared, data):
    _same_type([lambda: rramfx.set_drop_rate(prepared, 1.0)], E.ArgumentError, r"drop_rate must be in \[0, 1\)")
    _same_type([lambda: rramfx.set_fault_rate(prepared, 1.5),
                lambda: rramfx.monte_carlo(prepared, data, FM, trials=1, fault_rate=1.5),
                lambda: rramfx.sensitivity(prepared, data, FM, trials=1, fault_rate=1.5),
                lambda: rramfx.recalibrate_bn(prepared, data, 1.5)],
               E.ArgumentError, r"fault_rate must be in \[0, 1\), got 1.5")
    # settings objects raise their own type for their fields, an ArgumentError too (`except PolicyError`)
    for call, own, needle in ((lambda: rramfx.Policy(drop_rate=1.0), E.PolicyError, "Policy.drop_rate"),
                              (lambda: rramfx.Policy(fault_rate=1.5), E.PolicyError, "Policy.fault_rate"),
                              (lambda: rramfx.SweepConfig(drop_rates=[1.0]), E.SweepError, "SweepConfig.drop_rates"),
                              (lambda: rramfx.FaultModel(sa1=1.5), E.FaultError, "FaultModel.sa1")):
        with pytest.raises(E.ArgumentError, match=needle) as err:
            call()
        assert isinstance(err.value, own)


def test_an_object_of_the_wrong_class_is_an_argument_type_error(prepared, data):
    traced = rramfx.trace(TinyNet())
    for call, needle in ((lambda: rramfx.prepare(TinyNet(), 0.2), "policy must be an rramfx.Policy"),
                         (lambda: rramfx.passes.assign_devices(traced, 0.2), "policy must be an rramfx.Policy"),
                         (lambda: rramfx.passes.to_crossbar(prepared, 0.2), "policy must be an rramfx.Policy"),
                         (lambda: rramfx.prepare("resnet18"), "model must be an nn.Module"),
                         (lambda: rramfx.trace("resnet18"), "model must be an nn.Module"),
                         (lambda: rramfx.sweep("config", "out"), "config must be an rramfx.SweepConfig"),
                         (lambda: rramfx.apply_faults(prepared, "chip"), "faults must be an rramfx.FaultSet"),
                         (lambda: rramfx.estimate_cost(prepared, X, hardware={}), "hardware must be"),
                         (lambda: rramfx.export_onnx(prepared, "x", "never-written.onnx"), "example_inputs must be"),
                         (lambda: rramfx.evaluate(prepared, [X]), "loader must yield"),
                         (lambda: rramfx.passes.compose(3), "argument 1 is a int")):
        with pytest.raises(E.ArgumentTypeError, match=needle) as err:
            call()
        assert type(err.value) is E.ArgumentTypeError and isinstance(err.value, TypeError)


def test_bad_values_of_stage_arguments_are_argument_errors(prepared, data):
    traced = rramfx.trace(TinyNet())
    for call, needle in ((lambda: rramfx.train(prepared, data, -1), "epochs must be"),
                         (lambda: rramfx.train(prepared, data, 1, lr=0), "lr must be"),
                         (lambda: rramfx.passes.widen_channels(traced, 0.5, X), "factor must be"),
                         (lambda: rramfx.export_onnx(prepared, X, "never-written.onnx", tile=(0, 1)), r"tile\[0\]"),
                         (lambda: rramfx.recalibrate_bn(prepared, data, 0.1, batches=0), "batches must be"),
                         (lambda: rramfx.evaluate(prepared, []), "loader yielded no samples"),
                         (lambda: rramfx.monte_carlo(prepared, [], FM, trials=1, fault_rate=0.2),
                          "loader yielded no samples")):
        with pytest.raises(E.ArgumentError, match=needle) as err:
            call()
        assert type(err.value) is E.ArgumentError


def test_unreadable_files_are_file_format_errors_of_their_old_type(tmp_path):
    missing = tmp_path / "missing"
    for call, old in ((lambda: rramfx.Policy.from_file(missing.with_suffix(".toml")), E.PolicyError),
                      (lambda: rramfx.FaultSet.load(missing.with_suffix(".pt")), E.FaultError),
                      (lambda: rramfx.load_prepared(missing.with_suffix(".pt")), E.TrainError),
                      (lambda: rramfx.write_report(missing), E.ReportError),
                      (lambda: rramfx.data.read_idx(missing), E.DataError)):
        with pytest.raises(E.FileFormatError, match="missing") as err:
            call()
        assert isinstance(err.value, old)
    pytest.importorskip("onnx")
    with pytest.raises(E.OnnxFileError, match="does not exist"):
        rramfx.inspect_onnx(missing.with_suffix(".onnx"))


def test_a_layer_a_report_does_not_hold_is_a_key_error(prepared):
    report = rramfx.estimate_cost(prepared, X)
    assert isinstance(report, CostReport)
    with pytest.raises(KeyError, match="nope") as err:
        report["nope"]
    assert type(err.value) is E.UnknownLayerError


# ---- (d) no exception class outside rramfx/errors.py ---------------------------------------------


def _sources():
    return [p for base in (ROOT / "rramfx", ROOT / "passes") for p in sorted(base.rglob("*.py"))
            if not any(part.is_symlink() for part in [p, *p.parents])]


def test_no_module_but_errors_defines_an_exception_class():
    bad = []
    for path in _sources():
        if path == ROOT / "rramfx" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
    assert not bad, "exception classes belong in rramfx/errors.py:\n" + "\n".join(bad)


#: Builtin exceptions a module may still raise: interpreter protocol, not a user's mistake.
_ALLOWED_BUILTINS = {"SystemExit", "NotImplementedError", "StopIteration", "KeyboardInterrupt"}


def test_no_module_raises_a_bare_builtin_exception():
    """A check on user input raises an rramfx type (subclassing the builtin where it replaced one)."""
    builtin = {name for name, obj in vars(builtins).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException)} - _ALLOWED_BUILTINS
    bad = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in builtin:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} raise {exc.id}")
    assert not bad, "raise an rramfx.errors type instead:\n" + "\n".join(bad)
