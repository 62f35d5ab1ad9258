"""benchmarks/crossbar_experiments.py (issue 12, item 9): its summaries are the mean over every chip of
every seed with the per-seed range, and its fault-aware gains pair the same chips; its committed cells
give the figures docs/crossbar-experiments.md quotes."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("crossbar_experiments", ROOT / "benchmarks/crossbar_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(mapping: str, seed: int, accuracies: list[float]) -> dict:
    return dict(exp="aware", model="dropconnect", encoding="single", pattern="independent", rate=0.1,
                mapping=mapping, p="measured", seed=seed, accuracies=accuracies, fault_free=0.9,
                map_seconds=None if mapping == "naive" else 0.5)


def test_summary_pools_chips_and_keeps_the_seed_range(capsys):
    ex = _load()
    cells = [_cell("naive", 0, [0.5, 0.7]), _cell("naive", 1, [0.2, 0.2]),
             _cell("aware", 0, [0.8, 0.8]), _cell("aware", 1, [0.6, 0.7])]
    rows = {r["mapping"]: r for r in ex.summarize(cells)}
    assert rows["naive"]["mean"] == pytest.approx(40.0) and rows["naive"]["per_seed"] == pytest.approx([60.0, 20.0])
    assert rows["naive"]["chips"] == 4 and rows["aware"]["map_seconds"] == pytest.approx(0.5)
    ex.print_gains(cells)
    out = capsys.readouterr().out
    # paired per chip: seed 0 (+0.3, +0.1) -> +20, seed 1 (+0.4, +0.5) -> +45; mean +32.5
    assert "| single | 10% | aware | 2 x 2 | +32.5 (+20.0 to +45.0) |" in out


def test_settings_have_unique_names_and_the_committed_cells_match_the_page():
    ex = _load()
    names = [ex.setting_name(s) for s in ex.settings()]
    assert len(names) == len(set(names))
    cells = ex.load_cells(ROOT / "benchmarks/results/crossbar_experiments")
    assert len(cells) == 3 * len(names)  # every setting for seeds 0, 1, 2
    rows = {r["name"]: r for r in ex.summarize(cells)}
    assert all(r["chips"] in (3, 102) for r in rows.values())  # 34 chips per seed; 1 for a healthy chip
    page = (ROOT / "docs/crossbar-experiments.md").read_text()
    for name in ("dropconnect-single-independent-0.1-naive-pmeasured",
                 "dropconnect-single-independent-0.1-aware-pmeasured",
                 "dropconnect-single-independent-0.2-aware-pmeasured"):
        r = rows[name]
        assert f"{r['mean']:.1f} ({min(r['per_seed']):.1f}-{max(r['per_seed']):.1f})" in page
