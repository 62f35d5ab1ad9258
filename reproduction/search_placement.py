"""Per-layer fault sensitivity and searched RRAM placements for a model trained by `rramfx.sweep`.

Given one trained model file (``<sweep out>/models/drop<p>_seed<s>.pt``) and the Fashion-MNIST test set,
this script

1. measures every weighted layer's fault sensitivity at ``--fault-rate`` SA1 (default 10%): the
   Monte-Carlo accuracy with only that layer on faulty chips, host layers included as if moved to RRAM
   (`rramfx.sensitivity`);
2. runs the greedy `rramfx.search_placement` for each ``--budgets`` value (accuracy points one may lose
   at that fault rate; default 1 and 2);
3. compares the paper's kernel-size rule with each searched placement: RRAM share of MACs and
   Monte-Carlo accuracy at each ``--eval-fault-rates`` (default 10% and 20% SA1) on ``--eval-trials``
   chips (default 100), and prints both as markdown tables; ``--out`` writes everything as JSON.

Caveat: layers the search moves to RRAM (1x1 shortcuts, the classifier) were not trained with
DropConnect, and by default nothing is retrained or recalibrated: the numbers are what the trained
model keeps as it is. ``--recal-batches N`` re-estimates BatchNorm statistics for each placement and
fault rate (Algorithm 1, as the sweep does) before its comparison row is evaluated;
``--fine-tune-epochs N`` fine-tunes every compared placement (the rule included, so the comparison
stays fair) with DropConnect at the model's drop rate on its RRAM layers. The search itself always
evaluates the model as given. Runs on the CPU (``--device`` to choose another).

    python reproduction/search_placement.py runs/demo/models/drop0.3_seed0.pt --test-subset 1000 --out placements.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import rramfx
from rramfx.data import ImageLoader, load_dataset
from rramfx.graph.record import rramfx_meta
from rramfx.search.greedy_placement import search_placement
from rramfx.search.layer_sensitivity import mac_share, pinned_policy, sensitivity


def _rates(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", type=Path, help="a model file written by rramfx.sweep / rramfx.save_prepared")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST directory (default: the Debian package's)")
    p.add_argument("--test-subset", type=int, default=1000, help="test images used (seeded like the sweep's)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--fault-rate", type=float, default=0.1, help="SA1 rate of the sensitivity and the search")
    p.add_argument("--budgets", type=_rates, default=[0.01, 0.02], help="accuracy losses allowed, as fractions")
    p.add_argument("--trials", type=int, default=10, help="chips per evaluation in the sensitivity and search")
    p.add_argument("--eval-fault-rates", type=_rates, default=[0.1, 0.2], help="SA1 rates of the comparison")
    p.add_argument("--eval-trials", type=int, default=100, help="chips per comparison cell (the paper: 100)")
    p.add_argument("--chip-seed", type=int, default=0, help="seed of the simulated chips (the sweep's default)")
    p.add_argument("--recal-batches", type=int, default=0, help="BN recalibration batches per row (0: off)")
    p.add_argument("--fine-tune-epochs", type=int, default=0, help="fine-tune every compared placement (0: off)")
    p.add_argument("--train-subset", type=int, default=4000, help="training images for recalibration/fine-tuning")
    p.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return p.parse_args(argv)


def _loaders(args: argparse.Namespace, record: dict[str, Any]) -> tuple[ImageLoader, ImageLoader | None]:
    """The test loader built as the sweep builds it, and a training loader when one is needed."""
    in_chans = (record.get("model_kwargs") or {}).get("in_chans")
    test = load_dataset("fashion-mnist", "test", args.data_dir).subset(args.test_subset, seed=1)
    test_loader = ImageLoader(test, max(256, args.batch_size), in_chans=in_chans, device=args.device)
    train_loader = None
    if args.recal_batches or args.fine_tune_epochs:
        train = load_dataset("fashion-mnist", "train", args.data_dir).subset(args.train_subset, seed=0)
        train_loader = ImageLoader(train, min(args.batch_size, 128), shuffle=True, in_chans=in_chans,
                                   drop_last=len(train) > args.batch_size, seed=0, device=args.device)
    return test_loader, train_loader


def _placed(gm: torch.fx.GraphModule, policy: rramfx.Policy) -> torch.fx.GraphModule:
    """A copy of the trained model re-placed by ``policy`` with the placement and crossbar passes."""
    return rramfx.passes.to_crossbar(rramfx.passes.assign_devices(gm, policy), policy)


def _evaluate_row(gm: torch.fx.GraphModule, policy: rramfx.Policy, args: argparse.Namespace,
                  test_loader: ImageLoader, train_loader: ImageLoader | None) -> dict[str, Any]:
    """Fault-free and Monte-Carlo accuracy of one placement at every comparison fault rate."""
    work = _placed(gm, policy)
    if args.fine_tune_epochs:
        rramfx.train(work, train_loader, args.fine_tune_epochs, lr=args.lr, seed=0, progress=True)
    row: dict[str, Any] = {"clean_accuracy": rramfx.evaluate(work, test_loader), "accuracy": {}}
    for rate in args.eval_fault_rates:
        chip_model = copy.deepcopy(work)
        if args.recal_batches and rramfx.crossbar_layers(chip_model):
            rramfx.recalibrate_bn(chip_model, train_loader, rate, batches=args.recal_batches, seed=0)
        result = rramfx.monte_carlo(chip_model, test_loader, rramfx.FaultModel(sa1=rate), args.eval_trials,
                                    args.chip_seed, fault_rate=rate, progress=True)
        row["accuracy"][f"{rate:g}"] = result.to_dict()
    return row


def _comparison_table(rows: list[dict[str, Any]], rates: list[float]) -> str:
    head = ["placement", "RRAM layers", "RRAM share of MACs", "fault-free %",
            *[f"{100 * r:g}% SA1: mean ± chip std (min)" for r in rates]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        cells = [row["name"], str(row["rram_layers"]), f"{100 * row['rram_mac_share']:.1f}%",
                 f"{100 * row['clean_accuracy']:.2f}"]
        for rate in rates:
            r = row["accuracy"][f"{rate:g}"]
            cells.append(f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} ({100 * r['min']:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _candidates(gm: torch.fx.GraphModule, searches: list[Any]) -> list[tuple[str, rramfx.Policy, dict]]:
    """(name, policy, placement) of every compared placement: the rule, the model's own placement
    when it differs from the rule, and each search result."""
    base = rramfx.Policy.from_dict(rramfx_meta(gm)["policy"])
    first = searches[0]
    out = [("kernel-size rule", pinned_policy(base, first.rule_placement), first.rule_placement)]
    if first.initial_placement != first.rule_placement:
        out.append(("as trained", pinned_policy(base, first.initial_placement), first.initial_placement))
    out += [(f"search, budget {100 * s.budget:g} pt", s.policy, s.placement) for s in searches]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    gm, record = rramfx.load_prepared(args.model, map_location=args.device)
    test_loader, train_loader = _loaders(args, record)
    fm = rramfx.FaultModel(sa1=args.fault_rate)
    print(f"# Placement search for {args.model} ({record.get('model')}, policy drop rate "
          f"{record['policy'].get('drop_rate')})\n")
    report = sensitivity(gm, test_loader, fm, args.trials, args.chip_seed, progress=True)
    print(f"## Per-layer sensitivity at {100 * args.fault_rate:g}% SA1\n\n{report.describe()}.\n")
    print(report.table(markdown=True) + "\n")
    searches = [search_placement(gm, test_loader, b, fm, args.trials, args.chip_seed, report=report, progress=True)
                for b in args.budgets]
    for s in searches:
        print(f"## Greedy search, budget {100 * s.budget:g} pt at {100 * args.fault_rate:g}% SA1\n")
        print(s.table(markdown=True) + "\n")
    rows = []
    for name, policy, layout in _candidates(gm, searches):
        row = {"name": name, "placement": layout, "policy": policy.to_dict(),
               "rram_layers": sum(d == "rram" for d in layout.values()),
               "rram_mac_share": mac_share(searches[0].macs, layout)}
        rows.append(row | _evaluate_row(gm, policy, args, test_loader, train_loader))
    notes = (f"fine-tuned {args.fine_tune_epochs} epochs" if args.fine_tune_epochs else "no fine-tuning") + (
        f", BN recalibrated on {args.recal_batches} batches" if args.recal_batches else ", no BN recalibration")
    print(f"## Kernel-size rule vs searched placements ({args.eval_trials} chips, {notes})\n")
    print(_comparison_table(rows, args.eval_fault_rates))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        data = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "model_record": {k: record.get(k) for k in ("model", "model_kwargs", "policy")},
                "sensitivity": report.to_dict(), "searches": [s.to_dict() for s in searches],
                "comparison": rows, "seconds": time.perf_counter() - start}
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
