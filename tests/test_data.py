"""Datasets: the idx reader on files the test writes, the real Fashion-MNIST files when Debian's package
is installed, CIFAR-10's layout and its missing-data message, and the batching/augmentation loader."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from rramfx.data import (
    FASHION_MNIST_DIR,
    DataError,
    ImageData,
    ImageLoader,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    make_loaders,
    read_idx,
    synthetic,
)


def write_idx(path, array, gz=False):
    array = np.asarray(array)
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_mnist_dir(root, n_train=20, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8), gz)
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), a, gz)), a)
    b = np.array([[1.5, -2.0], [3.25, 0.0]], dtype=np.float32)
    got = read_idx(write_idx(tmp_path / "b.idx", b))
    assert got.dtype == np.float32 and np.array_equal(got, b)  # big-endian on disk, native in memory
    c = np.array([-7, 70000], dtype=np.int32)
    assert read_idx(write_idx(tmp_path / "c.idx", c)).tolist() == [-7, 70000]


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match="'.*bad' is not an idx file"):
        read_idx(tmp_path / "bad")
    good = write_idx(tmp_path / "t", np.zeros((4, 5), np.uint8))
    (tmp_path / "t2").write_bytes(good.read_bytes()[:-3])
    with pytest.raises(DataError, match="holds 17 data bytes, its header \\(4, 5\\) promises 20"):
        read_idx(tmp_path / "t2")
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "missing")


def test_fashion_mnist_loader_on_files_the_test_writes(tmp_path):
    fake_mnist_dir(tmp_path)
    train, test = load_fashion_mnist("train", tmp_path), load_fashion_mnist("test", tmp_path)
    assert train.images.shape == (20, 1, 28, 28) and test.images.shape == (10, 1, 28, 28)
    assert test.labels.tolist() == list(range(10)) and train.num_classes == 10 and train.flip
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    fake_mnist_dir(raw, gz=False)
    assert len(load_mnist("test", tmp_path / "tv")) == 10  # torchvision's MNIST/raw layout, uncompressed files


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path)
    with pytest.raises(DataError, match="split must be 'train' or 'test'"):
        load_fashion_mnist("val", tmp_path)


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason=f"Debian's dataset-fashion-mnist is not installed ({FASHION_MNIST_DIR} missing)")
def test_real_fashion_mnist_test_split():
    data = load_dataset("fashion-mnist", "test")
    assert data.images.shape == (10_000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    mean = data.images.float().mean().item() / 255
    assert abs(mean - data.mean[0]) < 0.01  # the normalisation constants fit the data
    assert data.classes[9] == "Ankle boot"


def test_cifar10_missing_and_present(tmp_path):
    with pytest.raises(DataError, match="never downloads data.*cifar-10-batches-py"):
        load_cifar10("test", tmp_path)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    with open(base / "test_batch", "wb") as f:
        pickle.dump({"data": data, "labels": [0, 1, 2, 3, 4, 5]}, f)  # as torchvision reads the real files
    test = load_cifar10("test", tmp_path)
    assert test.images.shape == (6, 3, 32, 32) and test.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.equal(test.images[1, 2].flatten(), torch.from_numpy(data[1, 2048:]))  # channel-major rows
    with pytest.raises(DataError, match="lacks data_batch_1"):
        load_cifar10("train", tmp_path)


def test_synthetic_is_seeded_balanced_and_split():
    a, b = synthetic(64, seed=3), synthetic(64, seed=3)
    assert torch.equal(a.images, b.images) and torch.bincount(a.labels).tolist() == [16] * 4
    assert not torch.equal(a.images, synthetic(64, seed=3, split="test").images)
    assert not torch.equal(a.images, synthetic(64, seed=4).images)
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def _const_data(value=255, n=6, size=4, chans=1):
    images = torch.full((n, chans, size, size), value, dtype=torch.uint8)
    return ImageData("const", images, torch.arange(n) % 2, 2, (0.5,) * chans, (0.25,) * chans, flip=True)


def test_loader_normalises_pads_and_repeats_channels():
    loader = ImageLoader(_const_data(), 4, image_size=8, in_chans=3)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 1, 0, 1] and len(loader) == 2
    assert torch.all(x[:, :, 2:6, 2:6] == 2.0)  # (1 - 0.5) / 0.25
    assert torch.all(x[:, :, 0, :] == -2.0)  # a black border: (0 - 0.5) / 0.25
    assert torch.equal(x[:, 0], x[:, 2])
    small = ImageLoader(_const_data(size=8), 6, image_size=4)
    assert next(iter(small))[0].shape == (6, 1, 4, 4)
    with pytest.raises(DataError, match="cannot take them \\(use in_chans=3\\)"):
        ImageLoader(_const_data(chans=3), 2, in_chans=1)


def test_loader_shuffle_and_augment_are_seeded_per_epoch():
    data = synthetic(40, size=8)
    a = ImageLoader(data, 16, shuffle=True, augment=True, seed=1, drop_last=True)
    b = ImageLoader(data, 16, shuffle=True, augment=True, seed=1, drop_last=True)
    assert len(a) == 2
    first = [x for x, _ in a]
    second = [x for x, _ in a]
    assert all(torch.equal(p, q) for p, q in zip(first, [x for x, _ in b], strict=True))
    assert not torch.equal(first[0], second[0])  # a new epoch, a new order and augmentation
    b.set_epoch(1)
    assert torch.equal(next(iter(b))[0], second[0])
    plain = ImageLoader(data, 40)
    x, y = next(iter(plain))
    xs, ys = next(iter(ImageLoader(data, 40, shuffle=True, augment=True)))
    assert sorted(ys.tolist()) == sorted(y.tolist()) and xs.shape == x.shape
    assert torch.allclose(xs.mean(), x.mean(), atol=0.3)  # crops move content, they do not rescale it


def test_make_loaders_subsets_are_reproducible():
    train, test = make_loaders("synthetic", train_subset=100, test_subset=50, batch_size=32, seed=0)
    assert len(train.dataset) == 100 and len(test.dataset) == 50 and len(train) == 3 and len(test) == 1
    again, _ = make_loaders("synthetic", train_subset=100, batch_size=32, seed=0)
    assert torch.equal(train.dataset.labels, again.dataset.labels)
