"""Arguments that several subcommands share: the model spec, its weights and the policy."""

from __future__ import annotations

import argparse

from torch import nn

from rramfx.cli.arguments import count, rate
from rramfx.errors import ArgumentError
from rramfx.models.spec import create_model
from rramfx.models.weights import load_weights
from rramfx.policy import Policy

__all__ = ["add_model_args", "add_policy_args", "model_from_args", "model_kwargs_from_args", "policy_from_args"]


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = True, weights: bool = True) -> None:
    """Add ``--model``, ``--num-classes``, ``--in-chans`` and (with ``weights``) ``--weights`` and
    ``--pretrained``. The class and channel counts default to None: the dataset's where a command reads
    one, else 10 and 3 (`model_from_args`)."""
    parser.add_argument("--model", required=required,
                        help="timm:NAME[.TAG], tv:NAME, pkg.module:factory, or a reference model name "
                             "(resnet20, vgg13, mobilenetv2, mini_mobilenet_<n>)")
    parser.add_argument("--num-classes", type=count,
                        help="number of outputs (default: the dataset's class count; 10 without a dataset)")
    parser.add_argument("--in-chans", type=count,
                        help="input channels (default: the dataset's channels; 3 without a dataset)")
    if weights:
        parser.add_argument("--weights", metavar="FILE",
                            help="start from these weights: a torch.save'd state_dict, a checkpoint holding one, "
                                 "or a timm/torchvision weights file (.pth, .safetensors); every key must fit")
        parser.add_argument("--pretrained", metavar="FILE",
                            help="timm models only: a local pretrained weights file, loaded through timm's "
                                 "pretrained config (a classifier of another size is replaced by a fresh one)")


def add_policy_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--policy FILE`` and the ``--drop-rate``/``--fault-rate`` flags that override its fields."""
    parser.add_argument("--policy", help="policy file (.json or .toml); flags below override its fields")
    parser.add_argument("--drop-rate", type=rate, help="DropConnect rate p of RRAM layers in training")
    parser.add_argument("--fault-rate", type=rate, help="expected deployment fault rate p'")


def model_from_args(args: argparse.Namespace, num_classes: int | None = None, in_chans: int | None = None
                    ) -> nn.Module:
    """A model from ``--model``, ``--num-classes`` and ``--in-chans`` (else ``num_classes``/``in_chans``,
    e.g. the dataset's, else 10 and 3), with ``--pretrained`` and ``--weights`` loaded."""
    kwargs = model_kwargs_from_args(args, num_classes, in_chans)
    pretrained = getattr(args, "pretrained", None)
    if pretrained is not None and not args.model.startswith("timm:"):
        raise ArgumentError(f"--pretrained {pretrained}: only timm models (timm:NAME) read a pretrained file; "
                            "use --weights FILE for other models")
    model = create_model(args.model, **kwargs, **({"pretrained_file": pretrained} if pretrained else {}))
    if getattr(args, "weights", None) is not None:
        load_weights(model, args.weights, what=f"{args.model} ({kwargs['num_classes']} classes, "
                                               f"{kwargs['in_chans']} input channels)")
    return model


def model_kwargs_from_args(args: argparse.Namespace, num_classes: int | None = None, in_chans: int | None = None
                           ) -> dict[str, int]:
    """``num_classes`` and ``in_chans``: the flags, else the given defaults, else 10 and 3."""
    return {"num_classes": args.num_classes or num_classes or 10, "in_chans": args.in_chans or in_chans or 3}


def policy_from_args(args: argparse.Namespace) -> Policy:
    """The policy of ``--policy`` (default `Policy()`), with ``--drop-rate``/``--fault-rate`` applied."""
    data = Policy.from_file(args.policy).to_dict() if args.policy else {}
    for field in ("drop_rate", "fault_rate"):
        if getattr(args, field, None) is not None:
            data[field] = getattr(args, field)
    return Policy.from_dict(data)
