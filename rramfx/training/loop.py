"""Training a prepared model, and saving/loading trained prepared models.

`train` is an ordinary supervised loop (SGD with momentum, weight decay, a cosine / one-cycle /
constant learning-rate schedule, bf16 autocast on a GPU, a tqdm bar, per-epoch checkpoints it can
resume from). It knows nothing of RRAM: DropConnect comes from the prepared model's crossbar layers,
which drop weights at their own rate whenever the model is in training mode.

`save_prepared` / `load_prepared` store a trained model as *how to rebuild it* (model spec, its
arguments and the policy) plus its state_dict, so a checkpoint loads with ``weights_only=True`` and
survives changes to the toolkit's classes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from rramfx.errors import ArgumentError, ModelFileError, TrainError
from rramfx.evaluation.chips import evaluate
from rramfx.graph.modules import module_device

SCHEDULES = ("cosine", "onecycle", "constant")
_CKPT_FORMAT = "rramfx.TrainCheckpoint/1"
_MODEL_FORMAT = "rramfx.PreparedModel/1"


def _lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate at ``step`` of ``total``."""
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle":  # linear warm-up over the first 30%, cosine down to 0 after
        up = max(1, int(0.3 * total))
        if step < up:
            return 0.04 + 0.96 * step / up
        return 0.5 * (1 + math.cos(math.pi * (step - up) / max(1, total - up)))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
) -> list[dict[str, float]]:
    """Train ``gm`` in place for ``epochs`` epochs on its current device; returns one record per epoch
    (``epoch``, ``loss``, ``train_accuracy``, ``val_accuracy`` when ``val_loader`` is given, ``lr``,
    ``seconds``).

    This changes ``gm`` on purpose (its parameters and BN statistics), like any training loop; the
    user's original model, from which ``gm`` was prepared, is not involved. DropConnect is whatever
    the prepared model's RRAM layers do in training mode (their drop rate). ``gm`` is left in eval mode.

    Optimiser: SGD with ``momentum`` (Nesterov) and ``weight_decay`` on weights (not on biases and
    norm parameters). ``schedule``: ``cosine`` (per step, after ``warmup_epochs`` of linear warm-up),
    ``onecycle`` or ``constant``. ``amp``: bf16 autocast, default on for CUDA. ``seed`` seeds torch's
    global generator (DropConnect masks, initialisation order) at the start; None leaves it alone.

    ``checkpoint``: a file written after every epoch (model, optimiser, schedule, random state,
    history). With ``resume`` and an existing file, training continues after its last epoch, and a
    resumed run computes what an uninterrupted one would (loaders with ``set_epoch`` are told the epoch).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ArgumentError(f"epochs must be a non-negative int, got {epochs!r}")
    if schedule not in SCHEDULES:
        raise ArgumentError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not lr > 0:
        raise ArgumentError(f"lr must be positive, got {lr!r}")
    steps_per_epoch = len(train_loader) if hasattr(train_loader, "__len__") else None
    if not steps_per_epoch:
        raise ArgumentError("train_loader must have a length (number of batches per epoch) of at least 1")
    device = module_device(gm)
    amp = device.type == "cuda" if amp is None else amp
    decay = [p for n, p in gm.named_parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for n, p in gm.named_parameters() if p.requires_grad and p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=momentum, nesterov=momentum > 0)
    total = epochs * steps_per_epoch
    warmup = int(warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(schedule, s, total, warmup))
    history: list[dict[str, float]] = []
    start_epoch = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if seed is not None:
        torch.manual_seed(seed)
    if ckpt_path is not None and resume and ckpt_path.is_file():
        start_epoch, history = _load_checkpoint(ckpt_path, gm, opt, sched, epochs, steps_per_epoch)

    for epoch in range(start_epoch, epochs):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        record = _train_epoch(gm, train_loader, opt, sched, device, amp, label_smoothing, epoch, epochs,
                              steps_per_epoch, progress)
        if val_loader is not None:
            record["val_accuracy"] = evaluate(gm, val_loader)
        history.append(record)
        if ckpt_path is not None:
            _atomic_save({
                "format": _CKPT_FORMAT, "epoch": epoch + 1, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
                "model": gm.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "history": history, "rng": _rng_state(device),
            }, ckpt_path)
    gm.eval()
    return history


def _train_epoch(gm: nn.Module, loader: Iterable[Any], opt: torch.optim.Optimizer, sched: Any, device: torch.device,
                 amp: bool, label_smoothing: float, epoch: int, epochs: int, steps: int, progress: bool) -> dict:
    gm.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    it: Iterable[Any] = loader
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)
        it = bar
    lr = opt.param_groups[0]["lr"]
    for step, batch in enumerate(it):
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        lr = opt.param_groups[0]["lr"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = gm(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.detach().argmax(1) == y).sum()
        seen += int(y.shape[0])
        if bar is not None and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
    if bar is not None:
        bar.close()
    mean_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise TrainError(f"the training loss became {mean_loss} in epoch {epoch + 1}: lower the learning rate "
                         f"(now {opt.param_groups[0]['initial_lr']:g}) or the drop rate")
    return {"epoch": epoch + 1, "loss": mean_loss, "train_accuracy": correct.item() / max(seen, 1), "lr": lr,
            "seconds": time.perf_counter() - start}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _load_checkpoint(path: Path, gm: nn.Module, opt: torch.optim.Optimizer, sched: Any, epochs: int,
                     steps_per_epoch: int) -> tuple[int, list[dict[str, float]]]:
    try:
        data = torch.load(path, map_location=module_device(gm), weights_only=True)
    except Exception as e:
        raise ModelFileError(f"cannot read training checkpoint '{path}': {e}. Delete it to start over.") from e
    if not isinstance(data, dict) or data.get("format") != _CKPT_FORMAT:
        raise ModelFileError(f"'{path}' is not an rramfx training checkpoint; pass another checkpoint path")
    if data["epochs"] != epochs or data["steps_per_epoch"] != steps_per_epoch:
        raise TrainError(
            f"training checkpoint '{path}' is from a run of {data['epochs']} epochs × {data['steps_per_epoch']} "
            f"batches, this one is {epochs} × {steps_per_epoch}: delete it, or pass resume=False / another path"
        )
    try:
        gm.load_state_dict(data["model"])
    except RuntimeError as e:
        raise TrainError(f"training checkpoint '{path}' does not fit this model: {e}") from e
    opt.load_state_dict(data["optimizer"])
    sched.load_state_dict(data["scheduler"])
    torch.set_rng_state(data["rng"]["cpu"].cpu())
    if "cuda" in data["rng"] and module_device(gm).type == "cuda":
        torch.cuda.set_rng_state(data["rng"]["cuda"].cpu(), module_device(gm))
    return int(data["epoch"]), list(data["history"])


# ---- trained prepared models ---------------------------------------------------------------------


def save_prepared(path: str | Path, gm: fx.GraphModule, *, model: str, model_kwargs: dict[str, Any] | None = None,
                  policy: dict[str, Any] | None = None, input_shape: tuple[int, ...] | None = None,
                  info: dict[str, Any] | None = None) -> Path:
    """Save a trained prepared model as its recipe plus weights.

    ``model`` is the model spec (``resnet20``, ``timm:NAME``, ...) and ``model_kwargs`` its arguments
    (``num_classes``, ``in_chans``, ``width``, ...); ``policy`` the policy dict it was prepared with
    (default: the one recorded on ``gm``); ``input_shape`` the shape of one input (C, H, W), which
    `load_prepared` needs when the policy runs structural passes that read tensor shapes (widening,
    padding); ``info`` any plain data to keep beside (dataset, history).
    """
    from rramfx.graph.record import rramfx_meta

    policy = policy if policy is not None else rramfx_meta(gm).get("policy", {})
    state = {k: v.detach().cpu() for k, v in gm.state_dict().items()}
    path = Path(path)
    _atomic_save({"format": _MODEL_FORMAT, "model": model, "model_kwargs": dict(model_kwargs or {}),
                  "policy": dict(policy), "input_shape": list(input_shape) if input_shape else None,
                  "state_dict": state, "info": dict(info or {})}, path)
    return path


def load_prepared(path: str | Path, map_location: str | torch.device = "cpu", *,
                  model: nn.Module | None = None) -> tuple[fx.GraphModule, dict[str, Any]]:
    """Rebuild a model saved with `save_prepared`: returns ``(gm, record)`` with ``gm`` in eval mode on
    ``map_location`` and ``record`` holding ``model``, ``model_kwargs``, ``policy``, ``input_shape``
    and ``info``.

    ``model``: an untrained instance to prepare and load the weights into, instead of creating one
    from the saved spec (for models that no spec names); it is not changed."""
    from rramfx.models.spec import create_model
    from rramfx.policy import Policy
    from rramfx.preparation import prepare

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist (write one with `rramfx train --out {path}`)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ModelFileError(f"cannot read model file '{path}': {e}") from e
    if not isinstance(data, dict) or data.get("format") != _MODEL_FORMAT:
        raise ModelFileError(f"'{path}' is not an rramfx trained model "
                             "(written by rramfx.save_prepared / rramfx train)")
    if model is None:
        model = create_model(data["model"], **data["model_kwargs"]).eval()
    shape = data.get("input_shape")
    example = torch.zeros(2, *shape) if shape else None
    gm = prepare(model, Policy.from_dict(data["policy"]), example_inputs=example)
    try:
        gm.load_state_dict(data["state_dict"])
    except RuntimeError as e:
        raise TrainError(f"the weights in '{path}' do not fit {data['model']} prepared with its policy: {e}") from e
    gm.to(map_location)
    record = {k: data.get(k) for k in ("model", "model_kwargs", "policy", "input_shape", "info")}
    return gm.eval(), record


__all__ = ["SCHEDULES", "TrainError", "load_prepared", "save_prepared", "train"]
