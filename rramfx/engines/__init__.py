"""Engines that run independent tasks: in this process (``serial``), on a pool of local processes
(``local``, the default) or on Ray (``ray``, a cluster or a private one-machine Ray).

An engine knows nothing of what it runs: a `Task` is a key, a picklable function and its arguments, and
the engine yields an `Outcome` per task as it completes (its value, or its traceback). Sweeps and
parallel Monte-Carlo build their tasks and hand them to `make_engine`'s engine, so every stage scales
out the same way and gives the same numbers on every engine (each task runs on a fixed number of torch
threads, `run_task`).
"""

from __future__ import annotations

from rramfx.engines.allocator import keep_freed_memory
from rramfx.engines.base import Engine, Outcome, Task, available_cores, positive_count, run_task
from rramfx.engines.local import LocalEngine
from rramfx.engines.ray import RayEngine
from rramfx.engines.serial import SerialEngine
from rramfx.errors import ArgumentError

__all__ = ["ENGINES", "Engine", "LocalEngine", "Outcome", "RayEngine", "SerialEngine", "Task", "available_cores",
           "keep_freed_memory", "make_engine", "positive_count", "run_task"]

#: The engine names `make_engine` knows.
ENGINES = ("local", "ray", "serial")


def make_engine(name: str = "local", *, workers: int | None = None, threads: int | None = None,
                address: str | None = None) -> Engine:
    """The engine ``name``: ``local`` with ``workers`` processes of ``threads`` torch threads each (default:
    the available cores, one thread each); ``ray`` on the cluster at ``address`` or, without one, a
    private Ray with ``workers x threads`` cores; ``serial`` in this process on ``threads`` threads."""
    if name not in ENGINES:
        raise ArgumentError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    if address is not None and name != "ray":
        raise ArgumentError(f"address is for engine 'ray' (a Ray cluster), not for engine {name!r}")
    if name == "serial":
        return SerialEngine(threads)
    if name == "local":
        return LocalEngine(workers, threads)
    t = positive_count("threads", threads, 1)
    cpus = positive_count("workers", workers, max(1, available_cores() // t)) * t
    return RayEngine(address, cpus=None if address is not None else cpus, threads=t)
