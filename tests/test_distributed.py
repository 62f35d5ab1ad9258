"""One training on several processes (issue 11, item 4): `ImageLoader.shard` gives each rank a disjoint
share of every epoch, `rramfx.training.distributed` is a no-op in one process, and two real processes
(gloo, loopback only) train one model: `rramfx.train` from a script and ``torchrun -m rramfx train``.

The two-process tests bind nothing but 127.0.0.1: the gloo transport is pinned to the loopback device
(``GLOO_SOCKET_IFNAME=lo``) and the script's ranks meet through a file store; torchrun, whose TCP store
listens on every interface, runs only inside a network namespace of its own (``unshare -rn``) that
has nothing but a loopback device, and is skipped where such a namespace cannot be made."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rramfx
from rramfx.data import ImageLoader, synthetic
from rramfx.errors import ArgumentTypeError, DataError
from rramfx.files import load_checked_torch
from rramfx.training.distributed import Ranks, init_distributed, launched, rank_device, rank_seed

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")


def _epoch(loader, epoch=0):
    loader.set_epoch(epoch)
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


@pytest.mark.parametrize("n, world, shuffle", [(10, 3, True), (12, 2, True), (7, 4, False)])
def test_shards_split_the_epochs_order_like_distributed_sampler(n, world, shuffle):
    loader = ImageLoader(synthetic(n, size=8, seed=1), 2, shuffle=shuffle, seed=5)
    for epoch in (0, 3):
        images, labels = _epoch(loader, epoch)
        per_rank = -(-n // world)
        padded = torch.cat([images, images])[: per_rank * world]  # the order repeated from its start
        padded_labels = torch.cat([labels, labels])[: per_rank * world]
        for rank in range(world):
            shard = loader.shard(rank, world)
            assert len(shard) == -(-per_rank // 2)
            got, got_labels = _epoch(shard, epoch)
            assert torch.equal(got, padded[rank::world]) and torch.equal(got_labels, padded_labels[rank::world])
    assert (loader.rank, loader.world_size) == (0, 1)  # sharding made new loaders


def test_one_shard_of_one_is_the_loader_and_augmentation_is_per_rank():
    data = synthetic(64, size=12, seed=2)
    loader = ImageLoader(data, 16, shuffle=True, augment=True, drop_last=True, seed=3)
    whole, shard = _epoch(loader), _epoch(ImageLoader(data, 16, shuffle=True, augment=True, drop_last=True,
                                                      seed=3).shard(0, 1))
    assert torch.equal(whole[0], shard[0]) and torch.equal(whole[1], shard[1])
    halves = [_epoch(loader.shard(r, 2)) for r in range(2)]
    assert len(loader.shard(1, 2)) == 2 and halves[0][0].shape == (32, 1, 12, 12)
    plain = ImageLoader(data, 16, shuffle=True, seed=3)
    plain_halves = [_epoch(plain.shard(r, 2)) for r in range(2)]
    for (_, y), (_, py) in zip(halves, plain_halves, strict=True):
        assert torch.equal(y, py)  # the same images (labels) with or without augmentation
    assert not torch.equal(halves[0][0] - plain_halves[0][0], halves[1][0] - plain_halves[1][0])


def test_shard_checks_its_arguments():
    loader = ImageLoader(synthetic(8, size=8), 4)
    with pytest.raises(DataError, match="rank must be in"):
        loader.shard(2, 2)
    with pytest.raises(ArgumentTypeError, match="world_size must be an int"):
        loader.shard(0, 2.0)


def test_rank_seeds_differ_per_rank_and_epoch_and_repeat():
    seeds = {rank_seed(s, r, e) for s in range(3) for r in range(4) for e in range(5)}
    assert len(seeds) == 60 and all(0 <= s < 2**63 for s in seeds)
    assert rank_seed(1, 2, 3) == rank_seed(1, 2, 3)


def test_one_process_is_a_plain_run(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    assert not launched() and init_distributed("cpu") == Ranks(0, 1)
    assert rank_device("cuda") == torch.device("cuda")
    ranks, loader, model = Ranks(), ImageLoader(synthetic(8, size=8), 4), torch.nn.Linear(2, 2)
    assert ranks.main and not ranks.distributed
    assert ranks.shard(loader) is loader and ranks.wrap(model) is model
    record = {"loss": 1.0}
    assert ranks.end_epoch(model, record) is record and ranks.on_main(lambda x: x + 1, 1) == 2
    torch.manual_seed(4)
    ranks.seed_epoch(0, 3)  # no reseeding in one process
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(4)))


def test_launcher_variables_are_read(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launched() and rank_device("cuda") == torch.device("cuda", 1)
    assert rank_device("cuda:0") == torch.device("cuda", 0) and rank_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1",
               GLOO_SOCKET_IFNAME="lo", **extra)
    return env


SCRIPT = """
import sys, torch, rramfx
from rramfx.data import ImageLoader, synthetic
from rramfx.training.distributed import finish, init_distributed
from tests.tiny import TinyNet
out = sys.argv[2]
ranks = init_distributed("cpu", init_method="file://" + sys.argv[1])
torch.manual_seed(0)
gm = rramfx.prepare(TinyNet(), rramfx.Policy(drop_rate=0.3))
loader = ImageLoader(synthetic(512, size=12), 32, shuffle=True, drop_last=True)
history = rramfx.train(gm, loader, 4, lr=0.1, progress=False, checkpoint=out + "/run.ckpt")
torch.save({"state": gm.state_dict(), "history": history, "steps": len(ranks.shard(loader))},
           f"{out}/rank{ranks.rank}.pt")
