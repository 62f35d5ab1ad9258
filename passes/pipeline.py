"""Composition: run several ``GraphModule -> GraphModule`` passes as one, checking the graph between
them, so that a broken pipeline fails at the pass that broke it and says which ones ran before."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from rramfx.errors import ArgumentTypeError, PassError, RramfxError
from rramfx.graph.record import copy_graph_module, rramfx_meta

__all__ = ["Pass", "Pipeline", "compose", "pass_name"]

Pass = Callable[[fx.GraphModule], fx.GraphModule]


def _short(value: Any) -> str:
    """An argument as it appears in a pass name: tensors by shape, long values cut."""
    if isinstance(value, torch.Tensor):
        return f"Tensor{tuple(value.shape)}"
    if isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def pass_name(p: Callable) -> str:
    """A readable name for a pass: the function name, with the bound arguments of a partial."""
    if isinstance(p, functools.partial):
        args = [_short(a) for a in p.args] + [f"{k}={_short(v)}" for k, v in p.keywords.items()]
        return f"{pass_name(p.func)}({', '.join(args)})"
    if isinstance(p, Pipeline):
        return repr(p)
    return getattr(p, "__name__", None) or type(p).__name__


class Pipeline:
    """Passes run in order on a copy of the input; see `compose`."""

    def __init__(self, passes: tuple[Pass, ...]) -> None:
        self.passes = passes
        self.names = [pass_name(p) for p in passes]

    def __repr__(self) -> str:
        return f"compose({', '.join(self.names)})"

    def __call__(self, gm: fx.GraphModule) -> fx.GraphModule:
        out = copy_graph_module(gm)
        for i, (p, name) in enumerate(zip(self.passes, self.names, strict=True)):
            before = self.names[:i]
            ran = f"after {', '.join(before)}" if before else "as the first pass"
            try:
                result = p(out)
                if not isinstance(result, fx.GraphModule):
                    raise PassError(f"returned {type(result).__name__}, not a torch.fx.GraphModule")
                result.recompile()
                result.graph.lint()
            except Exception as e:
                kind = type(e) if isinstance(e, RramfxError) else PassError  # keep PolicyError etc.
                raise kind(f"pass {i + 1} of {len(self.passes)}, {name} ({ran}), failed: {e}") from e
            out = result
            rramfx_meta(out).setdefault("passes", []).append(name)
        return out


def compose(*passes: Pass) -> Pipeline:
    """One pass made of ``passes`` run in order: ``compose(f, g)(gm) == g(f(gm))``.

    Each pass is a callable ``GraphModule -> GraphModule`` (bind arguments with
    ``functools.partial`` or a lambda). The pipeline copies its input once, so ``gm`` is never
    changed even by a pass that edits in place; after every pass the graph is recompiled and linted,
    and the pass's name is appended to ``rramfx_meta(gm)["passes"]``. A failing pass raises an error
    (PassError, or the toolkit error it raised, such as PolicyError) whose message names it, its
    position and the passes that ran before it, with the original exception chained.
    """
    for i, p in enumerate(passes):
        if not callable(p):
            raise ArgumentTypeError(f"compose: argument {i + 1} is a {type(p).__name__}, not a callable pass")
    return Pipeline(tuple(passes))
