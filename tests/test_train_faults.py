"""Policy.train_faults: a fault pattern drawn per training step in place of DropConnect."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import rramfx
from rramfx import CellFaults, Hardware, Policy
from rramfx.crossbar.patterns import Independent, Lines
from rramfx.crossbar.trainfaults import dropconnect_rate, layer_train_faults, resolve_train_faults
from rramfx.errors import PolicyError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def _train(policy: Policy, steps: int = 6) -> dict[str, torch.Tensor]:
    gm = rramfx.prepare(_net(), policy).train()
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    torch.manual_seed(123)
    for _ in range(steps):
        x, y = torch.randn(4, 3, 6, 6), torch.randint(0, 5, (4,))
        opt.zero_grad()
        nn.functional.cross_entropy(gm(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in gm.state_dict().items()}


def test_independent_sa1_on_single_cells_is_dropconnect_bit_for_bit():
    p = 0.25
    drop = _train(Policy(drop_rate=p))
    faults = _train(Policy(train_faults={"pattern": {"kind": "independent", "sa1": p}}))
    as_object = _train(Policy(train_faults=CellFaults(Hardware(tile=(64, 64)), Independent(sa1=p))))
    plain = _train(Policy())
    assert drop.keys() == faults.keys() == as_object.keys()
    for k in drop:
        assert torch.equal(drop[k], faults[k]), k
        assert torch.equal(drop[k], as_object[k]), k
    assert not torch.equal(drop["0.weight"], plain["0.weight"])  # DropConnect did change the training


def test_other_patterns_train_and_differ_from_dropconnect():
    spec = {"pattern": {"kind": "lines", "wordline": 0.1, "bitline": 0.05}, "hardware": {"encoding": "bit_sliced"}}
    a, b = _train(Policy(train_faults=spec)), _train(Policy(train_faults=spec))
    drop = _train(Policy(drop_rate=0.15))
    for k in a:
        assert torch.equal(a[k], b[k]), k  # torch.manual_seed reproduces the run
        assert torch.isfinite(a[k]).all()
    assert not torch.equal(a["0.weight"], drop["0.weight"])


def test_a_fresh_pattern_per_step_and_per_layer():
    conv = nn.Conv2d(8, 8, 3)
    draw = layer_train_faults(conv, CellFaults(Hardware(), Lines(wordline=0.2)))
    torch.manual_seed(5)
    first, second = draw(conv.weight.detach()), draw(conv.weight.detach())
    assert not torch.equal(first == 0, second == 0)
    torch.manual_seed(5)
    assert torch.equal(draw(conv.weight.detach()), first)
    # a word line of a 72-row matrix: whole rows of the unrolled weight (one input position, every output)
    zero_rows = (first.permute(1, 2, 3, 0).reshape(72, 8) == 0).all(1)
    assert 0 < int(zero_rows.sum()) < 72
    assert draw.scale == pytest.approx(1 / 0.8)


def test_a_stuck_single_cell_gets_no_gradient():
    conv = nn.Conv2d(16, 16, 3)
    draw = layer_train_faults(conv, CellFaults(Hardware(), Independent(sa1=0.3)))
    torch.manual_seed(2)
    w = conv.weight.detach().clone().requires_grad_(True)
    read = draw(w)
    read.sum().backward()
    scale = 1 / (1 - 0.3)
    stuck = read.detach() == 0  # an SA1 cell reads 0 (no weight is exactly 0)
    healthy = ~stuck
    assert torch.equal(read.detach()[healthy], w.detach()[healthy] * scale)
    assert 0.2 < stuck.float().mean().item() < 0.4
    assert torch.equal(w.grad[stuck], torch.zeros(int(stuck.sum())))
    assert torch.allclose(w.grad[healthy], torch.full((int(healthy.sum()),), scale))


def test_the_dropconnect_case_is_recognised_and_others_are_not():
    assert dropconnect_rate(resolve_train_faults({"pattern": {"kind": "independent", "sa1": 0.1}})) == 0.1
    assert dropconnect_rate(resolve_train_faults({"pattern": {"kind": "independent", "sa1": 0.1, "sa0": 0.01}})) is None
    assert dropconnect_rate(resolve_train_faults({"pattern": {"kind": "independent", "sa1": 0.1},
                                                  "hardware": {"encoding": "differential"}})) is None
    gm = rramfx.prepare(_net(), Policy(train_faults={"pattern": {"kind": "independent", "sa1": 0.1}}))
    layer = rramfx.crossbar_layers(gm)["0"]
    assert layer.drop_rate == 0.1 and layer.train_faults is None
    gm = rramfx.prepare(_net(), Policy(train_faults={"pattern": {"kind": "clustered", "rate": 0.1}}))
    layer = rramfx.crossbar_layers(gm)["0"]
    assert layer.drop_rate == 0.0 and layer.train_faults is not None


def test_policy_round_trips_train_faults(tmp_path):
    p = Policy(train_faults=CellFaults(Hardware(encoding="differential"), Lines(bitline=0.03)), fault_rate=0.1)
    assert p.train_faults["pattern"] == {"kind": "lines", "wordline": 0.0, "bitline": 0.03, "sa0_share": 0.0,
                                         "spread": 0.0}
    assert Policy.from_dict(p.to_dict()) == p
    for name in ("p.toml", "p.json"):
        assert Policy.from_file(p.save(tmp_path / name)) == p
    assert Policy.from_file(Policy().save(tmp_path / "none.toml")).train_faults is None
    assert hash(p) == hash(Policy.from_dict(p.to_dict()))


@pytest.mark.parametrize("spec, words", [
    ({"pattern": {"kind": "independent", "sa1": 0.1}, "drop": 0.1}, "not both"),
    ({"kind": "vts", "sa1": 0.1}, "kind 'cells'"),
    ({"hardware": {}}, "needs a pattern"),
    ({"pattern": {"kind": "lines", "wordline": 2.0}}, "Policy.train_faults"),
    ({"pattern": {"kind": "independent", "sa1": 0.1}, "hardware": {"encoding": "ternary"}}, "Hardware.encoding"),
    (3, "CellFaults"),
])
def test_bad_train_faults_name_the_field(spec, words):
    with pytest.raises(PolicyError, match=words):
        drop = spec.pop("drop", 0.0) if isinstance(spec, dict) else 0.0
        rramfx.prepare(_net(), Policy(drop_rate=drop, train_faults=spec))


def test_recalibration_runs_dropconnect_and_keeps_the_train_faults():
    gm = rramfx.prepare(_net(), Policy(train_faults={"pattern": {"kind": "lines", "wordline": 0.1}}, fault_rate=0.1))
    before = {p: m.train_faults for p, m in rramfx.crossbar_layers(gm).items()}
    g = copy.deepcopy(gm)
    rramfx.inject_faults(g, rramfx.FaultModel(sa1=0.1), seed=0)
    from rramfx.evaluation.recalibrate import _recalibrating
    with _recalibrating(g, rramfx.crossbar_layers(g), {}, 0.1, True):
        assert all(m.train_faults is None and m.drop_rate == 0.1 for m in rramfx.crossbar_layers(g).values())
    assert all(m.train_faults is not None for m in rramfx.crossbar_layers(g).values())
    assert set(before) == set(rramfx.crossbar_layers(g))


def test_rramfx_train_with_the_dropconnect_case_equals_drop_rate_and_the_policy_is_saved(tmp_path):
    from rramfx.training.saved import load_prepared, save_prepared

    from .tiny import TinyNet, loaders

    train, _ = loaders(n_train=128)
    runs = {}
    for name, policy in (("drop", Policy(drop_rate=0.3)),
                         ("faults", Policy(train_faults={"pattern": {"kind": "independent", "sa1": 0.3}})),
                         ("lines", Policy(train_faults={"pattern": {"kind": "lines", "wordline": 0.2}}))):
        torch.manual_seed(0)
        gm = rramfx.prepare(TinyNet(), policy)
        rramfx.train(gm, train, 1, progress=False, seed=3)
        runs[name] = gm
    for k, v in runs["drop"].state_dict().items():
        assert torch.equal(v, runs["faults"].state_dict()[k]), k
    assert not torch.equal(runs["drop"].state_dict()["conv1.weight"], runs["lines"].state_dict()["conv1.weight"])
    path = save_prepared(tmp_path / "m.pt", runs["lines"], model="tests.tiny:TinyNet",
                         model_kwargs={"in_chans": 1, "num_classes": 4})
    loaded, record = load_prepared(path)
    assert record["policy"]["train_faults"] == {"pattern": {"kind": "lines", "wordline": 0.2}}
    assert all(m.train_faults is not None for m in rramfx.crossbar_layers(loaded).values())


@pytest.mark.slow
def test_benchmark_script_runs_quick():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "train_faults.py", "--quick"], cwd=root / "benchmarks", capture_output=True,
                         text=True, timeout=600, check=True, env={**os.environ, "PYTHONPATH": str(root)}).stdout
    rows = re.findall(r"(?m)^(\S+)\s+(\d+\.\d)\s+(\d+\.\d{3})\s+(\d+\.\d{3})$", out)
    assert [r[0] for r in rows][:2] == ["plain", "dropconnect"] and len(rows) == 8, out
    assert all(float(r[2]) > 0 for r in rows)
