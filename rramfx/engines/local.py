"""The local engine: a `concurrent.futures.ProcessPoolExecutor` of ``workers`` processes, each computing
on ``threads`` torch threads (``workers × threads`` = the cores given), started with the forkserver
method where the OS has it (spawn elsewhere): no worker inherits the parent's threads or CUDA state.

At most ``workers`` tasks are in the pool at a time, the rest wait here in submission order, so when a
worker process dies (killed, out of memory, a crash in native code) the tasks that were in the pool are
known: they are run again one at a time in a pool of their own, where a second death names the task
that caused it (its outcome carries the error); the other tasks go on in a fresh pool.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool

from rramfx.engines.base import Engine, Outcome, Task, available_cores, positive_count, run_task

__all__ = ["LocalEngine"]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class LocalEngine(Engine):
    """A pool of ``workers`` local processes (default: the cores available divided by ``threads``),
    each on ``threads`` torch threads (default 1). ``preload``: modules the forkserver imports once,
    so workers start without importing them again."""

    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None, *,
                 preload: Sequence[str] = ("torch", "rramfx.engines.base")):
        self.threads = positive_count("threads", threads, 1)
        self.workers = positive_count("workers", workers, max(1, available_cores() // self.threads))
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            self._context.set_forkserver_preload(list(preload))
        self._pool: cf.ProcessPoolExecutor | None = None
        self._quarantine: cf.ProcessPoolExecutor | None = None
        self._backlog: deque[Task] = deque()
        self._suspects: deque[Task] = deque()
        self._running: dict[cf.Future, tuple[Task, bool, cf.ProcessPoolExecutor]] = {}

    def _executor(self, isolated: bool) -> cf.ProcessPoolExecutor:
        attr = "_quarantine" if isolated else "_pool"
        if getattr(self, attr) is None:
            setattr(self, attr, cf.ProcessPoolExecutor(1 if isolated else self.workers, mp_context=self._context,
                                                       initializer=_init_worker, initargs=(self.threads,)))
        return getattr(self, attr)

    def _start(self, task: Task, isolated: bool) -> None:
        pool = self._executor(isolated)
        try:
            future = pool.submit(run_task, task.key, task.fn, task.args, task.kwargs, self.threads)
        except BrokenProcessPool:  # a worker died and its pool's futures are not collected yet
            self._retire(pool, isolated)
            pool = self._executor(isolated)
            future = pool.submit(run_task, task.key, task.fn, task.args, task.kwargs, self.threads)
        self._running[future] = (task, isolated, pool)

    def _retire(self, pool: cf.ProcessPoolExecutor, isolated: bool) -> None:
        """Stop using a broken ``pool``: the next task starts a fresh one."""
        pool.shutdown(wait=False, cancel_futures=True)
        attr = "_quarantine" if isolated else "_pool"
        if getattr(self, attr) is pool:
            setattr(self, attr, None)

    def _fill(self) -> None:
        if self._suspects and not any(iso for _, iso, _ in self._running.values()):
            self._start(self._suspects.popleft(), True)
        while self._backlog and sum(not iso for _, iso, _ in self._running.values()) < self.workers:
            self._start(self._backlog.popleft(), False)

    def submit(self, task: Task) -> None:
        self._backlog.append(task)
        self._fill()

    def completed(self) -> Iterator[Outcome]:
        while self._running or self._backlog or self._suspects:
            self._fill()
            done, _ = cf.wait(list(self._running), return_when=cf.FIRST_COMPLETED)
            for future in done:
                task, isolated, pool = self._running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    self._retire(pool, isolated)  # a broken pool takes no more tasks
                    if isolated:  # it ran alone: this task killed its worker
                        outcome = Outcome(task.key, error=f"the worker process running {task.key} died "
                                                          "(killed, out of memory, or a crash in native code)")
                    else:  # one of the tasks in the pool killed it: run each again alone
                        self._suspects.append(task)
                        continue
                yield outcome

    def close(self) -> None:
        for attr in ("_pool", "_quarantine"):
            pool = getattr(self, attr)
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                setattr(self, attr, None)