ranks.on_main(rramfx.save_prepared, out + "/m.pt", gm, model="tests.tiny:TinyNet",
             model_kwargs={"num_classes": 4, "in_chans": 1}, input_shape=(1, 12, 12))
finish()
"""


def test_two_processes_train_one_model_from_a_script(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "store"), str(tmp_path)], cwd=ROOT,
                              env=_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 8  # 512 images / 2 ranks / 32 per batch
    same = [[{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]] for r in ranks]
    assert same[0] == same[1]  # losses and accuracies averaged over the ranks
    for name, value in ranks[0]["state"].items():  # one model: DDP kept the ranks in step
        assert torch.equal(value, ranks[1]["state"][name]), name
    losses = [r["loss"] for r in ranks[0]["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    gm, record = rramfx.load_prepared(tmp_path / "m.pt")
    for name, value in gm.state_dict().items():
        assert torch.equal(value, ranks[0]["state"][name]), name
    ckpt = load_checked_torch(tmp_path / "run.ckpt", "rramfx.TrainCheckpoint")[1]
    assert ckpt["epoch"] == 4 and ckpt["steps_per_epoch"] == 8
    assert record["policy"]["drop_rate"] == 0.3


def _namespace_ok() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespace_ok(), reason="torchrun's store listens on every interface; it runs only in a "
                    "network namespace of its own (unshare -rn), which this machine does not allow")
def test_torchrun_trains_one_model_with_rramfx_train(tmp_path):
    out = tmp_path / "m.pt"
    cmd = (f"ip link set lo up && exec {sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 "
           f"-m rramfx train --model mini_mobilenet_1 --dataset synthetic --train-subset 512 --test-subset 256 "
           f"--epochs 3 --lr 0.05 --drop-rate 0.2 --no-augment --out {out} --quiet --device cpu")
    run = subprocess.run(["unshare", "-rn", "sh", "-c", cmd], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(f"saved {out}") == 1 and "on cpu x 2 ranks" in run.stdout, run.stdout
    gm, record = rramfx.load_prepared(out)
    losses = [r["loss"] for r in record["info"]["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert record["policy"]["drop_rate"] == 0.2 and not (tmp_path / "m.pt.ckpt").exists()
    assert gm(torch.zeros(2, 1, 16, 16)).shape == (2, 4)
