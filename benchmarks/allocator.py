"""CPU evaluation with and without `rramfx.engines.keep_freed_memory`, side by side in one run.

The setting is per process and cannot be taken back, so each measurement is a child process of this
script: a child prepares the model, warms up, then times ``--trials`` plain evaluations and a
`rramfx.monte_carlo` of ``--trials`` chips (the same batches, already in memory), counting page faults;
the parent alternates the two variants round by round (``--rounds``) so that machine noise hits both
alike, and prints the medians, their ratio and the page faults. The accuracies must be equal.

    python benchmarks/allocator.py [--models tv:resnet18,resnet20] [--samples 512] [--batch 256]
        [--trials 4] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import resource

    import torch

    import rramfx
    from rramfx.engines import keep_freed_memory
    from rramfx.models.spec import create_model

    torch.set_num_threads(args.threads)
    applied = keep_freed_memory() if args.variant == "keep" else False
    torch.manual_seed(0)
    gm = rramfx.prepare(create_model(args.model, num_classes=10), rramfx.Policy(fault_rate=0.1)).eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(min(args.batch, args.samples - s), 3, 32, 32, generator=g),
                torch.randint(0, 10, (min(args.batch, args.samples - s),), generator=g))
               for s in range(0, args.samples, args.batch)]
    fm = rramfx.FaultModel(sa1=0.1)
    rramfx.evaluate(gm, batches)
    rramfx.monte_carlo(gm, batches, fm, trials=1, progress=False)

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    f0, t0 = faults(), time.perf_counter()
    plain = [rramfx.evaluate(gm, batches) for _ in range(args.trials)]
    f1, t1 = faults(), time.perf_counter()
    mc = rramfx.monte_carlo(gm, batches, fm, trials=args.trials, progress=False)
    f2, t2 = faults(), time.perf_counter()
    print(json.dumps({"applied": applied, "plain_s": t1 - t0, "mc_s": t2 - t1, "plain_faults": f1 - f0,
                      "mc_faults": f2 - f1, "accuracies": [plain[0], *mc.accuracies]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tv:resnet18,resnet20")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", choices=("default", "keep"), help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    print(f"{args.samples} images 3x32x32, batch {args.batch}, {args.trials} evaluations / chips per child, "
          f"{args.threads} thread(s), {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}", flush=True)
    for model in args.models.split(","):
        runs: dict[str, list[dict]] = {"default": [], "keep": []}
        for _ in range(args.rounds):
            for variant in runs:
                cmd = [sys.executable, __file__, "--variant", variant, "--model", model, "--samples", str(args.samples),
                       "--batch", str(args.batch), "--trials", str(args.trials), "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                runs[variant].append(json.loads(out.strip().splitlines()[-1]))
        same = all(r["accuracies"] == runs["default"][0]["accuracies"] for v in runs.values() for r in v)
        print(f"{model}: keep_freed_memory applied: {runs['keep'][0]['applied']}; accuracies equal: {same}")
        for what in ("plain", "mc"):
            d = statistics.median(r[f"{what}_s"] for r in runs["default"])
            k = statistics.median(r[f"{what}_s"] for r in runs["keep"])
            fd = statistics.median(r[f"{what}_faults"] for r in runs["default"])
            fk = statistics.median(r[f"{what}_faults"] for r in runs["keep"])
            print(f"  {what:5s}: default {d:6.2f} s ({fd:,.0f} page faults), kept {k:6.2f} s ({fk:,.0f}): "
                  f"{d / k:.2f}x", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
