"""``rramfx export``: prepare a model and write it as an annotated ONNX graph."""

from __future__ import annotations

import argparse
import warnings

from rramfx.cli.arguments import count, image_shape, rate
from rramfx.cli.common import add_model_args, add_policy_args, model_from_args, policy_from_args
from rramfx.cli.hardware import add_hardware_args, hardware_from_args
from rramfx.errors import ArgumentError

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="prepare a model and export it to annotated ONNX",
        description="Prepare a model with a policy and export it to ONNX with rramfx metadata on every "
                    "node (device, module, crossbar tiling on --tile arrays with --cells-per-weight, as `rramfx cost` "
                    "counts them); fault codes baked in, as inputs, or none.")
    add_model_args(p)
    add_policy_args(p)
    for action in p._actions:  # --trained replaces --model
        if action.dest == "model":
            action.required = False
    p.add_argument("--trained", metavar="PATH",
                   help="a trained model file (rramfx.save_prepared / `rramfx train`) instead of --model; "
                        "--fault-rate then sets the deployment p'. Its input shape, normalisation and class names "
                        "go into the ONNX metadata (rramfx.preprocessing, rramfx.class_names)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--faults", type=_fault_mode, default="none", metavar="inputs|none|SEED",
                   help="'none': clean deployment graph (default); 'inputs': fault codes are graph inputs "
                        "(for ort_monte_carlo); an integer SEED: bake in the chip drawn with that seed")
    p.add_argument("--chip", metavar="FILE",
                   help="a tested chip file (rramfx.Chip.save): bake the weights its crossbars read (its encoding, "
                        "its stuck cells, x 1/(1-p')) into the graph; the RRAM layers take its arrays in module "
                        "order, and its array size and encoding are the ones annotated")
    p.add_argument("--mapping", choices=("naive", "aware"), default="naive",
                   help="with --chip: 'naive' puts the layers on the chip's arrays in module order (default); "
                        "'aware' chooses arrays and routes rows and columns around the chip's stuck cells")
    p.add_argument("--measured-fault-rate", action="store_true",
                   help="with --chip: scale each RRAM layer by 1/(1-p') with p' the weight magnitude the chip's "
                        "stuck cells take from that layer (the p' rule for --mapping aware), instead of --fault-rate")
    p.add_argument("--sa1", type=rate, help="SA1 rate of the fault model (default: the policy's fault_rate)")
    p.add_argument("--sa0", type=rate, default=0.0, help="SA0 rate of the fault model (default 0)")
    p.add_argument("--input-size", type=image_shape, metavar="C,H,W",
                   help="C,H,W of one input (default: a --trained model's input shape, else IN_CHANS,32,32)")
    add_hardware_args(p, performance=False)
    p.add_argument("--opset", type=count, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-prescale", action="store_true",
                   help="clean graph only: keep RRAM weights as trained instead of x 1/(1-p')")
    p.set_defaults(run=run)


def _fault_mode(text: str) -> str:
    """``--faults``: 'none', 'inputs' or a chip seed (an integer >= 0), as a lower-case string."""
    mode = text.strip().lower()
    if mode not in ("none", "inputs") and not mode.isdigit():
        raise argparse.ArgumentTypeError(f"must be 'inputs', 'none' or a non-negative integer seed, got {text!r}")
    return mode


def _input_size(args: argparse.Namespace) -> tuple[int, ...]:
    if args.input_size is None:
        return tuple(args.trained_shape) if getattr(args, "trained_shape", None) else (args.in_chans or 3, 32, 32)
    return args.input_size


