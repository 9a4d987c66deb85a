"""The torchvision data sets, loaded with download off from tiny files written here in the
official on-disk formats (CIFAR pickled batches, MNIST idx files, an ImageFolder tree), and the
device-side CIFAR augmentation."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from kdbench.data import load_dataset, torchvision_sets
from kdbench.data.base import RandomCropFlip
from kdbench.data.torchvision_sets import (
    CIFAR10_STATS,
    CIFAR100_STATS,
    FASHION_MNIST_STATS,
    MNIST_STATS,
)
from kdbench.registry import KdbenchError

PER_FILE = 3  # images per CIFAR batch file / MNIST split


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root: Path, cls: type, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """Pickled batches + meta as the official archive unpacks them; torchvision's checksums are
    pointed at these files. Returns the first training batch, (N, 3, 32, 32) uint8."""
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    num_classes = 10 if cls is datasets.CIFAR10 else 100
    label_key = "labels" if cls is datasets.CIFAR10 else "fine_labels"
    lists, first = {}, None
    for attr in ("train_list", "test_list"):
        lists[attr] = []
        for filename, _ in getattr(cls, attr):
            data = rng.integers(0, 256, (PER_FILE, 3 * 32 * 32), dtype=np.uint8)
            batch = {"data": data, label_key: list(rng.integers(0, num_classes, PER_FILE))}
            (folder / filename).write_bytes(pickle.dumps(batch))
            lists[attr].append([filename, _md5(folder / filename)])
            first = data.reshape(-1, 3, 32, 32) if first is None else first
        monkeypatch.setattr(cls, attr, lists[attr])
    meta = folder / cls.meta["filename"]
    meta.write_bytes(pickle.dumps({cls.meta["key"]: [f"class{i}" for i in range(num_classes)]}))
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(meta)})
    return first


def write_mnist(root: Path, cls: type, packed: bool = False) -> np.ndarray:
    """Idx files in <root>/<MNIST|FashionMNIST>/raw, or gzipped straight in ``root`` (as Debian's
    package installs them) if ``packed``; returns the training images."""
    raw = root if packed else root / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=packed)
    write = gzip.compress if packed else bytes
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (PER_FILE, 28, 28), dtype=np.uint8)
    for prefix, images in (("train", train), ("t10k", train[:2])):
        n = len(images)
        suffix = ".gz" if packed else ""
        (raw / f"{prefix}-images-idx3-ubyte{suffix}").write_bytes(
            write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        )
        (raw / f"{prefix}-labels-idx1-ubyte{suffix}").write_bytes(
            write(struct.pack(">II", 0x801, n) + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
        )
    return train


def _key(image: torch.Tensor) -> tuple:
    return tuple(image.flatten().tolist())


def _normalized(images: np.ndarray, stats) -> torch.Tensor:
    mean, std = (torch.tensor(v)[:, None, None] for v in stats)
    return (torch.from_numpy(images).float() / 255 - mean) / std


@pytest.mark.parametrize(
    "name, cls, stats, classes",
    [
        ("cifar10", datasets.CIFAR10, CIFAR10_STATS, 10),
        ("cifar100", datasets.CIFAR100, CIFAR100_STATS, 100),
    ],
)
def test_cifar_from_pickled_batches(tmp_path, monkeypatch, name, cls, stats, classes) -> None:
    first = write_cifar(tmp_path, cls, monkeypatch)
    data = load_dataset(name, tmp_path, download=False)
    assert data.num_classes == classes and data.input_shape == (3, 32, 32)
    n = PER_FILE * len(cls.train_list)
    n_val = max(1, n // 10)  # a tenth of the training files is the validation split
    assert (data.num_train, data.num_val, data.num_test) == (n - n_val, n_val, PER_FILE)
    rows = set(map(_key, torch.cat([data.x_train, data.x_val])))
    assert set(map(_key, _normalized(first, stats))) <= rows
    assert data.augmented and not load_dataset(name, tmp_path, augment=False).augmented
    x, y, index = next(data.train_batches(2, torch.Generator().manual_seed(0)))
    assert x.shape == (2, 3, 32, 32) and y.shape == index.shape == (2,)


@pytest.mark.parametrize(
    "name, cls", [("mnist", datasets.MNIST), ("fashion_mnist", datasets.FashionMNIST)]
)
def test_mnist_from_idx_files(tmp_path, monkeypatch, name, cls) -> None:
    train = write_mnist(tmp_path, cls)
    monkeypatch.setenv("KDBENCH_DATA", str(tmp_path))  # the root when none is passed
    data = load_dataset(name, download=False)
    assert (data.num_classes, data.input_shape, data.num_train, data.num_val, data.num_test) == (
        10,
        (1, 28, 28),
        PER_FILE - 1,
        1,
        2,
    )
    assert not data.augmented
    if name == "mnist":
        both = torch.cat([data.x_train, data.x_val])
        expected = _normalized(train[:, None], MNIST_STATS)
        assert sorted(map(_key, both)) == sorted(map(_key, expected))


def test_fashion_mnist_augments_with_crop_and_flip_on_request(tmp_path) -> None:
    write_mnist(tmp_path, datasets.FashionMNIST)
    augmented = load_dataset("fashion_mnist", tmp_path, augment=True)
    black = tuple(
        ((0 - torch.tensor(FASHION_MNIST_STATS[0])) / torch.tensor(FASHION_MNIST_STATS[1])).tolist()
    )
    assert augmented.augment == RandomCropFlip(2, black)
    as_is = load_dataset("fashion_mnist", tmp_path, teacher_augment=True)  # the teacher's alone
    assert not as_is.augmented and torch.equal(as_is.x_train, augmented.x_train)


@pytest.fixture
def system_copy(tmp_path, monkeypatch) -> Path:
    """An empty stand-in for the folder Debian's dataset-fashion-mnist installs."""
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    folder.mkdir()
    monkeypatch.setitem(
        torchvision_sets.SYSTEM_COPIES,
        "FashionMNIST",
        (folder, "apt-get install dataset-fashion-mnist"),
    )
    return folder


