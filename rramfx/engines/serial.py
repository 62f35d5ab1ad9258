"""The serial engine: every task in this process, one after another, in submission order (for
debugging: breakpoints and print work; the numbers equal the other engines' at the same threads)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from rramfx.engines.base import Engine, Outcome, Task, positive_count, run_task

__all__ = ["SerialEngine"]


class SerialEngine(Engine):
    """Runs tasks in-process on ``threads`` torch threads each (default 1, as one local worker)."""

    name = "serial"

    def __init__(self, threads: int | None = None):
        self.threads = positive_count("threads", threads, 1)
        self._queue: deque[Task] = deque()

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def completed(self) -> Iterator[Outcome]:
        while self._queue:
            t = self._queue.popleft()
            yield run_task(t.key, t.fn, t.args, t.kwargs, self.threads)
