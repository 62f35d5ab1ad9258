"""benchmarks/demo_recipe.py's table keeps candidates of different speed options and batch sizes apart, and
examples/demo.py trains in bf16 only where the CPU has it natively (issue 11, item 6)."""

import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(speed: str | None, drop: float, seed: int, acc0: float, acc20: float) -> dict:
    cell = {"n": 100, "epochs": 1, "lr": 0.05, "drop": drop, "seed": seed, "clean": acc0, "train_cpu": 1.0,
            "eval": {"4": {"accuracy": [acc0, 0.5, acc20, 0.1], "cpu": 0.5}}}
    if speed is not None:  # cells written before --speed existed have no "speed": they are fp32
        cell["speed"] = speed
    return cell


def test_table_separates_speeds_and_computes_gains():
    recipe = _load("benchmarks/demo_recipe.py")
    cells = [_cell(None, 0.0, s, 0.80 + 0.01 * s, 0.20 + 0.01 * s) for s in range(3)]
    cells += [_cell(None, 0.1, s, 0.78 + 0.01 * s, 0.40 + 0.02 * s) for s in range(3)]
    cells += [_cell("cl+bf16", 0.0, s, 0.90, 0.30) for s in range(2)]  # one seed short: no row
    cells += [{**_cell(None, drop, s, 0.5 + 0.01 * s, 0.5 + 0.02 * s), "batch": 32} for drop in (0.0, 0.1)
              for s in range(3)]
    rows = recipe.table(cells)[2:]
    assert len(rows) == 4  # batch 32 is a candidate of its own (cells before --batch-size are batch 64)
    fields = [f.strip() for f in rows[3].strip("|").split("|")]
    # 100x1, batch, lr, speed, recal, drop, 4 means, gain 0%, gain 20%, margin, z margin, CPU s
    assert fields[:6] == ["100x1", "64", "0.05", "fp32", "4", "0.1"]
    assert fields[6] == "79.0" and fields[8] == "42.0"
    assert fields[10:13] == ["-2.0", "+21.0", "+1.0"]
    assert fields[14] == "9"  # 6 trainings x 1.0 + 6 evaluations x 0.5 CPU s
    assert [f.strip() for f in rows[1].strip("|").split("|")][:2] == ["100x1", "32"]


def test_demo_uses_bf16_only_with_native_support():
    demo = _load("examples/demo.py")
    assert demo.native_bf16() == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
