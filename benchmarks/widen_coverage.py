"""How much of the CNN zoo `widen_channels(..., preserve_function=True)` widens, as a new user would try it.

One small representative per CNN family of timm (the smallest variant of each; the family is the name
people use, usually the timm module or the block type that sets it apart) plus torchvision's CNNs. Each
model is built with ``pretrained=False`` and 10 classes, traced with `rramfx.trace`, and widened 1.5x
with ``preserve_function=True`` on one small random input. A model *widens* when the pass returns, the
output is unchanged (relative error max|new - old| / max|old| <= 1e-4), nothing was kept at its width,
and the parameter count grew as a 1.5x widening should: hidden layers grow 1.5 x 1.5, the input
layer and the classifier 1.5, so the ratio lies in [2.0, 2.3]. A model the pass refuses must say why in
a PassError; the table prints the first line of it. Models that do not trace are listed but left out
of the ratio (widening needs a graph).

    PYTHONPATH=. python benchmarks/widen_coverage.py [--models resnet10t,convnext_atto] [--size 64]
        [--factor 1.5] [--jobs 1] [--markdown]

The coverage ratio counts families: a family is covered when its representative widens.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import traceback
import warnings
from dataclasses import dataclass

import torch

#: (family, source, model): the smallest variant of each CNN family. ``source`` is timm or torchvision.
FAMILIES: list[tuple[str, str, str]] = [
    ("resnet", "timm", "resnet10t"),
    ("resnet-d (deep stem, avg-pool shortcut)", "timm", "resnet18d"),
    ("resnext", "timm", "resnext26ts"),
    ("seresnet / seresnext", "timm", "seresnext26d_32x4d"),
    ("legacy senet", "timm", "legacy_seresnet18"),
    ("ecaresnet", "timm", "ecaresnet26t"),
    ("anti-aliased resnet (BlurPool)", "timm", "resnetblur18"),
    ("gcresnet (global context)", "timm", "gcresnet33ts"),
    ("skresnet", "timm", "skresnet18"),
    ("res2net", "timm", "res2net50_14w_8s"),
    ("resnest", "timm", "resnest14d"),
    ("resnetv2 (pre-activation, BiT)", "timm", "resnetv2_18"),
    ("regnetx", "timm", "regnetx_002"),
    ("regnety", "timm", "regnety_002"),
    ("regnetz", "timm", "regnetz_b16"),
    ("efficientnet", "timm", "efficientnet_b0"),
    ("efficientnetv2", "timm", "efficientnetv2_rw_t"),
    ("mixnet (mixed kernels)", "timm", "mixnet_s"),
    ("mobilenetv2", "timm", "mobilenetv2_050"),
    ("mobilenetv3", "timm", "mobilenetv3_small_050"),
    ("mobilenetv4", "timm", "mobilenetv4_conv_small"),
    ("mnasnet", "timm", "mnasnet_small"),
    ("fbnet", "timm", "fbnetc_100"),
    ("spnasnet", "timm", "spnasnet_100"),
    ("tinynet", "timm", "tinynet_e"),
    ("lcnet", "timm", "lcnet_050"),
    ("hardcorenas", "timm", "hardcorenas_a"),
    ("ghostnet", "timm", "ghostnet_050"),
    ("ghostnetv2", "timm", "ghostnetv2_100"),
    ("repghost", "timm", "repghostnet_050"),
    ("rexnet", "timm", "rexnet_100"),
    ("densenet", "timm", "densenet121"),
    ("dpn", "timm", "dpn48b"),
    ("dla", "timm", "dla46_c"),
    ("hrnet", "timm", "hrnet_w18_small"),
    ("cspnet", "timm", "cspresnet50"),
    ("darknet", "timm", "darknet17"),
    ("cspnext", "timm", "cspnext_tiny"),
    ("vovnet", "timm", "ese_vovnet19b_slim_dw"),
    ("selecsls", "timm", "selecsls42b"),
    ("tresnet", "timm", "tresnet_m"),
    ("nfnet", "timm", "nf_regnet_b0"),
    ("repvgg", "timm", "repvgg_a0"),
    ("mobileone", "timm", "mobileone_s0"),
    ("gernet", "timm", "gernet_s"),
    ("repvit", "timm", "repvit_m0_9"),
    ("starnet", "timm", "starnet_s050"),
    ("fasternet (partial convolution)", "timm", "fasternet_t0"),
    ("convnext", "timm", "convnext_atto"),
    ("convnextv2 (GRN)", "timm", "convnextv2_atto"),
    ("convmixer", "timm", "convmixer_768_32"),
    ("inception", "timm", "inception_v3"),
    ("inception-resnet", "timm", "inception_resnet_v2"),
    ("inceptionnext", "timm", "inception_next_atto"),
    ("xception", "timm", "xception41"),
    ("nasnet", "timm", "nasnetalarge"),
    ("pnasnet", "timm", "pnasnet5large"),
    ("hgnet", "timm", "hgnetv2_b0"),
    ("fastvit", "timm", "fastvit_t8"),
    ("efficientvit (MIT)", "timm", "efficientvit_b0"),
    ("mambaout (gated CNN)", "timm", "mambaout_femto"),
    ("rdnet", "timm", "rdnet_tiny"),
    ("poolformer (metaformer)", "timm", "poolformerv2_s12"),
    ("vgg", "timm", "vgg11_bn"),
    ("mobilenetv1", "timm", "mobilenetv1_100"),
    ("anti-aliased avg-pool resnet (resnetaa)", "timm", "resnetaa34d"),
    ("resnet-rs", "timm", "resnetrs50"),
    ("regnetv (pre-activation regnet)", "timm", "regnetv_040"),
    ("cs3darknet", "timm", "cs3darknet_s"),
    ("eca-nfnet", "timm", "eca_nfnet_l0"),
    ("condconv efficientnet", "timm", "efficientnet_cc_b0_4e"),
    ("edgetpu efficientnet", "timm", "efficientnet_es"),
    ("semnasnet", "timm", "semnasnet_050"),
    ("ghostnetv3", "timm", "ghostnetv3_050"),
    ("lcnetv2", "timm", "lcnetv2_small"),
    ("poolformer v1 (GroupNorm1)", "timm", "poolformer_s12"),
    ("focalnet (focal modulation)", "timm", "focalnet_tiny_srf"),
    ("hgnet v1", "timm", "hgnet_tiny"),
    ("inception-v4", "timm", "inception_v4"),
    ("legacy xception", "timm", "legacy_xception"),
    ("gc-efficientnetv2", "timm", "gc_efficientnetv2_rw_t"),
    ("densenet-blur", "timm", "densenetblur121d"),
    ("tv resnet", "torchvision", "resnet18"),
    ("tv resnext / wide resnet", "torchvision", "resnext50_32x4d"),
    ("tv alexnet", "torchvision", "alexnet"),
    ("tv vgg", "torchvision", "vgg11_bn"),
    ("tv squeezenet", "torchvision", "squeezenet1_1"),
    ("tv googlenet", "torchvision", "googlenet"),
    ("tv inception_v3", "torchvision", "inception_v3"),
    ("tv densenet", "torchvision", "densenet121"),
    ("tv shufflenet_v2 (channel shuffle)", "torchvision", "shufflenet_v2_x0_5"),
    ("tv mobilenet_v2", "torchvision", "mobilenet_v2"),
    ("tv mobilenet_v3", "torchvision", "mobilenet_v3_small"),
    ("tv mnasnet", "torchvision", "mnasnet0_5"),
    ("tv efficientnet (stochastic depth)", "torchvision", "efficientnet_b0"),
    ("tv regnet", "torchvision", "regnet_y_400mf"),
    ("tv convnext", "torchvision", "convnext_tiny"),
]

#: Inputs larger than the default where an architecture needs them.
INPUT_SIZE = {"inception_v3": 96, "inception_resnet_v2": 96, "inception_v4": 96, "nasnetalarge": 96,
              "pnasnet5large": 96}
TOLERANCE = 1e-4
RATIO = (2.0, 2.3)


@dataclass
class Row:
    family: str
    source: str
    model: str
    result: str  # widened | refused | failed | no trace | bad growth | changed output
    error: float | None = None
    ratio: float | None = None
    reason: str = ""
    seconds: float = 0.0


def build(source: str, name: str) -> torch.nn.Module:
    """The model with random weights and 10 classes (torchvision's inception_v3 without its aux head)."""
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=10)
    import torchvision

    kwargs = {"weights": None, "num_classes": 10}
    if name in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, init_weights=False)
    return torchvision.models.get_model(name, **kwargs)


