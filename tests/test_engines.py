"""Engines: the same tasks give the same outcomes in-process, on the local pool and on Ray; a failing
task is reported with its key and traceback while the others finish; a private Ray stays on 127.0.0.1."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from rramfx.engines import ENGINES, Task, make_engine
from rramfx.errors import ArgumentError


def draw(seed: int) -> list[float]:
    """A task whose numbers depend on its seed only: a small seeded matmul on the worker's threads."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(64, 64, generator=g)
    return [*(a @ a).sum(dim=0).tolist(), float(torch.get_num_threads())]


def fail_on_three(seed: int) -> int:
    if seed == 3:
        raise RuntimeError("seed three is refused")
    return seed * 10


def _outcomes(engine, fn, seeds):
    with engine:
        for s in seeds:
            engine.submit(Task(f"cell{s}", fn, (s,)))
        return {o.key: o for o in engine.completed()}


@pytest.mark.parametrize("name", ["serial", "local"])
def test_engines_agree_and_report_failures(name):
    reference = {f"cell{s}": draw(s) for s in range(4)}
    got = _outcomes(make_engine(name, workers=2, threads=1), draw, range(4))
    assert {k: o.value for k, o in got.items()} == {k: [*v[:-1], 1.0] for k, v in reference.items()}
    mixed = _outcomes(make_engine(name, workers=2, threads=1), fail_on_three, range(5))
    assert sorted(k for k, o in mixed.items() if o.ok) == ["cell0", "cell1", "cell2", "cell4"]
    assert mixed["cell4"].value == 40
    assert "seed three is refused" in mixed["cell3"].error and "Traceback" in mixed["cell3"].error


def test_engine_arguments_are_checked():
    with pytest.raises(ArgumentError, match="engine must be one of local, ray, serial"):
        make_engine("dask")
    with pytest.raises(ArgumentError, match="workers must be a positive int"):
        make_engine("local", workers=0)
    with pytest.raises(ArgumentError, match="address is for engine 'ray'"):
        make_engine("local", address="auto")
    assert ENGINES == ("local", "ray", "serial")


def _ray_listening_sockets() -> list[str]:
    """The local addresses of every listening TCP socket held by a Ray process (from ``ss -tlnp``)."""
    ray_pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if re.search(r"ray|raylet|gcs_server|plasma", cmd) and int(pid) != os.getpid():
            ray_pids.add(int(pid))
    listening = []
    for line in subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True, check=True).stdout.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if pids & ray_pids:
            listening.append(line.split()[3])
    return listening


@pytest.mark.xdist_group("ray")
def test_ray_engine_matches_and_stays_on_loopback():
    engine = make_engine("ray", workers=2, threads=1)  # before any `import ray`: it sets the loopback environment
    import ray

    try:
        assert ray.is_initialized()
        sockets = _ray_listening_sockets()
        assert sockets, "no listening socket of a Ray process was found"
        assert all(s.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for s in sockets), sockets
        got = _outcomes(engine, draw, range(4))
    finally:
        engine.close()
    assert not ray.is_initialized()
    assert {k: o.value for k, o in got.items()} == {f"cell{s}": [*draw(s)[:-1], 1.0] for s in range(4)}
