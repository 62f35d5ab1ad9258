"""keep_freed_memory: the processes that run rramfx's tasks keep freed blocks for reuse (glibc)."""

import os
import subprocess
import sys

import pytest

from rramfx.engines import LocalEngine, Task
from rramfx.engines.allocator import _is_glibc

pytestmark = pytest.mark.skipif(not _is_glibc(), reason="glibc's mallopt only")

# Page faults of allocating, filling and freeing blocks of 5-12 MiB 20 times, before and after the call.
_PROBE = """
import resource, numpy as np
from rramfx.engines import keep_freed_memory

def faults():  # as a forward pass does: blocks of several sizes live together, then all freed
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        live = [np.ones(n << 20, np.uint8) for n in (12, 7, 12, 5)]
        del live
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

before = faults()
applied = keep_freed_memory()
faults()  # the first allocation after the call may still fault its pages in once
print(applied, before, faults())
"""


def _probe(**env: str) -> tuple[str, int, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=environ, check=True)
    applied, before, after = out.stdout.split()
    return applied, int(before), int(after)


def test_freed_blocks_are_reused_without_page_faults():
    applied, before, after = _probe()
    assert applied == "True"
    assert before >= 100  # faulted in anew each round (36 MiB: 9,216 pages of 4 KiB; 18 of 2 MiB with huge pages)
    assert after < before / 20


def test_the_users_own_malloc_settings_win():
    applied, before, after = _probe(MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False" and after > before / 2


def _applied_in_worker() -> bool:
    from rramfx.engines import allocator

    return allocator._applied


def test_engine_workers_keep_freed_memory():
    with LocalEngine(1, 1) as engine:
        engine.submit(Task("probe", _applied_in_worker, ()))
        outcomes = list(engine.completed())
    assert [o.value for o in outcomes] == [True]
