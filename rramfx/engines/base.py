"""What every engine shares: a task, its outcome, and the call that runs a task inside a worker.

A task is plain data: a key (a string naming it in logs and outcomes), a picklable top-level function,
its arguments, and the resources it asks for (CPU cores, GPUs). An engine runs tasks it is given with
`Engine.submit` and yields an `Outcome` for each as it completes (`Engine.completed`), so a caller can
write each result at once and submit tasks that depend on it. A task that raises yields an outcome
carrying its key and traceback text; the other tasks go on.

Every task runs through `run_task`, which sets torch's thread count for the task (what a task computes
on CPU can depend on the thread count: a training step's gradients sum in another order on two
threads), so equal ``threads`` give equal numbers on every engine.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rramfx.engines.allocator import keep_freed_memory
from rramfx.errors import ArgumentError

__all__ = ["Engine", "Outcome", "Task", "available_cores", "positive_count", "run_task"]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args, **kwargs)`` named ``key``, asking for ``cpus`` cores and ``gpus``
    GPUs (a fraction shares a GPU). ``fn`` must be a top-level function (picklable by reference) and
    ``args``/``kwargs`` picklable, so the task can run in another process or on another machine."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    cpus: int = 1
    gpus: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What one task gave: its ``value``, or the ``error`` traceback text when it raised or its worker
    died; ``seconds`` it ran (as measured where it ran, 0 when unknown)."""

    key: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def run_task(key: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any],
             threads: int | None) -> Outcome:
    """Run one task where it is called (in a worker or in-process) on ``threads`` torch threads (None:
    leave them), and return its outcome; an exception becomes the outcome's traceback text. The
    caller's thread count is restored afterwards. The process keeps freed memory for reuse from then
    on (`keep_freed_memory`: faster CPU evaluation, the same numbers)."""
    import torch

    keep_freed_memory()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        value = fn(*args, **dict(kwargs))
    except Exception:
        return Outcome(key, error=traceback.format_exc(), seconds=time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return Outcome(key, value=value, seconds=time.perf_counter() - start)


class Engine:
    """Runs submitted tasks and yields their outcomes as they complete. Use as a context manager (or
    call `close`) so workers and clusters are released."""

    name = "engine"

    def submit(self, task: Task) -> None:
        """Queue ``task``; it may start at once."""
        raise NotImplementedError

    def completed(self) -> Iterator[Outcome]:
        """Yield the outcome of every submitted task as it completes, until none is pending (tasks
        submitted meanwhile, e.g. from the loop over this iterator, are waited for too)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine's workers."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def positive_count(name: str, value: Any, default: int) -> int:
    """``value`` checked as a positive int (``default`` for None); raises `ArgumentError` naming it."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"{name} must be a positive int, got {value!r}")
    return value
