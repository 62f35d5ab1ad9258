"""``rramfx inspect``: what an annotated ONNX model does where."""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="summarise an annotated ONNX model",
        description="Print the rramfx metadata of an ONNX model: policy, fault mode, layers and crossbar "
                    "tiles per device, segments per device, boundary bytes and the RRAM share of MACs.")
    p.add_argument("model", help="annotated ONNX file (from `rramfx export`)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rramfx.onnx.inspect import inspect_onnx

    report = inspect_onnx(args.model)
    print(json.dumps(report["data"], indent=2) if args.json else report["text"])
    return 0
