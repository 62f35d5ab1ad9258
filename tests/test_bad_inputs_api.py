"""Issue 13: bad arguments to the public Python API, one table row per bad input with its ``kind``.

Each case must raise its error type with the culprit named in the message, before anything changes:
every model the cases use (state_dict tensors, training flags, module names) and every example tensor
is compared before and after. ``python -m tests.count_bad_inputs`` counts the rows per kind.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import rramfx
from rramfx.errors import (
    ArgumentError,
    ArgumentTypeError,
    DataError,
    FaultError,
    PlacementError,
    PolicyError,
)
from tests.bad_inputs import BadInput, assert_model_unchanged, snapshot_model
from tests.tiny import TinyNet

X = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))


@functools.cache
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(in_chans=1).train()


@functools.cache
def prepared() -> torch.fx.GraphModule:
    return rramfx.prepare(model(), example_inputs=X).eval()


@functools.cache
def export(tmp: str, faults: str | None = None) -> str:
    return str(rramfx.export_onnx(prepared(), X, f"{tmp}/m_{faults}.onnx", faults=faults))


@functools.cache
def partition(tmp: str) -> str:
    rramfx.partition_onnx(export(tmp), f"{tmp}/part")
    return f"{tmp}/part"


class NoWeights(nn.Module):
    def forward(self, x):
        return x * 2


def _tmp() -> str:
    return _TMP[0]


_TMP: list[str] = []
FM = rramfx.FaultModel(sa1=0.1, sa0=0.05)
F32 = np.zeros((2, 1, 12, 12), np.float32)
CODES = torch.zeros(8, 1, 3, 3, dtype=torch.uint8)


def _prep(x=X, **kw):
    return lambda: rramfx.prepare(model(), example_inputs=x, **kw)


def _ort(data):
    return lambda: rramfx.ort_monte_carlo(export(_tmp(), "inputs"), data, FM, trials=1, progress=False)


def _fault_set(codes):
    return lambda: rramfx.FaultSet({"conv1": codes}, FM, 0)


CASES: list[BadInput] = [
    # example inputs of prepare / trace / export_onnx
    BadInput("example-input", "unbatched", _prep(X[0]), ArgumentError, "batch dimension"),
    BadInput("example-input", "rank-5", _prep(X[None]), ArgumentError, "(N, 1, H, W)"),
    BadInput("example-input", "channels", _prep(torch.randn(2, 3, 12, 12)), ArgumentError, "in_channels=1"),
    BadInput("example-input", "float64", _prep(X.double()), ArgumentError, "torch.float64"),
    BadInput("example-input", "int64", _prep(X.long()), ArgumentError, "torch.int64"),
    BadInput("example-input", "numpy", _prep(F32), ArgumentTypeError, "example_inputs"),
    BadInput("example-input", "nested-list", _prep([[1.0]]), ArgumentError, "example_inputs"),
    BadInput("example-input", "trace-channels", lambda: rramfx.trace(model(), example_inputs=torch.randn(2, 2, 12, 12)),
             ArgumentError, "in_channels=1"),
    BadInput("example-input", "export-channels",
             lambda: rramfx.export_onnx(prepared(), torch.randn(2, 3, 12, 12), f"{_tmp()}/x.onnx"),
             ArgumentError, "in_channels=1"),
    BadInput("example-input", "export-float64",
             lambda: rramfx.export_onnx(prepared(), X.double(), f"{_tmp()}/x.onnx"), ArgumentError, "float64"),
    # a bare string, a number or an instance where a list of targets is expected
    BadInput("target-list", "leaf-str", _prep(leaf_modules="Conv2d"), ArgumentTypeError, "leaf_modules"),
    BadInput("target-list", "leaf-int", _prep(leaf_modules=[5]), ArgumentTypeError, "got 5"),
    BadInput("target-list", "leaf-instance", _prep(leaf_modules=[nn.ReLU()]), ArgumentTypeError, "ReLU()"),
    BadInput("target-list", "trace-leaf-class", lambda: rramfx.trace(model(), leaf_modules=nn.ReLU),
             ArgumentTypeError, "leaf_modules"),
    BadInput("target-list", "bottleneck-float", lambda: rramfx.Policy(bottleneck=[1.5]), PolicyError, "1.5"),
    BadInput("target-list", "pad-int", lambda: rramfx.Policy(pad_1x1=5), PolicyError, "pad_1x1"),
    BadInput("target-list", "sensitivity-layers-int",
             lambda: rramfx.sensitivity(prepared(), [(X, torch.zeros(2, dtype=torch.long))], FM, layers=5,
                                        progress=False),
             ArgumentError, "layers"),
    BadInput("target-list", "providers-str",
             lambda: rramfx.run_partitioned(partition(_tmp()), F32, providers="CPUExecutionProvider"),
             ArgumentError, "['CPUExecutionProvider']"),
    BadInput("target-list", "ort-providers-str",
             lambda: rramfx.ort_monte_carlo(export(_tmp(), "inputs"), F32, FM, trials=1, progress=False,
                                            providers="CPUExecutionProvider"),
             ArgumentError, "providers"),
    # widening bounds, refused by Policy before any work
    BadInput("widen", "1000", lambda: rramfx.Policy(widen=1000), PolicyError, "[1, 16]"),
    BadInput("widen", "half", lambda: rramfx.Policy(widen=0.5), PolicyError, "[1, 16]"),
    BadInput("widen", "nan", lambda: rramfx.Policy(widen=float("nan")), PolicyError, "Policy.widen"),
    BadInput("widen", "divisor-0", lambda: rramfx.Policy(widen=1.5, widen_divisor=0), PolicyError, "widen_divisor"),
    BadInput("widen", "prepare-dict", lambda: rramfx.prepare(model(), {"widen": 1000}, X), PolicyError, "[1, 16]"),
    # ONNX opsets the exporter cannot write
    BadInput("opset", "3", lambda: rramfx.export_onnx(prepared(), X, f"{_tmp()}/o.onnx", opset=3),
             ArgumentError, "[18, 23]"),
    BadInput("opset", "99", lambda: rramfx.export_onnx(prepared(), X, f"{_tmp()}/o.onnx", opset=99),
             ArgumentError, "[18, 23]"),
    BadInput("opset", "str", lambda: rramfx.export_onnx(prepared(), X, f"{_tmp()}/o.onnx", opset="18"),
             ArgumentError, "opset"),
    # onnxruntime inputs
    BadInput("onnx-input", "partition-float64",
             lambda: rramfx.run_partitioned(partition(_tmp()), F32.astype(np.float64)), ArgumentError, "float64"),
    BadInput("onnx-input", "partition-size", lambda: rramfx.run_partitioned(partition(_tmp()), np.zeros((2, 1, 13, 12),
                                                                                                     np.float32)),
             ArgumentError, "(?, 1, 12, 12)"),
    BadInput("onnx-input", "ort-float64", _ort((F32.astype(np.float64), np.zeros(2, np.int64))), ArgumentError,
             "float64"),
    BadInput("onnx-input", "ort-size", _ort(np.zeros((2, 1, 12, 13), np.float32)), ArgumentError, "(2, 1, 12, 13)"),
    BadInput("onnx-input", "ort-float-labels", _ort((F32, np.zeros(2, np.float32))), ArgumentError, "labels"),
    # fault codes
    BadInput("fault-codes", "float", _fault_set(CODES.float()), FaultError, "dtype torch.float32"),
    BadInput("fault-codes", "minus-1", _fault_set(CODES.long() - 1), FaultError, "[-1]"),
    BadInput("fault-codes", "7", _fault_set(CODES.long() + 7), FaultError, "[7]"),
    BadInput("fault-codes", "chip-float", lambda: rramfx.Chip(torch.ones(1, 4, 4)), ArgumentError, "dtype"),
    BadInput("fault-codes", "chip-minus-1", lambda: rramfx.Chip(-torch.ones(1, 4, 4, dtype=torch.long)),
             ArgumentError, "[-1]"),
    BadInput("fault-codes", "chip-7", lambda: rramfx.Chip(torch.full((1, 4, 4), 7)), ArgumentError, "[7]"),
    # labels of the evaluation and training loops
    BadInput("labels", "evaluate-float", lambda: rramfx.evaluate(prepared(), [(X, torch.zeros(2))]), DataError,
             "labels"),
    BadInput("labels", "monte-carlo-float",
             lambda: rramfx.monte_carlo(prepared(), [(X, torch.zeros(2))], FM, trials=1, progress=False),
             DataError, "labels"),
    BadInput("labels", "train-float",
             lambda: rramfx.train(prepared(), [(X, torch.zeros(2))], epochs=1, progress=False), DataError, "labels"),
    BadInput("labels", "evaluate-one-hot", lambda: rramfx.evaluate(prepared(), [(X, torch.eye(4)[:2].long())]),
             DataError, "shape (2,)"),
    # what rramfx cannot simulate
    BadInput("unsimulated", "no-conv-linear", lambda: rramfx.prepare(NoWeights()), PlacementError, "NoWeights"),
]


@pytest.fixture(autouse=True, scope="module")
def _tmp_dir(tmp_path_factory):
    _TMP[:] = [str(tmp_path_factory.mktemp("bad_api"))]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}-{c.name}" for c in CASES])
def test_bad_input(case: BadInput):
    subjects = [model(), prepared()]
    before = [snapshot_model(m) for m in subjects]
    tensors = {"X": X.clone(), "F32": F32.copy(), "CODES": CODES.clone()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(case.error) as info:
            case.call()
    assert case.culprit in str(info.value), str(info.value)
    for m, snap in zip(subjects, before, strict=True):
        assert_model_unchanged(m, snap)
    assert torch.equal(X, tensors["X"]) and np.array_equal(F32, tensors["F32"]) and torch.equal(CODES, tensors["CODES"])


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        h, _ = self.lstm(x)
        h, _ = self.mha(h, h, h)
        h, _ = self.gru(h)
        return self.fc(h[:, -1])


def test_recurrent_and_attention_are_host_not_simulated():
    torch.manual_seed(0)
    net = Recurrent().eval()
    before = snapshot_model(net)
    with pytest.warns(UserWarning, match="lstm, mha, gru") as record:
        gm = rramfx.prepare(net, rramfx.Policy(linear="rram"), torch.randn(2, 5, 8))
    assert not any("hides" in str(w.message) for w in record)  # mha.out_proj is not reported as placed
    assert_model_unchanged(net, before)
    assert rramfx.placement(gm) == {"fc": "rram"}
    assert set(rramfx.crossbar_layers(gm)) == {"fc"}
    faults = rramfx.inject_faults(gm, FM, seed=0)
    assert set(faults.keys()) == {"fc"}
    text = rramfx.summary(gm)
    host = sum(p.numel() for m in (net.lstm, net.mha, net.gru) for p in m.parameters())
    fc = sum(p.numel() for p in net.fc.parameters())
    for path in ("lstm", "mha", "gru"):
        assert f"{path} " in text and "not simulated (host)" in text.split(f"\n{path} ")[1].splitlines()[0]
    assert f"rram: 1 layers, {fc:,} params ({100 * fc / (fc + host):.1f}% of weighted-layer params)" in text
    assert f"not simulated (host): 3 layers, {host:,} params" in text


def test_count_bad_inputs_counts_this_table():
    from collections import Counter

    from tests.count_bad_inputs import count

    cases, _ = count()
    mine = Counter({kind: n for (kind, f), n in cases.items() if f == "test_bad_inputs_api.py"})
    assert mine == Counter(c.kind for c in CASES)
    assert mine["example-input"] == 10 and sum(mine.values()) == len(CASES) == 43