def first_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    return text if len(text) <= 400 else text[:397] + "..."


def measure(family: str, source: str, name: str, size: int, factor: float) -> Row:
    """Trace and widen one model; never raises."""
    import rramfx
    from rramfx.errors import PassError
    from rramfx.graph.record import rramfx_meta
    from rramfx.passes import widen_channels

    start = time.perf_counter()
    row = Row(family, source, name, "failed")
    torch.manual_seed(0)
    side = INPUT_SIZE.get(name, size)
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    try:
        model = build(source, name).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = rramfx.trace(model)
    except Exception as e:  # the model or the tracer: not a widening result
        row.result, row.reason = "no trace", first_line(e)
        row.seconds = time.perf_counter() - start
        return row
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = widen_channels(gm, factor, x, preserve_function=True)
            with torch.no_grad():
                got, want = out.eval()(x), model(x)
        row.error = ((got - want).abs().max() / want.abs().max()).item()
        row.ratio = rramfx.param_count(out) / rramfx.param_count(model)
        kept = rramfx_meta(out)["widen"]["kept"]
        if kept:
            row.result, row.reason = "kept", f"{len(kept)} channel set(s) kept: {kept[0]['reason']}"
        elif not row.error <= TOLERANCE:
            row.result, row.reason = "changed output", f"relative error {row.error:.2e}"
        elif not RATIO[0] <= row.ratio <= RATIO[1]:
            row.result, row.reason = "bad growth", f"parameters x{row.ratio:.2f}"
        else:
            row.result = "widened"
    except PassError as e:
        row.result, row.reason = "refused", first_line(e)
    except Exception as e:  # a crash of the pass is a bug: show where
        frame = traceback.extract_tb(e.__traceback__)[-1]
        row.result = "failed"
        row.reason = f"{first_line(e)} ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"
    row.seconds = time.perf_counter() - start
    return row