def _prepared(args: argparse.Namespace):
    """The prepared model: from --model and the policy flags, or from a --trained file."""
    from rramfx.crossbar.chip import crossbar_layers, set_fault_rate
    from rramfx.graph.record import rramfx_meta
    from rramfx.preparation import prepare

    if args.trained is None:
        if args.model is None:
            raise ArgumentError("give --model SPEC (timm:NAME, tv:NAME, pkg.module:factory) or --trained PATH")
        return prepare(model_from_args(args).eval(), policy_from_args(args)).eval()
    if any(v is not None for v in (args.model, args.policy, args.drop_rate, args.weights, args.pretrained)):
        raise ArgumentError("--trained takes the model, its weights and its policy from the file; drop "
                            "--model/--weights/--pretrained/--policy/--drop-rate")
    from rramfx.training.saved import load_prepared

    gm, record = load_prepared(args.trained)
    args.in_chans = int(record.get("model_kwargs", {}).get("in_chans", args.in_chans or 3))
    args.trained_shape = record.get("input_shape")
    data = record.get("data") or {}
    args.class_names = data.get("class_names")
    args.preprocessing = {k: data[k] for k in ("mean", "std") if data.get(k) is not None}
    if args.fault_rate is not None:  # the deployment p' may differ from the training policy's
        if crossbar_layers(gm):
            set_fault_rate(gm, args.fault_rate)
        rramfx_meta(gm)["policy"] = {**rramfx_meta(gm).get("policy", {}), "fault_rate": args.fault_rate}
    return gm.eval()


def _chip(args: argparse.Namespace, mode: str):
    """The --chip file's `rramfx.Chip`, or None; checked against the flags it cannot go with."""
    if getattr(args, "chip", None) is None:
        if args.measured_fault_rate:
            raise ArgumentError("--measured-fault-rate measures p' on a tested chip: give --chip FILE")
        return None
    if args.measured_fault_rate and args.fault_rate is not None:
        raise ArgumentError("--measured-fault-rate measures p' on the chip: drop --fault-rate")
    if mode != "none":
        raise ArgumentError(f"--chip bakes that chip's read weights in: drop --faults {args.faults}")
    if args.no_prescale:
        raise ArgumentError("--no-prescale is for the clean graph only: a --chip graph reads its weights x 1/(1-p')")
    from rramfx.crossbar.chipfile import Chip

    return Chip.load(args.chip)


def run(args: argparse.Namespace) -> int:
    import torch  # heavy imports only when the command runs

    from rramfx.checks import writable_file
    from rramfx.crossbar.chip import crossbar_layers, inject_faults
    from rramfx.crossbar.faults import FaultModel
    from rramfx.graph.record import rramfx_meta
    from rramfx.onnx.chip_export import export_on_chip
    from rramfx.onnx.export import export_onnx

    mode = args.faults
    out = writable_file("--out", args.out)  # before the model is built and traced
    chip = _chip(args, mode)
    hardware = hardware_from_args(args) if chip is None else chip.hardware
    size = _input_size(args) if args.input_size is not None else None  # checked before the slow part
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = _prepared(args)
        size = size or _input_size(args)
        p_prime = float(rramfx_meta(gm).get("policy", {}).get("fault_rate", 0.0))
        fault_model = FaultModel(sa1=p_prime if args.sa1 is None else args.sa1, sa0=args.sa0)
        example = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
        if mode.isdigit():
            if fault_model.sa1 == 0 and fault_model.sa0 == 0:
                raise ArgumentError("--faults SEED bakes in a chip, but the fault model draws no faults: "
                                "give --sa1/--sa0 rates (or a policy with fault_rate > 0)")
            faults = inject_faults(gm, fault_model, seed=int(mode))
        else:
            faults = None if mode == "none" else "inputs"
        if chip is not None:
            path = export_on_chip(gm, example, chip, out, mapping=args.mapping, opset=args.opset,
                                  fault_rate="measured" if args.measured_fault_rate else None,
                                  class_names=getattr(args, "class_names", None),
                                  preprocessing=getattr(args, "preprocessing", None))
        else:
            path = export_onnx(gm, example, out, faults=faults, opset=args.opset, fault_model=fault_model,
                               hardware=hardware, prescale=not args.no_prescale,
                               class_names=getattr(args, "class_names", None),
                               preprocessing=getattr(args, "preprocessing", None))
    layers = crossbar_layers(gm)
    shown = f"read weights of chip {args.chip}" if chip is not None else (
        f"baked (seed {mode})" if mode.isdigit() else mode)
    print(f"wrote {path}: {len(layers)} RRAM layers, fault mode {shown}, input {'x'.join(map(str, size))}")
    for w in caught:
        if not issubclass(w.category, (DeprecationWarning, FutureWarning)):
            print(f"warning: {w.message}")
    return 0
