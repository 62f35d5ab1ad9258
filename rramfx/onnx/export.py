"""Export a prepared model to an annotated ONNX graph: every node knows its device, RRAM layers carry
their crossbar tiling and rates, and fault codes travel as ``uint8`` initializers or graph inputs.

How it is done (measured with torch 2.14, onnxscript 0.7): ``torch.onnx.export(dynamo=True,
optimize=False)`` keeps each node's module path in ``pkg.torch.onnx.name_scopes``. rramfx reads the
innermost weighted-layer scope, writes its own keys, then runs onnxscript's optimiser (constant
folding, the default rewrite rules except the BatchNorm-into-Conv fusion, which would change the weights
that a crossbar is programmed with; onnxruntime fuses BatchNorm at session start anyway), with folding
switched off for the nodes that apply fault codes, so the codes stay compact ``uint8`` tensors. The
optimiser's metadata merger keeps the keys; the device rule is applied once more on the final graph.

Fault modes (``faults=``):

- ``None``: the clean deployment graph. RRAM weights are stored pre-scaled by 1/(1-p') (``prescale=True``,
  the default): these are the values to program into a chip whose stuck cells are unknown, and the
  graph computes what the prepared model computes on a chip without a stuck cell (PyTorch: a FaultSet
  of zeros applied). ``prescale=False`` stores the weights as trained: the graph then equals the
  fault-free PyTorch eval output (and the original model's). Either way ``rramfx.weight_scale`` is on
  every RRAM node.
- a `FaultSet`: that chip baked in, its codes as ``uint8`` initializers ``<layer>.fault_codes`` applied by
  ONNX ops (the fault model's own ``corrupt``, exported), then the 1/(1-p') scale.
- ``"inputs"``: the codes of every RRAM layer are graph inputs ``<layer>.fault_codes``; feed them with
  `rramfx.onnx.feed.onnx_fault_inputs` (also importable from here). One file simulates any number of chips.

Crossbar tiles (``rramfx.crossbar`` on RRAM nodes) are counted on a `rramfx.Hardware` (``hardware=``, or
the ``tile=`` shorthand) by the rule the cost model uses, cells per weight included.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import fx

from rramfx.checks import int_in, writable_file
from rramfx.crossbar.chip import apply_faults, clear_faults, crossbar_layers
from rramfx.crossbar.faults import BaseFaultModel, FaultModel, FaultSet
from rramfx.crossbar.hardware import Hardware, resolve_hardware
from rramfx.errors import ArgumentError, ArgumentTypeError, OnnxError
from rramfx.graph.modules import weighted_layers
from rramfx.graph.record import require_meta, rramfx_meta
from rramfx.onnx import meta as M
from rramfx.onnx.feed import onnx_fault_inputs
from rramfx.tensor_checks import check_model_inputs, run_example

__all__ = ["export_onnx", "onnx_fault_inputs"]

if TYPE_CHECKING:
    import onnx_ir as ir

_BINDINGS: dict[int, Any] = {}

#: The opsets torch's dynamo exporter writes (it starts at 18; torch 2.14 knows up to 23).
MIN_OPSET, MAX_OPSET = 18, 23


def export_onnx(
    gm: fx.GraphModule,
    example_inputs: Any,
    path: str | Path,
    faults: FaultSet | str | None = None,
    opset: int | None = None,
    *,
    fault_model: BaseFaultModel | None = None,
    hardware: Hardware | None = None,
    tile: tuple[int, int] | None = None,
    prescale: bool = True,
    dynamic_batch: bool = True,
    class_names: Sequence[str] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> Path:
    """Export the prepared ``gm`` (eval mode, a copy; ``gm`` is not changed) to an annotated ONNX file.

    ``example_inputs``: a tensor or tuple of tensors, batch first. ``faults``: ``None`` (clean deployment
    graph), a `FaultSet` (that chip baked in) or ``"inputs"`` (codes as graph inputs; ``fault_model``
    chooses whose ``corrupt`` is exported, default `FaultModel`). ``hardware``: the `rramfx.Hardware` the
    crossbar tiles are counted on (array size and cells per weight; default ``Hardware()``), the same
    description `rramfx.estimate_cost` takes, so both give every layer the same tile count; ``tile``
    (rows, cols) is a shorthand for ``Hardware(tile=tile)``. ``dynamic_batch``: the batch dimension is
    symbolic (falls back to the example's batch, with a warning, where torch.export cannot keep it
    dynamic). ``class_names`` (output index -> name) and ``preprocessing`` (``mean``/``std`` per channel
    of [0, 1] pixels) go into the file's metadata, with the input shape, so that whoever holds only the
    ``.onnx`` file can feed it (``rramfx.class_names``, ``rramfx.preprocessing``). Returns the written path.
    An unwritable ``path`` (a folder, a file among its parents, a read-only folder) is an `ArgumentError`
    before the export starts.
    """
    path = writable_file("export_onnx path", path)
    placement, policy, args, mode = _check_inputs(gm, example_inputs, faults)
    if opset is not None:
        int_in("export_onnx opset (the opsets torch's exporter writes)", opset, MIN_OPSET, MAX_OPSET)
    data_props = _data_metadata(args[0], class_names, preprocessing)
    hw = resolve_hardware(hardware, tile, where="export_onnx")
    work = copy.deepcopy(gm).eval()
    run_example("export_onnx example_inputs", work, args)
    layers = crossbar_layers(work)
    fault_meta, fault_model = _apply_fault_mode(work, layers, mode, faults, fault_model, prescale)
    model, batch = _to_onnx(work, layers, args, fault_model if mode == "inputs" else None, opset, dynamic_batch)
    infos = {p: M.layer_info(m, placement[p], hw) for p, m in weighted_layers(work).items() if p in placement}
    _annotate(model, infos, placement, protect_faults=mode != "none")
    model.metadata_props.update(_model_metadata(policy, placement, mode, hw, batch, fault_meta))
    model.metadata_props.update(data_props)
    return _save_checked(model, path)


def _check_inputs(gm: fx.GraphModule, example_inputs: Any, faults: Any
                  ) -> tuple[dict[str, str], Any, tuple[torch.Tensor, ...], str]:
    """The placement and policy recorded on ``gm``, the example inputs as a tuple, and the fault mode
    (``none``, ``baked`` or ``inputs``); a bad argument raises `OnnxError` naming it."""
    placement = require_meta(gm, "placement", "prepare the model with rramfx.prepare(model, policy) first")
    policy = rramfx_meta(gm).get("policy")
    args = check_model_inputs("export_onnx example_inputs", gm, example_inputs)
    mode = "none" if faults is None or faults == "none" else "inputs" if faults == "inputs" else "baked"
    if mode == "baked" and not isinstance(faults, FaultSet):
        raise ArgumentError(f"faults must be None, 'inputs' or an rramfx.FaultSet, got {faults!r}")
    return placement, policy, args, mode


def _apply_fault_mode(
    work: fx.GraphModule, layers: Mapping[str, torch.nn.Module], mode: str, faults: Any,
    fault_model: BaseFaultModel | None, prescale: bool,
) -> tuple[dict[str, Any] | None, BaseFaultModel | None]:
    """Put the working copy in the state the graph of ``mode`` computes: clean weights (pre-scaled by
    1/(1-p') with ``prescale``), a baked chip, or ready for codes as inputs. Returns the ``rramfx.faults``
    metadata (None for a clean graph) and the fault model whose ``corrupt`` the inputs mode exports."""
    if mode != "none" and not layers:
        raise OnnxError("faults were asked for but this model has no RRAM layer (see rramfx.placement(gm))")
    if layers:
        clear_faults(work)
    if mode == "none":
        if prescale:
            with torch.no_grad():
                for layer in layers.values():
                    if layer.fault_rate > 0:
                        layer.weight.mul_(1.0 / (1.0 - layer.fault_rate))
        return None, None
    if mode == "baked":
        apply_faults(work, faults)
        return {"fault_model": faults.fault_model.to_dict(), "seed": faults.seed, "counts": faults.counts()}, None
    fault_model = fault_model if fault_model is not None else FaultModel()
    if not isinstance(fault_model, BaseFaultModel):
        raise ArgumentTypeError(f"fault_model must be an rramfx fault model, got {type(fault_model).__name__}")
    return {"fault_model": fault_model.to_dict(), "inputs": {p: f"{p}{M.CODES_SUFFIX}" for p in layers}}, fault_model


def _to_onnx(work: fx.GraphModule, layers: Mapping[str, torch.nn.Module], args: tuple[torch.Tensor, ...],
             code_model: BaseFaultModel | None, opset: int | None, dynamic_batch: bool) -> tuple[ir.Model, str]:
    """The unoptimised ONNX model of the working copy and its batch (``dynamic`` or the fixed size);
    with ``code_model`` (the inputs mode) every RRAM layer's codes are graph inputs applied by it."""
    codes_args: tuple[torch.Tensor, ...] = ()
    key = id(work)
    if code_model is not None:
        codes_args = _bind_codes_as_inputs(work, layers, code_model, key)
    try:
        program, batch = _torch_export(work, args, codes_args, opset, dynamic_batch)
    finally:
        _BINDINGS.pop(key, None)
    model = program.model
    if code_model is not None:
        _rename_code_inputs(model, len(args), list(layers))
    return model, batch


def _annotate(model: ir.Model, infos: Mapping[str, dict[str, str]], placement: Mapping[str, str],
              protect_faults: bool) -> None:
    """Write the layers' keys, optimise and apply the device rule (`rramfx.onnx.optimize`), in place."""
    from rramfx.onnx.optimize import optimize_annotated  # onnx_ir and onnxscript load when an export runs

    optimize_annotated(model, infos, placement, protect_faults=protect_faults)


def _model_metadata(policy: Any, placement: Mapping[str, str], mode: str, hardware: Hardware, batch: str,
                    fault_meta: dict[str, Any] | None) -> dict[str, str]:
    """The model-level ``rramfx.*`` keys (see `rramfx.onnx.meta`)."""
    props = {
        M.VERSION: _version(),
        M.POLICY: json.dumps(policy, sort_keys=True),
        M.PLACEMENT: json.dumps(dict(placement)),
        M.FAULT_MODE: mode,
        M.TILE: hardware.array,
        M.HARDWARE: json.dumps(hardware.to_dict(), sort_keys=True),
        M.BATCH: batch,
    }
    if fault_meta is not None:
        props[M.FAULTS] = json.dumps(fault_meta, sort_keys=True)
    return props


def _data_metadata(example: torch.Tensor, class_names: Sequence[str] | None,
                   preprocessing: Mapping[str, Any] | None) -> dict[str, str]:
    """``rramfx.preprocessing`` (input shape, layout, dtype, mean, std) and ``rramfx.class_names``."""
    pre = dict(preprocessing or {})
    unknown = set(pre) - {"mean", "std"}
    if unknown:
        raise ArgumentError(f"preprocessing takes 'mean' and 'std', got {sorted(unknown)}")
    chans = int(example.shape[1]) if example.dim() > 1 else 1
    for key in ("mean", "std"):
        values = pre.get(key)
        if values is not None:
            values = [float(v) for v in values]
            if len(values) == 1 and chans > 1:  # grey data fed to a colour model: the channel repeated
                values = values * chans
            if len(values) != chans:
                raise ArgumentError(f"preprocessing['{key}'] has {len(values)} values, the input {chans} channels")
        pre[key] = values
    props = {M.PREPROCESSING: json.dumps({"input_shape": list(example.shape[1:]), "layout": "NCHW",
                                          "dtype": str(example.dtype).removeprefix("torch."), **pre})}
    if class_names is not None:
        if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
            raise ArgumentTypeError("class_names must be a list of strings (output index -> class name)")
        props[M.CLASS_NAMES] = json.dumps(list(class_names))
    return props


def _save_checked(model: ir.Model, path: Path) -> Path:
    """Serialise ``model``, check it with onnx.checker (full check) and only then write it to ``path``."""
    import onnx
    import onnx_ir as ir

    proto = ir.serde.serialize_model(model)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # pragma: no cover - a bug of the exporter or of rramfx
        raise OnnxError(f"the exported graph fails onnx.checker: {e}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def _version() -> str:
    from rramfx.version import __version__

    return __version__


# ---- torch side -------------------------------------------------------------------------------------

def _bind_fault_codes(key: int, *codes: torch.Tensor) -> None:
    """Run by torch.export's interpreter at the top of the graph: the crossbar layers read the codes
    from the graph inputs (as they read a buffer), whether the graph calls them or a leaf module does."""
    for layer, c in zip(_BINDINGS[key], codes, strict=True):
        layer.__dict__["fault_codes"] = c


def _bind_codes_as_inputs(
    gm: fx.GraphModule, layers: Mapping[str, torch.nn.Module], fault_model: BaseFaultModel, key: int
) -> tuple[torch.Tensor, ...]:
    """Add one uint8 placeholder per RRAM layer after ``gm``'s inputs, bound to the layers' fault codes."""
    graph = gm.graph
    last = [n for n in graph.nodes if n.op == "placeholder"][-1]
    holders = []
    with graph.inserting_after(last):
        for i in reversed(range(len(layers))):
            holders.insert(0, graph.placeholder(f"rramfx_fault_codes_{i}"))
    with graph.inserting_after(holders[-1]):
        graph.call_function(_bind_fault_codes, (key, *holders))
    gm.recompile()
    for layer in layers.values():
        layer.fault_model = fault_model
        # the exporter prints module reprs; the layer's own would count faults in a symbolic tensor
        layer.__dict__["extra_repr"] = _symbolic_codes_repr
    _BINDINGS[key] = list(layers.values())
    return tuple(torch.zeros(m.weight.shape, dtype=torch.uint8) for m in layers.values())


def _symbolic_codes_repr() -> str:
    return "fault codes from a graph input"


def _amax(self, dim=(), keepdim=False):
    """aten.amax with its default ``dim=[]`` (all axes), which torch 2.14's translation rejects."""
    from onnxscript import opset18 as op

    if dim:
        return op.ReduceMax(self, op.Constant(value_ints=list(dim)), keepdims=int(keepdim))
    return op.ReduceMax(self, keepdims=int(keepdim))


def _torch_export(gm, args, codes, opset, dynamic_batch) -> tuple[Any, str]:
    kwargs = {"dynamo": True, "optimize": False, "verbose": False, "opset_version": opset,
              "custom_translation_table": {torch.ops.aten.amax.default: _amax}}
    batch = int(args[0].shape[0]) if args[0].dim() else 1
    first_error: Exception | None = None
    if dynamic_batch and all(a.dim() > 0 and a.shape[0] == batch for a in args):
        dim = torch.export.Dim("batch")
        ex = tuple(torch.cat([a, a]) if batch == 1 else a for a in args)  # a size-1 dim would specialise
        shapes = tuple({0: dim} for _ in args) + tuple(None for _ in codes)
        try:
            return _quiet_export(gm, (*ex, *codes), dict(kwargs, dynamic_shapes=shapes)), "dynamic"
        except Exception as e:
            first_error = e
    try:
        program = _quiet_export(gm, (*args, *codes), kwargs)
    except Exception as e:
        raise OnnxError(f"torch.onnx.export failed for {type(gm).__name__}: {_summary(e)}") from e
    if first_error is not None:
        warnings.warn(f"rramfx.export_onnx: batch size fixed to {batch} (dynamic batch failed: "
                      f"{_summary(first_error)})", stacklevel=3)
    return program, str(batch)


def _quiet_export(gm, args, kwargs):
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return torch.onnx.export(gm, args, **kwargs)


def _summary(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _rename_code_inputs(model: ir.Model, n_inputs: int, paths: list[str]) -> None:
    for value, path in zip(model.graph.inputs[n_inputs:], paths, strict=True):
        value.name = f"{path}{M.CODES_SUFFIX}"
