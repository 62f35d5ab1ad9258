"""The paper's Table II reproduced: latency and energy of widened ResNet20 / VGG13 / MobileNetV2 on a
64-chip ISAAC, as ratios to width 1, beside the paper's (see docs/cost-model.md for what is counted).

Columns: ``latency``/``energy`` cost every conv/linear layer at ISAAC's rates (the paper's accounting);
``RRAM layers only`` keeps only the k x k layers of the paper's placement; ``with host`` is the paper's
placement with the 1x1 and linear layers on the default CPU host. The last row is MobileNetV2 with
MobileNet's own rounding of channel counts to multiples of 8, which the paper did not use.

Usage:

    python reproduction/cost_table.py [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from rramfx.cost.paper import MOBILENET_ROUNDED_TO_8, TABLE2_CONFIGS, table2_markdown, table2_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of markdown")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one small forward per model: threads only wait for each other
    start = time.perf_counter()
    rows = table2_rows((*TABLE2_CONFIGS, MOBILENET_ROUNDED_TO_8))
    if args.json:
        print(json.dumps([{**dataclasses.asdict(r), "latency_diff": r.latency_diff, "energy_diff": r.energy_diff}
                          for r in rows], indent=2))
    else:
        print(table2_markdown(rows))
        print(f"\n({len(rows)} rows in {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
