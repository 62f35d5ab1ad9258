"""`rramfx.data.from_dataset`: any map-style Dataset into the in-memory ImageData / ImageLoader."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

import rramfx
from rramfx.data import ImageLoader, from_dataset
from rramfx.data.loader import random_crop


def test_tensor_dataset_is_read_exactly():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (20, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.arange(20) % 4
    data = from_dataset(TensorDataset(x, y), name="t")
    assert torch.equal(data.images, x) and torch.equal(data.labels, y) and data.num_classes == 4
    assert data.mean == (round(float(x.float().div(255).mean()), 4),) and data.classes == ()
    batches = list(ImageLoader(data, 8))
    assert [b[0].shape for b in batches] == [(8, 1, 8, 8), (8, 1, 8, 8), (4, 1, 8, 8)]
    expect = (x[:8].float() / 255 - data.mean[0]) / data.std[0]
    assert torch.allclose(batches[0][0], expect, atol=1e-6) and torch.equal(batches[2][1], y[16:])


class PilDicts(Dataset):
    classes = ("cat", "dog", "fish")

    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        arr = np.full((self.sizes[i], self.sizes[i], 3), i * 10, dtype=np.uint8)
        return {"image": Image.fromarray(arr), "label": i % 3}


def test_pil_dicts_float_and_classes():
    data = from_dataset(PilDicts([6] * 5), flip=True)
    assert data.images.shape == (5, 3, 6, 6) and data.classes == ("cat", "dog", "fish") and data.flip
    assert int(data.images[4, 2, 0, 0]) == 40 and data.labels.tolist() == [0, 1, 2, 0, 1]
    floats = from_dataset([(torch.ones(3, 4, 4), 1), (torch.zeros(3, 4, 4), 0)], classes=["a", "b"])
    assert floats.images.dtype == torch.uint8 and int(floats.images[0, 0, 0, 0]) == 255
    assert floats.classes == ("a", "b") and floats.num_classes == 2


def test_bad_datasets_are_refused():
    with pytest.raises(rramfx.errors.DataError, match=r"item 2's image is \(3, 7, 7\).*Resize"):
        from_dataset(PilDicts([6, 6, 7]))
    with pytest.raises(rramfx.errors.DataError, match="labels range over 0..2 but there are 2 classes"):
        from_dataset(PilDicts([6] * 3), classes=["a", "b"])
    with pytest.raises(rramfx.errors.DataError, match=r"item 1's float image ranges over -1..1; give pixel values"):
        from_dataset([(torch.zeros(1, 2, 2), 0), (torch.tensor([[[-1.0, 1.0]]]), 1)])
    with pytest.raises(rramfx.errors.ArgumentTypeError, match="map-style Dataset"):
        from_dataset(iter([]))
    with pytest.raises(rramfx.errors.DataError, match="is empty"):
        from_dataset([])


def test_random_crop_shifts_each_image_within_the_padding():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    out = random_crop(x, 1, torch.Generator().manual_seed(3), fill=0.0)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):  # every output image is one 4x4 window of its padded input
        windows = [padded[i, :, dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(out, random_crop(x, 1, torch.Generator().manual_seed(3), fill=0.0))
