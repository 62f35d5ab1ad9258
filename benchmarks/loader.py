"""One epoch of `rramfx.data.ImageLoader` against torch's `DataLoader`, on Fashion-MNIST-sized data.

Data: 60,000 seeded random uint8 images 1x28x28 with 10 labels (the shape and size of Fashion-MNIST's
training split; the pixel values do not change the work). Every loader yields normalised float32
batches, shuffled; "augment" is a random crop from the image padded by 3 pixels plus a random
horizontal flip. The loaders compared, each timed over one full epoch (iterating and touching every
batch, no model), in one process, taking turns (all loaders of round 1, then of round 2, ...):

- ``ImageLoader``: the whole uint8 set in memory, each batch indexed, normalised and augmented as one
  tensor (a crop offset and a flip per image).
- ``DataLoader(TensorDataset)``: the same uint8 tensor through torch's default sampler and collate;
  normalisation and augmentation on each collated batch with `torchvision.transforms.v2` (its
  RandomCrop / RandomHorizontalFlip draw one crop and one flip per batch: less augmentation).
- ``DataLoader(torchvision dataset)``: a `VisionDataset` whose items are PIL images, as
  `torchvision.datasets.FashionMNIST` returns them, with a per-image `transforms.v2` pipeline
  (ToImage, ToDtype, [RandomCrop, RandomHorizontalFlip,] Normalize), ``num_workers`` 0 and 2.

Also: the per-image random crop on one batch, `rramfx.data.loader.random_crop` (one gather) against
a loop of ``transforms.v2.RandomCrop`` over the batch's images (the library draws one crop per call).

    python benchmarks/loader.py [--images 60000] [--batches 64,128] [--rounds 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchvision.datasets import VisionDataset
from torchvision.transforms import v2

from rramfx.data import ImageData, ImageLoader
from rramfx.data.loader import random_crop

MEAN, STD = (0.286,), (0.353,)


class PilImages(VisionDataset):
    """Items as torchvision's MNIST/FashionMNIST datasets give them: (PIL image, int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform):
        super().__init__(root=None, transform=transform)
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i, 0].numpy(), mode="L")
        return self.transform(img), int(self.labels[i])


def augmentation(augment: bool) -> list[v2.Transform]:
    return [v2.RandomCrop(28, padding=3), v2.RandomHorizontalFlip()] if augment else []


def make_loaders(images, labels, batch, augment):
    data = ImageData("fmnist-sized", images, labels, 10, MEAN, STD, flip=True)
    mem = ImageLoader(data, batch, shuffle=True, augment=augment, seed=0)
    per_batch = v2.Compose([v2.ToDtype(torch.float32, scale=True), *augmentation(augment), v2.Normalize(MEAN, STD)])
    tensor_dl = DataLoader(TensorDataset(images, labels), batch, shuffle=True)
    per_image = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *augmentation(augment),
                            v2.Normalize(MEAN, STD)])
    pil = PilImages(images, labels, per_image)
    return {
        "ImageLoader": (mem, None),
        "DataLoader(TensorDataset)": (tensor_dl, per_batch),
        "DataLoader(tv dataset, workers=0)": (DataLoader(pil, batch, shuffle=True, num_workers=0), None),
        "DataLoader(tv dataset, workers=2)": (DataLoader(pil, batch, shuffle=True, num_workers=2,
                                                         persistent_workers=False), None),
    }


def epoch_seconds(loader, transform) -> float:
    start, total = time.perf_counter(), 0.0
    for x, _ in loader:
        if transform is not None:
            x = transform(x)
        total += float(x[0, 0, 0, 0])  # touch every batch
    return time.perf_counter() - start


def crop_ms(batch: int, reps: int = 20) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    crop = v2.RandomCrop(28, padding=3)
    ours, loop = [], []
    random_crop(x, 3, g), crop(x[0])  # warm-up
    for _ in range(reps):
        t = time.perf_counter()
        random_crop(x, 3, g)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        torch.stack([crop(im) for im in x])
        loop.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ours), 1e3 * statistics.median(loop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=60000)
    ap.add_argument("--batches", default="64,128")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.images,), generator=g)
    print(f"{args.images} images 1x28x28, torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| batch | augment | loader | epoch s | vs ImageLoader |\n| ---: | --- | --- | ---: | ---: |")
    for batch in (int(b) for b in args.batches.split(",")):
        for augment in (False, True):
            loaders = make_loaders(images, labels, batch, augment)
            times: dict[str, list[float]] = {name: [] for name in loaders}
            for loader, transform in loaders.values():  # warm-up: first calls, not timed
                for i, (x, _) in enumerate(loader):
                    if transform is not None:
                        transform(x)
                    if i == 2:
                        break
            for _ in range(args.rounds):
                for name, (loader, transform) in loaders.items():
                    times[name].append(epoch_seconds(loader, transform))
            base = statistics.median(times["ImageLoader"])
            for name, t in times.items():
                med = statistics.median(t)
                print(f"| {batch} | {'yes' if augment else 'no'} | {name} | {med:.2f} | {med / base:.1f}x |",
                      flush=True)
    for batch in (int(b) for b in args.batches.split(",")):
        ours, loop = crop_ms(batch)
        print(f"per-image random crop, batch {batch}: random_crop {ours:.2f} ms, v2.RandomCrop loop {loop:.2f} ms "
              f"({loop / ours:.1f}x)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
