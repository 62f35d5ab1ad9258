"""onnxruntime feeds for annotated graphs: a chip's fault codes, and a model's inputs; and the session
options every rramfx session starts from.

Kept apart from the exporter so that the simulator (`rramfx.onnx.simulate`), the partition runner
(`rramfx.onnx.plan`) and users build their feeds without loading the export machinery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rramfx.crossbar.faults import FaultSet
from rramfx.errors import ArgumentTypeError, FaultError, OnnxError
from rramfx.onnx import meta as M

__all__ = ["feed_dict", "onnx_fault_inputs", "session_options"]


def session_options(threads: int | None = None) -> Any:
    """onnxruntime ``SessionOptions`` with warnings only from errors up, and ``threads`` intra-op threads
    (one inter-op) when given (None: onnxruntime's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
    return opts


def onnx_fault_inputs(faults: FaultSet, onnx_path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The onnxruntime feed of a chip for a graph exported with ``faults="inputs"``:
    ``{"<layer>.fault_codes": uint8 array}`` for every layer of ``faults``.

    With ``onnx_path`` the feed is checked against that file's fault-code inputs (names and shapes),
    and RRAM layers missing from ``faults`` get all-zero (healthy) codes, as `rramfx.apply_faults` does."""
    if not isinstance(faults, FaultSet):
        raise ArgumentTypeError(f"faults must be an rramfx.FaultSet, got {type(faults).__name__}")
    feed = {f"{path}{M.CODES_SUFFIX}": codes.numpy().astype(np.uint8, copy=False) for path, codes in faults.items()}
    if onnx_path is None:
        return feed
    model = M.load_annotated(onnx_path, load_weights=False)
    meta = M.model_meta(model, onnx_path)
    if meta["fault_mode"] != "inputs":
        raise OnnxError(f"'{onnx_path}' takes no fault codes (fault mode {meta['fault_mode']!r}); "
                        "export with faults='inputs'")
    shapes = {i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in model.graph.input}
    names = {f"{p}{M.CODES_SUFFIX}" for p in meta["faults"]["inputs"]}
    for name, codes in feed.items():
        if name not in names:
            raise FaultError(f"the fault set has codes for '{name[: -len(M.CODES_SUFFIX)]}', which is not an "
                             f"RRAM layer of '{onnx_path}'")
        if codes.shape != shapes[name]:
            raise FaultError(f"codes for '{name}' have shape {codes.shape}, '{onnx_path}' takes {shapes[name]}")
    return {n: feed.get(n, np.zeros(shapes[n], np.uint8)) for n in sorted(names)}


def feed_dict(names: Sequence[str], inputs: Any) -> dict[str, np.ndarray]:
    """An onnxruntime feed for the inputs ``names`` of a model, from a dict, a sequence in input order
    or, for a single-input model, one array or tensor; a missing or extra input raises `OnnxError`."""
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise OnnxError(f"missing model input(s) {', '.join(missing[:5])}; the model takes {', '.join(names)}")
        return {n: _array(inputs[n]) for n in names}
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != len(names):
            raise OnnxError(f"got {len(inputs)} inputs, the model takes {len(names)}: {', '.join(names)}")
        return {n: _array(v) for n, v in zip(names, inputs, strict=True)}
    if len(names) != 1:
        raise OnnxError(f"the model takes {len(names)} inputs ({', '.join(names[:5])}...): pass a dict")
    return {names[0]: _array(inputs)}


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
