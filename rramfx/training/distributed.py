"""One training on several processes: `rramfx.train` and ``rramfx train`` under ``torchrun``.

``torchrun --standalone --nproc-per-node N -m rramfx train ...`` (or a script calling `rramfx.train`)
starts N copies of the program; each is one *rank*. `init_distributed` sees the launcher's variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins the process group, initialising it when nobody
has (gloo on the CPU, nccl on CUDA; one GPU per rank, ``cuda:LOCAL_RANK``, see `rank_device`).
A `Ranks` then says how the training loop shares the work (all of it a no-op in one process, so a
plain run is unchanged):

- `Ranks.wrap`: the prepared GraphModule in ``DistributedDataParallel`` (gradients averaged over
  ranks every step; rank 0's parameters and BatchNorm buffers broadcast at the start).
- `Ranks.shard`: each rank its own share of every epoch. An `rramfx.data.ImageLoader` is sharded with
  `ImageLoader.shard` (the semantics of ``torch.utils.data.DistributedSampler``); a torch
  ``DataLoader`` must come with a ``DistributedSampler``, which is told the epoch.
- `Ranks.seed_epoch`: each rank draws its own DropConnect masks, from torch's generator seeded with
  `rank_seed` (training seed, rank, epoch) at the start of every epoch, so a resumed run draws what
  an uninterrupted one would.
- `Ranks.end_epoch`: rank 0's BatchNorm statistics copied to every rank and the epoch's loss and
  accuracy averaged over ranks, so every rank holds the same model and the same history.
- `Ranks.on_main`: rank 0 alone writes checkpoints and the saved model; the others wait at a barrier.

`finish` destroys the process group at the end (``rramfx train`` calls it; a group rramfx
initialised is also destroyed when the interpreter exits).
"""

from __future__ import annotations

import atexit
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from rramfx.graph.modules import module_device

__all__ = ["Ranks", "finish", "init_distributed", "launched", "rank_device", "rank_seed"]

_owned = {"group": False}  # whether init_distributed created the process group (finish destroys it)


def launched() -> bool:
    """Whether a launcher (torchrun, or any that sets ``RANK`` and ``WORLD_SIZE``) started this process
    as one of several ranks."""
    if not dist.is_available():
        return False
    has_rank = dist.is_torchelastic_launched() or "RANK" in os.environ
    return has_rank and int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: str | torch.device) -> torch.device:
    """The device of this rank: a CUDA device without an index becomes ``cuda:LOCAL_RANK`` when
    launched (one GPU per rank); anything else is returned as it is."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of torch's generator on ``rank`` in ``epoch`` of a distributed run with training seed
    ``seed``: a hash of the three (NumPy's SeedSequence), different for every rank and epoch."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


def init_distributed(device: str | torch.device = "cpu", *, init_method: str | None = None) -> Ranks:
    """This process's place among the ranks: the initialised process group's, or, when `launched`,
    a new group's (gloo for a CPU ``device``, nccl for CUDA, rendezvous by ``init_method``, default the
    launcher's ``env://``); one rank of one when neither. A group made here is destroyed by `finish`."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    if not launched():
        return Ranks()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=init_method,
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    if not _owned["group"]:
        atexit.register(finish)
    _owned["group"] = True
    return Ranks(dist.get_rank(), dist.get_world_size())


def finish() -> None:
    """Destroy the process group `init_distributed` made, if it is still there (a group the caller made
    is the caller's to destroy)."""
    if _owned["group"] and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _owned["group"] = False


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world_size`` training processes, and what the training loop does
    differently because of them (nothing when ``world_size`` is 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one rank."""
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` on its device (``model`` itself in one process);
        train through the wrapper, read and save ``model``."""
        if not self.distributed:
            return model
        device = module_device(model)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, loader: Iterable[Any]) -> Iterable[Any]:
        """This rank's share of ``loader`` (a new loader; ``loader`` is not changed): `ImageLoader.shard`
        for loaders that have it, a ``DataLoader`` with a ``DistributedSampler`` as it is (its sampler
        told the epoch); any other loader is read whole by every rank, with a warning."""
        if not self.distributed:
            return loader
        if hasattr(loader, "shard"):
            return loader.shard(self.rank, self.world_size)
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, torch.utils.data.DistributedSampler):
            return _SamplerEpochs(loader, sampler)
        warnings.warn(f"training on {self.world_size} ranks with a {type(loader).__name__} that is not sharded: "
                      "every rank reads all of it. Give it a torch.utils.data.DistributedSampler, or use an "
                      "rramfx.data.ImageLoader", RuntimeWarning, stacklevel=3)
        return loader

    def seed_epoch(self, seed: int | None, epoch: int) -> None:
        """Seed torch's generator (DropConnect masks) with `rank_seed` for ``epoch``; nothing in one
        process or without a seed."""
        if self.distributed and seed is not None:
            torch.manual_seed(rank_seed(seed, self.rank, epoch))

    def end_epoch(self, model: nn.Module, record: dict[str, float],
                  names: Sequence[str] = ("loss", "train_accuracy")) -> dict[str, float]:
        """After an epoch: ``model``'s buffers (BatchNorm statistics) set to rank 0's, and ``record``'s
        ``names`` averaged over ranks (each rank sees as many images); ``record`` itself in one process."""
        if not self.distributed:
            return record
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
        device = module_device(model) if dist.get_backend() == "nccl" else torch.device("cpu")
        values = torch.tensor([float(record[n]) for n in names], dtype=torch.float64, device=device)
        dist.all_reduce(values)
        return {**record, **{n: float(v) / self.world_size for n, v in zip(names, values.tolist(), strict=True)}}

    def on_main(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on rank 0 (its result; None elsewhere), then a barrier, so no rank
        goes on before the file rank 0 writes is there."""
        if not self.distributed:
            return fn(*args, **kwargs)
        result = fn(*args, **kwargs) if self.main else None
        dist.barrier()
        return result


class _SamplerEpochs:
    """A ``DataLoader`` whose ``DistributedSampler`` is told the epoch by ``set_epoch``."""

    def __init__(self, loader: Any, sampler: Any):
        self.loader, self.sampler = loader, sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