def test_fashion_mnist_from_the_debian_package(tmp_path, system_copy) -> None:
    train = write_mnist(system_copy, datasets.FashionMNIST, packed=True)
    root = tmp_path / "root"
    data = load_dataset("fashion_mnist", root, download=False)
    assert (data.num_train, data.num_val, data.num_test) == (PER_FILE - 1, 1, 2)
    both = torch.cat([data.x_train, data.x_val])
    expected = _normalized(train[:, None], FASHION_MNIST_STATS)
    assert sorted(map(_key, both)) == sorted(map(_key, expected))
    unpacked = sorted(p.name for p in (root / "FashionMNIST" / "raw").iterdir())
    assert unpacked == sorted(p.name[:-3] for p in system_copy.iterdir())  # once, no leftovers


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder"])
def test_missing_files_is_one_line_error(tmp_path, system_copy, name) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(KdbenchError) as error:
        load_dataset(name, root, download=False)
    message = str(error.value)
    assert "\n" not in message and str(root) in message and "KDBENCH_DATA" in message
    assert name == "imagefolder" or "--kd-download" in message
    assert (name == "fashion_mnist") == ("apt-get install dataset-fashion-mnist" in message)


def write_image_folder(root: Path, classes=("cat", "dog", "eel"), per_class=2) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


def test_image_folder_streams_indexed_batches(tmp_path) -> None:
    write_image_folder(tmp_path / "tiny")
    data = load_dataset("imagefolder", tmp_path, path="tiny", size=8, workers=0)
    assert (data.num_classes, data.input_shape, data.num_train, data.num_val, data.num_test) == (
        3,
        (3, 8, 8),
        5,
        1,
        6,
    )  # a tenth of train/ is the validation split
    batches = list(data.train_batches(4, torch.Generator().manual_seed(0)))
    assert [x.shape for x, _, _ in batches] == [(4, 3, 8, 8), (1, 3, 8, 8)]
    index = torch.cat([i for _, _, i in batches])
    assert sorted(index.tolist()) == list(range(5))
    ((x_val, y_val, _),) = data.val_batches(8)
    assert x_val.shape == (1, 3, 8, 8) and y_val.tolist() == data.val_targets().tolist()
    assert set(data.train.indices).isdisjoint(data.val.indices)
    torch.testing.assert_close(torch.cat([y for _, y, _ in batches]), data.train_targets()[index])
    _, y, i = next(data.test_batches(6))
    assert i.tolist() == list(range(6)) and y.tolist() == data.test_targets().tolist()
    same = load_dataset("imagefolder", tmp_path / "tiny", size=8)  # other root, same files
    assert data.fingerprint() == same.fingerprint()


def test_image_folder_workers_are_seeded_by_the_generator(tmp_path) -> None:
    write_image_folder(tmp_path)
    data = load_dataset("imagefolder", tmp_path, size=8, workers=1)
    first, again = (
        [x for x, _, _ in data.train_batches(6, torch.Generator().manual_seed(s))] for s in (3, 3)
    )
    torch.testing.assert_close(first, again)


def _crop_of(image: torch.Tensor, padded: torch.Tensor) -> bool:
    """Whether ``image`` is a crop of ``padded``, mirrored or not."""
    _, h, w = image.shape
    windows = padded.unfold(1, h, 1).unfold(2, w, 1)  # (C, rows, cols, H, W)
    return any(
        torch.equal(windows[:, i, j], candidate)
        for i in range(windows.shape[1])
        for j in range(windows.shape[2])
        for candidate in (image, image.flip(2))
    )


def test_random_crop_flip_pads_crops_and_mirrors() -> None:
    augment = RandomCropFlip(2, (-1.0, -2.0, -3.0))
    x = torch.randn(6, 3, 8, 8)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    fill = torch.tensor(augment.fill)[:, None, None].expand(3, 12, 12)
    for image, source in zip(out, x):
        padded = fill.clone()
        padded[:, 2:10, 2:10] = source
        assert _crop_of(image, padded)


def test_random_crop_flip_is_seeded_and_varies() -> None:
    augment = RandomCropFlip(4, (0.0, 0.0, 0.0))
    x = torch.randn(16, 3, 32, 32)
    a, b, c = (augment(x, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "device",
    [
        "meta",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
        ),
    ],
)
def test_random_crop_flip_stays_on_the_batch_device(device) -> None:
    x = torch.randn(4, 3, 32, 32, device=device)
    flipped = RandomCropFlip(4, (0.0, 0.0, 0.0))(x, torch.Generator().manual_seed(0))
    assert flipped.device == x.device
