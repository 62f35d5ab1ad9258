"""The Ray engine: every task a Ray remote call with the task's resources, on a cluster the caller
names (``address``) or on a private one-machine Ray started here.

A private Ray listens and connects on 127.0.0.1 only: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is put in
the environment before Ray is imported, the node address is 127.0.0.1 and the dashboard is off. A
cluster the user names keeps its own network settings. A Ray started here is shut down by `close`; one
that was running already (``ray.init`` called by the caller) is used and left running.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

from rramfx.engines.base import Engine, Outcome, Task, available_cores, positive_count, run_task
from rramfx.errors import ArgumentError

__all__ = ["RayEngine", "import_ray"]

#: The environment a private, loopback-only Ray needs before ``import ray``.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def import_ray(local: bool) -> Any:
    """The ``ray`` module; for a ``local`` Ray the loopback environment is set first. A missing Ray is
    an `ArgumentError` that says which extra installs it."""
    if local:
        if "ray" in sys.modules and any(os.environ.get(k) != v for k, v in LOOPBACK_ENV.items()):
            raise ArgumentError("Ray was imported before rramfx could keep a private Ray on 127.0.0.1: set "
                                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray, or start Ray yourself "
                                "(ray.init) or pass an address")
        os.environ.update(LOOPBACK_ENV)
    try:
        import ray
    except ImportError as e:
        raise ArgumentError("engine 'ray' needs Ray: pip install 'rramfx[ray]' (or use engine 'local')") from e
    return ray


class RayEngine(Engine):
    """Runs tasks as Ray remote calls, each on ``threads`` torch threads and asking Ray for the task's
    ``cpus``/``gpus``. ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``); None starts
    a private Ray on this machine with ``cpus`` cores (default: all available)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus: int | None = None, threads: int | None = None):
        self.threads = positive_count("threads", threads, 1)
        cpus = positive_count("cpus", cpus, available_cores())
        ray = import_ray(local=address is None)
        self._ray, self._owned = ray, False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            self._owned = True
        self._remote = ray.remote(run_task)
        self._pending: dict[Any, Task] = {}

    def submit(self, task: Task) -> None:
        ref = self._remote.options(num_cpus=task.cpus, num_gpus=task.gpus, max_retries=0).remote(
            task.key, task.fn, task.args, dict(task.kwargs), self.threads)
        self._pending[ref] = task

    def completed(self) -> Iterator[Outcome]:
        ray = self._ray
        while self._pending:
            ready, _ = ray.wait(list(self._pending), num_returns=1)
            for ref in ready:
                task = self._pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died or the task could not run
                    yield Outcome(task.key, error=f"Ray could not run {task.key}: {e}")

    def close(self) -> None:
        self._pending.clear()
        if self._owned:
            self._ray.shutdown()
            self._owned = False