def _measure_star(args: tuple) -> Row:
    torch.set_num_threads(1)
    return measure(*args)


def table(rows: list[Row], markdown: bool) -> str:
    head = ("family", "model", "result", "rel. error", "params", "reason")
    lines = []
    if markdown:
        lines += ["| " + " | ".join(head) + " |", "| --- | --- | --- | ---: | ---: | --- |"]
    for r in rows:
        err = f"{r.error:.1e}" if r.error is not None else ""
        ratio = f"x{r.ratio:.2f}" if r.ratio is not None else ""
        model = f"{r.model}" + (" (tv)" if r.source == "torchvision" else "")
        cells = (r.family, model, r.result, err, ratio, r.reason.replace("|", "/"))
        if markdown:
            lines.append("| " + " | ".join(cells) + " |")
        else:
            lines.append(f"{r.family[:34]:34} {model[:26]:26} {r.result:14} {err:>8} {ratio:>6} {r.seconds:5.1f}s "
                         f"{r.reason}")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    traced = [r for r in rows if r.result != "no trace"]
    ok = [r for r in traced if r.result == "widened"]
    refused = [r for r in traced if r.result == "refused"]
    other = len(traced) - len(ok) - len(refused)
    return (f"coverage: {len(ok)}/{len(traced)} families that trace widen x1.5 with the output kept "
            f"({100 * len(ok) / max(len(traced), 1):.0f}%); {len(refused)} refused with a PassError, "
            f"{other} other outcome(s); {len(rows) - len(traced)} did not trace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="", help="comma-separated model names (default: all families)")
    parser.add_argument("--size", type=int, default=64, help="input side length (some models need more)")
    parser.add_argument("--factor", type=float, default=1.5)
    parser.add_argument("--jobs", type=int, default=1, help="models measured in parallel processes")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()
    wanted = {m for m in args.models.split(",") if m}
    chosen = [f for f in FAMILIES if not wanted or f[2] in wanted]
    work = [(fam, src, name, args.size, args.factor) for fam, src, name in chosen]
    start = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=4) as pool:
            rows = pool.map(_measure_star, work, chunksize=1)
    else:
        rows = [_measure_star(w) for w in work]
    print(table(rows, args.markdown))
    print()
    print(summary(rows))
    print(f"{len(rows)} models in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
