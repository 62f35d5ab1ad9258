"""Example inputs as forward arguments, and tensor shapes read off one ShapeProp run of a graph."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from rramfx.errors import PassError
from rramfx.graph.modules import eval_mode

__all__ = ["as_args", "shape_prop", "tensor_meta"]


def as_args(example_inputs: Any) -> tuple:
    """``example_inputs`` as the positional-argument tuple of a forward call."""
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def shape_prop(gm: fx.GraphModule, example_inputs: Any, what: str = "this pass") -> Any:
    """Run ``gm`` once on ``example_inputs`` (eval mode, no grad) with torch.fx's ShapeProp, so every
    tensor node carries ``node.meta["tensor_meta"]``; returns the output. The training flags of every
    submodule are restored afterwards."""
    from torch.fx.passes.shape_prop import ShapeProp

    with eval_mode(gm), torch.no_grad():
        try:
            return ShapeProp(gm).propagate(*as_args(example_inputs))
        except Exception as e:
            raise PassError(
                f"{what} could not run the model on the example inputs to read tensor shapes "
                f"({type(e).__name__}: {e}). Pass example_inputs that the model accepts."
            ) from e


def tensor_meta(node: fx.Node) -> Any:
    """ShapeProp's TensorMetadata of a node (None when the node is not a tensor or was not propagated)."""
    meta = node.meta.get("tensor_meta")
    return meta if meta is not None and hasattr(meta, "shape") else None
