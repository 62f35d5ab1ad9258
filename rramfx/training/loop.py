"""Training a prepared model: an ordinary supervised loop, resumable from per-epoch checkpoints.

`train` is SGD with momentum, weight decay, a cosine / one-cycle / constant learning-rate schedule,
bf16 autocast on a GPU, optional speed options (``compile``, ``channels_last``, ``precision``: see
`rramfx.training.fastpath`), a tqdm bar, and a checkpoint after every epoch that a later call resumes
from. It knows nothing of RRAM: DropConnect comes from the prepared model's crossbar layers, which
drop weights at their own rate whenever the model is in training mode. Its settings are one frozen
`TrainOptions`, so that an experiment cell can carry them as plain data.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from rramfx.checks import writable_file
from rramfx.data.batches import split_batch
from rramfx.errors import ArgumentError, ModelFileError, TrainError
from rramfx.evaluation.chips import evaluate
from rramfx.files import load_checked_torch, save_checked_torch, write_atomic
from rramfx.graph.modules import module_device
from rramfx.tensor_checks import check_state_dict
from rramfx.training.distributed import init_distributed
from rramfx.training.fastpath import CompiledForward, autocast_dtype, check_speed_options, memory_format
from rramfx.training.transaction import TrainingTransaction, check_first_batch

SCHEDULES = ("cosine", "onecycle", "constant")
_CKPT_FORMAT = "rramfx.TrainCheckpoint"

__all__ = ["SCHEDULES", "TrainError", "TrainOptions", "atomic_save", "epoch_line", "make_scheduler", "run_training",
           "train"]


@dataclass(frozen=True)
class TrainOptions:
    """How `train` trains: ``epochs``; SGD's peak ``lr``, ``momentum`` (Nesterov) and ``weight_decay``
    (on weights, not on biases and norm parameters); the learning-rate ``schedule`` (``cosine`` per
    step after ``warmup_epochs`` of linear warm-up, ``onecycle`` or ``constant``); ``label_smoothing``;
    ``amp`` (bf16 autocast; None: on for CUDA); ``seed`` for torch's global generator at the start
    (DropConnect masks; None leaves it alone). Speed options (`rramfx.training.fastpath`), all off by
    default: ``compile`` (torch.compile the forward, eager with one warning if that fails),
    ``channels_last`` (model and 4-D batches in channels-last memory format), ``precision``
    (``"bf16"``: autocast the forward to bfloat16, ``"fp32"``: no autocast; None: as ``amp`` says;
    ``precision`` is the newer spelling of ``amp``). Invalid settings raise `ArgumentError`."""

    epochs: int
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    amp: bool | None = None
    seed: int | None = 0
    compile: bool = False
    channels_last: bool = False
    precision: str | None = None

    def __post_init__(self) -> None:
        check_speed_options(self.compile, self.channels_last, self.precision, self.amp)
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ArgumentError(f"epochs must be a non-negative int, got {self.epochs!r}")
        if self.schedule not in SCHEDULES:
            raise ArgumentError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.lr > 0:
            raise ArgumentError(f"lr must be positive, got {self.lr!r}")


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, total: int, warmup: int = 0) -> LRScheduler:
    """torch's learning-rate scheduler for ``schedule`` over ``total`` steps of ``opt``, stepped once
    per batch: ``cosine`` is `CosineAnnealingLR` to 0 after ``warmup`` steps of `LinearLR` warm-up
    (from 1/warmup of the peak to the peak); ``onecycle`` warms up linearly from 4% of the peak over
    the first 30% of the steps and anneals by cosine to 0 after (the one-cycle shape, without
    `OneCycleLR`'s momentum cycling); ``constant`` keeps the peak."""
    if schedule not in SCHEDULES:
        raise ArgumentError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    sched = torch.optim.lr_scheduler
    if schedule == "constant":
        return sched.ConstantLR(opt, factor=1.0, total_iters=0)
    if schedule == "onecycle":
        up = max(1, int(0.3 * total))
        warm = sched.LinearLR(opt, start_factor=0.04, end_factor=1.0, total_iters=up)
    elif warmup > 0:  # step s < warmup: (s + 1) / warmup of the peak, the peak at the last warm-up step
        up = warmup
        warm = sched.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
    else:
        return sched.CosineAnnealingLR(opt, T_max=max(1, total))
    anneal = sched.CosineAnnealingLR(opt, T_max=max(1, total - up))
    return sched.SequentialLR(opt, [warm, anneal], milestones=[up])


def epoch_line(record: dict[str, float], epochs: int) -> str:
    """One line for a finished epoch's ``record`` (what `train` prints with ``progress`` as it ends)."""
    val = f", val accuracy {100 * record['val_accuracy']:.2f}%" if "val_accuracy" in record else ""
    compiled = f" (compile {record['compile_seconds']:.1f} s)" if "compile_seconds" in record else ""
    return (f"epoch {int(record['epoch'])}/{epochs}: loss {record['loss']:.4f}, train accuracy "
            f"{100 * record['train_accuracy']:.2f}%{val}, lr {record['lr']:.3g}, {record['seconds']:.1f} s{compiled}")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through `rramfx.files.write_atomic`: an interrupted save never leaves a
    half-written file behind. (rramfx's own files are checked torch files, `save_checked_torch`.)"""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def train(
    gm: nn.Module,
    train_loader: Iterable[Any],
    epochs: int,
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    label_smoothing: float = 0.0,
    amp: bool | None = None,
    val_loader: Iterable[Any] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    seed: int | None = 0,
    progress: bool = True,
    compile: bool = False,
    channels_last: bool = False,
    precision: str | None = None,
) -> list[dict[str, float]]:
    """Train ``gm`` in place for ``epochs`` epochs on its current device; returns one record per epoch
    (``epoch``, ``loss``, ``train_accuracy``, ``val_accuracy`` when ``val_loader`` is given, ``lr``,
    ``seconds``, and with ``compile`` its ``compile_seconds``, part of ``seconds``).

    This changes ``gm`` on purpose (its parameters and BN statistics), like any training loop; the
    user's original model, from which ``gm`` was prepared, is not involved. DropConnect is whatever
    the prepared model's RRAM layers do in training mode (their drop rate). ``gm`` is left in eval mode.
    The settings are those of `TrainOptions`; `run_training` takes them as one object.

    ``checkpoint``: a file written after every epoch (model, optimiser, schedule, random state,
    history). With ``resume`` and an existing file, training continues after its last epoch, and a
    resumed run computes what an uninterrupted one would (loaders with ``set_epoch`` are told the epoch).
    """
    options = TrainOptions(epochs, lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                           warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, amp=amp, seed=seed,
                           compile=compile, channels_last=channels_last, precision=precision)
    return run_training(gm, train_loader, options, val_loader=val_loader, checkpoint=checkpoint, resume=resume,
                        progress=progress)


def run_training(gm: nn.Module, train_loader: Iterable[Any], options: TrainOptions, *,
                 val_loader: Iterable[Any] | None = None, checkpoint: str | Path | None = None,
                 resume: bool = True, progress: bool = True) -> list[dict[str, float]]:
    """`train` with its settings as one `TrainOptions`: the optimiser and schedule are built, the
    checkpoint (if any) is resumed, then each epoch is trained, validated and checkpointed in turn.
    Under torchrun, one training on all ranks (`rramfx.training.distributed`).

    Transactional: the first batch is checked against the model before anything changes
    (`check_first_batch`), and on any failure (a bad batch, a checkpoint of another model, a diverged
    loss or non-finite weights, ``KeyboardInterrupt``) ``gm``'s weights, buffers and training flags are
    restored before the error goes on (`TrainingTransaction`). An unwritable ``checkpoint`` path is an
    `ArgumentError` before the first batch."""
    if checkpoint is not None:
        writable_file("checkpoint", checkpoint)
    check_first_batch(gm, train_loader)
    with TrainingTransaction(gm):
        return _train_unchecked(gm, train_loader, options, val_loader=val_loader, checkpoint=checkpoint,
                                resume=resume, progress=progress)


def _train_unchecked(gm: nn.Module, train_loader: Iterable[Any], options: TrainOptions, *,
                     val_loader: Iterable[Any] | None = None, checkpoint: str | Path | None = None,
                     resume: bool = True, progress: bool = True) -> list[dict[str, float]]:
    ranks = init_distributed(module_device(gm))
    train_loader = ranks.shard(train_loader)
    steps = len(train_loader) if hasattr(train_loader, "__len__") else None
    if not steps:
        raise ArgumentError("train_loader must have a length (number of batches per epoch) of at least 1")
    run = _Run(gm, options, steps, module_device(gm), progress and ranks.main, ranks.wrap(gm))
    history: list[dict[str, float]] = []
    start_epoch = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if options.seed is not None:
        torch.manual_seed(options.seed)
    if ckpt_path is not None and resume and ckpt_path.is_file():
        start_epoch, history = _load_checkpoint(ckpt_path, run)
    if options.channels_last:
        gm.to(memory_format=torch.channels_last)
    try:
        for epoch in range(start_epoch, options.epochs):
            ranks.seed_epoch(options.seed, epoch)
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            record = ranks.end_epoch(gm, run.epoch(train_loader, epoch))
            if val_loader is not None:
                record["val_accuracy"] = evaluate(gm, val_loader)
            history.append(record)
            if ckpt_path is not None:
                ranks.on_main(_save_checkpoint, ckpt_path, run, epoch + 1, history)
            if progress and ranks.main:
                print(epoch_line(record, options.epochs), flush=True)
    finally:
        if options.channels_last:  # the model is handed back laid out as it came
            gm.to(memory_format=torch.contiguous_format)
    gm.eval()
    return history


class _Run:
    """One training run's model, optimiser and schedule, and how it trains one epoch (through ``net``,
    the model's DistributedDataParallel wrapper under torchrun)."""

    def __init__(self, gm: nn.Module, options: TrainOptions, steps: int, device: torch.device, progress: bool,
                 net: nn.Module | None = None):
        self.gm, self.options, self.steps, self.device, self.progress = gm, options, steps, device, progress
        self.net = gm if net is None else net
        self.autocast = autocast_dtype(options.precision, options.amp, device)
        self.compiled = CompiledForward(self.net) if options.compile else None
        self._compile_before = 0.0
        decay = [p for p in gm.parameters() if p.requires_grad and p.dim() > 1]
        no_decay = [p for p in gm.parameters() if p.requires_grad and p.dim() <= 1]
        self.opt = torch.optim.SGD([{"params": decay, "weight_decay": options.weight_decay},
                                    {"params": no_decay, "weight_decay": 0.0}],
                                   lr=options.lr, momentum=options.momentum, nesterov=options.momentum > 0)
        total, warmup = options.epochs * steps, int(options.warmup_epochs * steps)
        self.sched = make_scheduler(self.opt, options.schedule, total, warmup)

    def _batches(self, loader: Iterable[Any], epoch: int) -> tuple[Iterable[Any], Any]:
        if not self.progress:
            return loader, None
        from tqdm.auto import tqdm

        bar = tqdm(loader, total=self.steps, desc=f"epoch {epoch + 1}/{self.options.epochs}", unit="batch",
                   leave=False, disable=None)  # no bar when not on a terminal: a log gets the epoch lines only
        return bar, bar

    def epoch(self, loader: Iterable[Any], epoch: int) -> dict[str, float]:
        """Train one epoch; its record (``epoch``, ``loss``, ``train_accuracy``, ``lr``, ``seconds``)."""
        self.gm.train()
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        it, bar = self._batches(loader, epoch)
        lr = self.opt.param_groups[0]["lr"]
        for step, batch in enumerate(it):
            lr = self.opt.param_groups[0]["lr"]
            loss, hits, n = self._step(batch)
            loss_sum += loss.detach() * n
            correct += hits
            seen += n
            if bar is not None and step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
        if bar is not None:
            bar.close()
        mean_loss = loss_sum.item() / max(seen, 1)
        compile_seconds = self.compiled.compile_seconds if self.compiled is not None else 0.0
        if not math.isfinite(mean_loss):
            raise TrainError(f"the training loss became {mean_loss} in epoch {epoch + 1}: lower the learning rate "
                             f"(now {self.opt.param_groups[0]['initial_lr']:g}) or the drop rate")
        record = {"epoch": epoch + 1, "loss": mean_loss, "train_accuracy": correct.item() / max(seen, 1), "lr": lr,
                  "seconds": time.perf_counter() - start}
        if self.compiled is not None:
            record["compile_seconds"] = compile_seconds - self._compile_before
            self._compile_before = compile_seconds
            if self.progress:
                print(f"epoch {epoch + 1}: torch.compile took {record['compile_seconds']:.1f} s"
                      + (f" (fell back to eager: {self.compiled.fallback})" if self.compiled.fallback else ""))
        return record

    def _step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimiser step on ``batch``: its loss, correct answers (on the device) and size."""
        x, y = split_batch(batch)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        x = memory_format(x, self.options.channels_last)

        def run(forward: Any) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16,
                                enabled=self.autocast is not None):
                logits = forward(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=self.options.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            return loss, logits

        if self.compiled is None:
            loss, logits = run(self.net)
        else:
            loss, logits = self.compiled.step(x, run, lambda: self.opt.zero_grad(set_to_none=True))
        return loss, (logits.detach().argmax(1) == y).sum(), int(y.shape[0])


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _save_checkpoint(path: Path, run: _Run, epoch: int, history: list[dict[str, float]]) -> None:
    save_checked_torch(path, _CKPT_FORMAT, 2, {
        "epoch": epoch, "epochs": run.options.epochs, "steps_per_epoch": run.steps,
        "model": run.gm.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
        "history": history, "rng": _rng_state(run.device),
    })


def _load_checkpoint(path: Path, run: _Run) -> tuple[int, list[dict[str, float]]]:
    """Restore ``run`` from the checkpoint at ``path``; returns the epoch to go on from and the history."""
    _, data = load_checked_torch(path, _CKPT_FORMAT, ModelFileError, map_location=run.device)
    fields = ("epoch", "epochs", "steps_per_epoch", "model", "optimizer", "scheduler", "history", "rng")
    if not isinstance(data, dict) or any(k not in data for k in fields):
        raise ModelFileError(f"training checkpoint '{path}' lacks {[k for k in fields if k not in data]}: "
                             "delete it to start over")
    if data["epochs"] != run.options.epochs or data["steps_per_epoch"] != run.steps:
        raise TrainError(
            f"training checkpoint '{path}' is from a run of {data['epochs']} epochs × {data['steps_per_epoch']} "
            f"batches, this one is {run.options.epochs} × {run.steps}: delete it, or pass resume=False / another path"
        )
    check_state_dict(run.gm.state_dict(), data["model"], f"training checkpoint '{path}'", TrainError)
    run.gm.load_state_dict(data["model"])
    run.opt.load_state_dict(data["optimizer"])
    if isinstance(run.sched, torch.optim.lr_scheduler.SequentialLR) and "_schedulers" not in data["scheduler"]:
        raise TrainError(f"training checkpoint '{path}' holds a learning-rate schedule of an older rramfx "
                         "(before torch's schedulers): delete it to start over, or pass resume=False")
    run.sched.load_state_dict(data["scheduler"])
    torch.set_rng_state(data["rng"]["cpu"].cpu())
    if "cuda" in data["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state(data["rng"]["cuda"].cpu(), run.device)
    return int(data["epoch"]), list(data["history"])
