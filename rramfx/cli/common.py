"""Arguments that several subcommands share: the model spec and the policy."""

from __future__ import annotations

import argparse

from torch import nn

from rramfx.models.spec import create_model
from rramfx.policy import Policy

__all__ = ["add_model_args", "add_policy_args", "model_from_args", "policy_from_args"]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--num-classes`` and ``--in-chans``."""
    parser.add_argument("--model", required=True,
                        help="timm:NAME, tv:NAME, pkg.module:factory, or a reference model name")
    parser.add_argument("--num-classes", type=int, default=10, help="number of outputs (default 10)")
    parser.add_argument("--in-chans", type=int, default=3, help="input channels (default 3)")


def add_policy_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--policy FILE`` and the ``--drop-rate``/``--fault-rate`` flags that override its fields."""
    parser.add_argument("--policy", help="policy file (.json or .toml); flags below override its fields")
    parser.add_argument("--drop-rate", type=float, help="DropConnect rate p of RRAM layers in training")
    parser.add_argument("--fault-rate", type=float, help="expected deployment fault rate p'")


def model_from_args(args: argparse.Namespace) -> nn.Module:
    """A fresh model from ``--model``, ``--num-classes`` and ``--in-chans``."""
    return create_model(args.model, num_classes=args.num_classes, in_chans=args.in_chans)


def policy_from_args(args: argparse.Namespace) -> Policy:
    """The policy of ``--policy`` (default `Policy()`), with ``--drop-rate``/``--fault-rate`` applied."""
    data = Policy.from_file(args.policy).to_dict() if args.policy else {}
    for field in ("drop_rate", "fault_rate"):
        if getattr(args, field, None) is not None:
            data[field] = getattr(args, field)
    return Policy.from_dict(data)
