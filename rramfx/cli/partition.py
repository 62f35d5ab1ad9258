"""``rramfx partition``: split an annotated ONNX model into same-device segments."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "partition", help="split an annotated ONNX model into RRAM/CPU segments",
        description="Split a model written by `rramfx export` into maximal same-device segments, each a "
                    "standalone ONNX model, plus manifest.json (run order, interfaces, boundary bytes).")
    p.add_argument("model", help="annotated ONNX file (from `rramfx export`)")
    p.add_argument("out_dir", help="folder for the segments and manifest.json")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rramfx.checks import writable_folder
    from rramfx.onnx.partition import partition_onnx

    writable_folder("OUT_DIR", args.out_dir)
    plan = partition_onnx(args.model, args.out_dir)
    print(plan.summary())
    print(f"\nwrote {len(plan.segments)} segments and manifest.json to {args.out_dir}")
    return 0
