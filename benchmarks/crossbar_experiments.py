"""What the crossbar model shows on Fashion-MNIST ResNet-20 (issue 12, item 9): encodings, fault patterns,
fault-aware mapping and training against a fault pattern, over 3 training seeds and 102 chips per setting.

Models: ResNet-20 (its 18 kxk convolutions on RRAM) trained on ``--train`` Fashion-MNIST training images
for ``--epochs`` epochs (batch 64, lr 0.05 cosine) per training seed, three ways: DropConnect ``--drop``
(``dropconnect``), and with ``Policy.train_faults`` drawing a fresh word/bit-line pattern (``train-lines``)
or clustered pattern (``train-clusters``) at 10% faulty cells each step, with 10% of the lines or clusters
SA0 as on the test chips, or none (``-sa1``). Chips: ``--chips`` per training
seed and setting (chip ``i`` of seed ``s`` is ``chip_seed(100 + s, i)``: the same chips for every
mapping and p' rule of one pattern), SA1:SA0 = 9:1 throughout, 128x128 arrays, evaluated on ``--test``
test images with `rramfx.evaluate_on_chip`. p' (the 1/(1-p') read scale) is ``"measured"`` unless a
setting says otherwise: each layer's own loss of weight magnitude on that chip and mapping.

Experiments (``--only``), each setting one engine task that writes its own JSON file under ``--out``
(a re-run does only what is missing; ``--table`` prints the tables of what is there):

- ``encodings``: single / differential / bit_sliced (8-bit weights on four 2-bit cells, offset sign) /
  bit_sliced_diff (the same with a differential sign: 8 cells per weight), independent faults at 5, 10,
  20% of the cells, and the two bit-sliced ones without faults (quantisation alone);
- ``patterns``: independent / word+bit lines / clustered (mean 8 cells) at 10% faulty cells, single;
- ``aware``: naive / fault-aware / fault-aware with 8 spare columns per array at 5, 10, 20%; and at 10%
  both mappings with p' = 0 and p' = the SA1 rate;
- ``training``: the three models on lines and clusters at 10%.

    python benchmarks/crossbar_experiments.py --out benchmarks/results/crossbar_experiments
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import time
from pathlib import Path

import torch

import rramfx
from rramfx.crossbar.faults import chip_seed
from rramfx.crossbar.patterns import Clustered, Independent, Lines
from rramfx.data import ImageLoader, load_dataset
from rramfx.engines import Task, make_engine
from rramfx.models.spec import create_model

HARDWARE = {
    "single": {},
    "differential": {"encoding": "differential"},
    "bit_sliced": {"encoding": "bit_sliced", "weight_bits": 8, "bits_per_cell": 2},
    "bit_sliced_diff": {"encoding": "bit_sliced", "weight_bits": 8, "bits_per_cell": 2, "signed": "differential"},
}
#: model name -> (pattern kind, SA0 share of its lines / clusters) drawn afresh in every training step
TRAIN_PATTERNS = {"train-lines": ("lines", 0.1), "train-clusters": ("clusters", 0.1),
                  "train-lines-sa1": ("lines", 0.0), "train-clusters-sa1": ("clusters", 0.0)}


def pattern(kind: str, rate: float, sa0_share: float = 0.1) -> rramfx.crossbar.BasePattern:
    """A pattern with ``rate`` of the cells faulty, ``sa0_share`` of them (of the lines, of the clusters) SA0."""
    if kind == "independent":
        return Independent(sa1=(1 - sa0_share) * rate, sa0=sa0_share * rate)
    if kind == "lines":
        line = 1 - (1 - rate) ** 0.5  # word and bit lines alike: 1 - (1 - line)^2 = rate
        return Lines(wordline=line, bitline=line, sa0_share=sa0_share)
    return Clustered(rate=rate, mean_size=8, sa0_share=sa0_share)


def settings() -> list[dict]:
    """Every (experiment, model, encoding, pattern, rate, mapping, p') setting, evaluated per training seed."""
    out = []
    for encoding in HARDWARE:
        for rate in (0.05, 0.1, 0.2):
            out.append(dict(exp="encodings", model="dropconnect", encoding=encoding, pattern="independent",
                            rate=rate, mapping="naive", p="measured"))
    for encoding in ("bit_sliced", "bit_sliced_diff"):
        out.append(dict(exp="encodings", model="dropconnect", encoding=encoding, pattern="independent", rate=0.0,
                        mapping="naive", p="measured"))
    for kind in ("lines", "clusters"):
        out.append(dict(exp="patterns", model="dropconnect", encoding="single", pattern=kind, rate=0.1,
                        mapping="naive", p="measured"))
    for rate in (0.05, 0.1, 0.2):
        for mapping in ("aware", "aware+spare"):
            out.append(dict(exp="aware", model="dropconnect", encoding="single", pattern="independent", rate=rate,
                            mapping=mapping, p="measured"))
    out.append(dict(exp="aware", model="dropconnect", encoding="differential", pattern="independent", rate=0.1,
                    mapping="aware", p="measured"))
    for mapping in ("naive", "aware"):
        for p in ("0", "rate"):
            out.append(dict(exp="aware", model="dropconnect", encoding="single", pattern="independent", rate=0.1,
                            mapping=mapping, p=p))
    for model in TRAIN_PATTERNS:
        for kind in ("lines", "clusters"):
            out.append(dict(exp="training", model=model, encoding="single", pattern=kind, rate=0.1,
                            mapping="naive", p="measured"))
    return out


def setting_name(s: dict) -> str:
    return f"{s['model']}-{s['encoding']}-{s['pattern']}-{s['rate']:g}-{s['mapping']}-p{s['p']}"


def train_model(name: str, seed: int, args: dict, path: str) -> dict:
    """Train model ``name`` for ``seed`` and save it to ``path``; returns its training seconds."""
    torch.manual_seed(seed)
    policy = {"drop_rate": args["drop"]} if name == "dropconnect" else {
        "drop_rate": 0.0, "train_faults": {"pattern": pattern(TRAIN_PATTERNS[name][0], 0.1,
                                                              TRAIN_PATTERNS[name][1]).to_dict()}}
    gm = rramfx.prepare(create_model("resnet20", num_classes=10, in_chans=1), rramfx.Policy(**policy),
                        example_inputs=torch.randn(2, 1, 28, 28))
    data = load_dataset("fashion-mnist", "train").subset(args["train"], seed=seed)
    start = time.perf_counter()
    rramfx.train(gm, ImageLoader(data, 64, shuffle=True, seed=seed), args["epochs"], lr=0.05, progress=False,
                 seed=seed)
    seconds = time.perf_counter() - start
    rramfx.save_prepared(path, gm, model="resnet20", model_kwargs={"num_classes": 10, "in_chans": 1}, policy=policy,
                         input_shape=(1, 28, 28), info={"train_seconds": seconds})
    return {"train_seconds": seconds}


def evaluate_setting(setting: dict, seed: int, model_path: str, args: dict) -> dict:
    """Accuracy of one trained model on ``args['chips']`` chips of one setting (plus its fault-free one)."""
    gm, _ = rramfx.load_prepared(model_path)
    test = ImageLoader(load_dataset("fashion-mnist", "test").subset(args["test"], seed=1), 256)
    # Every chip is drawn with 8 spare columns per array; settings without spares use its first 128 columns,
    # so the mappings of one pattern and rate meet the same stuck cells.
    wide = rramfx.Hardware(**HARDWARE[setting["encoding"]], spare_columns=8)
    narrow = dataclasses.replace(wide, spare_columns=0)
    hardware = wide if setting["mapping"] == "aware+spare" else narrow
    arrays = rramfx.crossbar_map(gm, narrow).arrays
    draw = pattern(setting["pattern"], setting["rate"])
    p = {"measured": "measured", "0": 0.0, "rate": 0.9 * setting["rate"]}[setting["p"]]
    accuracies, map_seconds = [], []
    chips = 1 if setting["rate"] == 0 else args["chips"]
    for i in range(chips):
        if setting["rate"] == 0:
            chip = rramfx.Chip.healthy(arrays, hardware)
        else:
            chip = rramfx.Chip.draw(draw, arrays, wide, seed=chip_seed(100 + seed, i))
            if hardware is narrow:
                chip = rramfx.Chip(chip.codes[:, :, :narrow.tile[1]].clone(), narrow)
        mapping = None
        if setting["mapping"] != "naive":
            start = time.perf_counter()
            mapping = rramfx.fault_aware_map(rramfx.crossbar_layers(gm), chip)
            map_seconds.append(time.perf_counter() - start)
        accuracies.append(rramfx.evaluate_on_chip(gm, chip, test, fault_rate=p, mapping=mapping))
    return {**setting, "seed": seed, "accuracies": accuracies, "fault_free": rramfx.evaluate(gm, test),
            "map_seconds": statistics.fmean(map_seconds) if map_seconds else None}


def run(args: argparse.Namespace) -> None:
    out, models = args.out / "cells", args.out / "models"
    out.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    plain = {k: getattr(args, k) for k in ("drop", "train", "epochs", "test", "chips")}
    wanted = [s for s in settings() if s["exp"] in args.only]
    needed = {s["model"] for s in wanted}
    with make_engine(args.engine, workers=args.workers, threads=1) as engine:
        pending = 0
        for name in sorted(needed):
            for seed in range(args.seeds):
                path = models / f"{name}-s{seed}.pt"
                if not path.exists():
                    engine.submit(Task(f"train {name} s{seed}", train_model, (name, seed, plain, str(path))))
                    pending += 1
        for outcome in _drain(engine, pending):
            print(f"{outcome.key}: {outcome.value['train_seconds']:.0f} s", flush=True)
        pending = 0
        for setting in wanted:
            for seed in range(args.seeds):
                cell = out / f"{setting_name(setting)}-s{seed}.json"
                if not cell.exists():
                    engine.submit(Task(str(cell), evaluate_setting,
                                       (setting, seed, str(models / f"{setting['model']}-s{seed}.pt"), plain)))
                    pending += 1
        for done, outcome in enumerate(_drain(engine, pending), 1):
            rramfx.files.write_atomic(Path(outcome.key), json.dumps(outcome.value) + "\n")
            print(f"[{done}/{pending}] {Path(outcome.key).name} ({outcome.seconds:.0f} s)", flush=True)


def _drain(engine, count: int):
    for _, outcome in zip(range(count), engine.completed(), strict=False):
        if not outcome.ok:
            raise SystemExit(f"{outcome.key} failed:\n{outcome.error}")
        yield outcome


def load_cells(folder: Path) -> list[dict]:
    """Every finished cell under ``folder/cells``."""
    return [json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.json"))]


def summarize(cells: list[dict]) -> list[dict]:
    """Per setting: the mean over all chips and seeds, the per-seed means, and the chips counted."""
    groups: dict[str, list[dict]] = {}
    for cell in cells:
        groups.setdefault(setting_name(cell), []).append(cell)
    rows = []
    for name, group in groups.items():
        seeds = sorted(group, key=lambda c: c["seed"])
        per_seed = [100 * statistics.fmean(c["accuracies"]) for c in seeds]
        every = [100 * a for c in seeds for a in c["accuracies"]]
        keys = ("exp", "model", "encoding", "pattern", "rate", "mapping", "p")
        rows.append({**{k: seeds[0][k] for k in keys}, "name": name, "mean": statistics.fmean(every),
                     "per_seed": per_seed, "chips": len(every), "chip_std": statistics.pstdev(every),
                     "fault_free": [100 * c["fault_free"] for c in seeds],
                     "map_seconds": statistics.fmean(c["map_seconds"] for c in seeds) if seeds[0]["map_seconds"]
                     else None})
    return rows


def print_tables(rows: list[dict]) -> None:
    """One markdown table per experiment: mean (range of the per-seed means) and chip standard deviation."""
    for exp in ("encodings", "patterns", "aware", "training"):
        here = sorted((r for r in rows if r["exp"] == exp),
                      key=lambda r: (r["model"], r["encoding"], r["pattern"], r["rate"], r["mapping"], r["p"]))
        if not here:
            continue
        print(f"\n### {exp}\n\n| model | encoding | pattern | faulty cells | mapping | p' | seeds x chips | accuracy % "
              "(per-seed range) | chip std |\n|---|---|---|---:|---|---|---:|---:|---:|")
        for r in here:
            print(f"| {r['model']} | {r['encoding']} | {r['pattern']} | {100 * r['rate']:g}% | {r['mapping']} | "
                  f"{r['p']} | {len(r['per_seed'])} x {r['chips'] // len(r['per_seed'])} | {r['mean']:.1f} "
                  f"({min(r['per_seed']):.1f}-{max(r['per_seed']):.1f}) | {r['chip_std']:.1f} |")


def print_gains(cells: list[dict]) -> None:
    """Fault-aware minus naive mapping (p' measured), paired chip by chip: mean and per-seed range."""
    def acc(setting: dict, seed: int) -> list[float] | None:
        found = [c for c in cells if setting_name(c) == setting_name(setting) and c["seed"] == seed]
        return found[0]["accuracies"] if found else None

    print("\n### fault-aware minus naive, paired per chip\n\n| encoding | faulty cells | mapping | seeds x chips | "
          "gain, points (per-seed range) |\n|---|---:|---|---:|---:|")
    for encoding, rate, mapping in itertools.product(HARDWARE, (0.05, 0.1, 0.2), ("aware", "aware+spare")):
        base = dict(exp="aware", model="dropconnect", encoding=encoding, pattern="independent", p="measured")
        per_seed, chips = [], 0
        for seed in sorted({c["seed"] for c in cells}):
            naive, aware = acc({**base, "rate": rate, "mapping": "naive"}, seed), \
                acc({**base, "rate": rate, "mapping": mapping}, seed)
            if naive and aware:
                per_seed.append(100 * statistics.fmean(a - n for a, n in zip(aware, naive, strict=True)))
                chips += len(naive)
        if per_seed:
            print(f"| {encoding} | {100 * rate:g}% | {mapping} | {len(per_seed)} x {chips // len(per_seed)} | "
                  f"{statistics.fmean(per_seed):+.1f} ({min(per_seed):+.1f} to {max(per_seed):+.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/crossbar_experiments"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--drop", type=float, default=0.1)
    parser.add_argument("--test", type=int, default=512)
    parser.add_argument("--chips", type=int, default=34, help="chips per training seed and setting")
    parser.add_argument("--only", nargs="+", default=["encodings", "patterns", "aware", "training"],
                        choices=["encodings", "patterns", "aware", "training"])
    parser.add_argument("--engine", default="local", choices=["local", "serial", "ray"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="only print the tables of what --out holds")
    args = parser.parse_args()
    if not args.table:
        run(args)
    cells = load_cells(args.out)
    rows = summarize(cells)
    free = {}
    for c in cells:
        free.setdefault(c["model"], {})[c["seed"]] = 100 * c["fault_free"]
    for model, seeds in sorted(free.items()):
        print(f"{model}: fault-free " + ", ".join(f"seed {s} {a:.1f}%" for s, a in sorted(seeds.items())))
    print_tables(rows)
    print_gains(cells)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
