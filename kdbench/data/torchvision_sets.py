"""Data sets read through torchvision: MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 held in
memory (``TensorData``: batches and augmentation stay on the case's device). ImageNet-layout
folders streamed through a DataLoader are ``kdbench.data.image_folders``.

Files are looked for under the data root: the ``root`` argument (the plugin passes
``--kd-data-root``), else ``$KDBENCH_DATA``, else ``~/.cache/kdbench/data``. They are downloaded
only when ``download`` is true (``--kd-download``); otherwise missing files raise a one-line
``KdbenchError`` that says where they were looked for and how to get them. Fashion-MNIST is also
found without a download where Debian's ``dataset-fashion-mnist`` package installed it: its
gzipped IDX files are unpacked once into the data root, where torchvision reads them.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from kdbench.data.base import (
    RandomCropFlip,
    TensorData,
    carve_validation,
)
from kdbench.registry import DATASETS, KdbenchError

if TYPE_CHECKING:
    pass

ENV = "KDBENCH_DATA"
DEFAULT_ROOT = "~/.cache/kdbench/data"
HOW = (
    f"pass --kd-download to fetch them, or point --kd-data-root or {ENV} at a folder that has them"
)

# per-channel mean and std of the training images in [0, 1]; CIFAR-100's are RepDistiller's
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
VAL_SIZE = 5000  # validation images carved from the training set of MNIST, Fashion-MNIST, CIFAR
# (a tenth of a smaller set, such as the tiny files of tests)
# gzipped IDX files installed by Debian's packages (`dpkg -L dataset-fashion-mnist`)
SYSTEM_COPIES = {
    "FashionMNIST": (
        Path("/usr/share/datasets/fashion-mnist"),
        "apt-get install dataset-fashion-mnist",
    )
}


def data_root(root: Path | str | None) -> Path:
    """The folder data sets live in: ``root``, else ``$KDBENCH_DATA``, else the user cache."""
    return Path(root or os.environ.get(ENV) or DEFAULT_ROOT).expanduser()


def _unpack_system_copy(cls: type, root: Path) -> None:
    """Unpack the system's gzipped IDX files of ``cls`` (if a package installed them) into the
    raw folder torchvision reads under ``root``, unless that folder already has every file."""
    source = SYSTEM_COPIES.get(cls.__name__, (None, ""))[0]
    files = [Path(url).name for url, _ in getattr(cls, "resources", ())]
    if source is None or not all((source / f).is_file() for f in files):
        return
    raw = root / cls.__name__ / "raw"
    if all((raw / f).with_suffix("").is_file() for f in files):
        return
    raw.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = (raw / f).with_suffix("")
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        with gzip.open(source / f) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        partial.replace(target)  # atomic: concurrent workers never read half a file


def _open(cls: type, name: str, root: Path, download: bool, train: bool):
    """The torchvision data set, or one line that says where its files were sought and why they
    could not be used: missing, damaged, or (with ``download``) not downloadable."""
    folder = root / getattr(cls, "base_folder", f"{cls.__name__}/raw")
    how = HOW
    if cls.__name__ in SYSTEM_COPIES:
        source, install = SYSTEM_COPIES[cls.__name__]
        how = f"{HOW}, or `{install}` (files in {source})"
        try:
            _unpack_system_copy(cls, root)
        except OSError as exc:
            raise KdbenchError(
                f"{name}: could not unpack {source} into {root} "
                f"({exc.strerror or exc}): point --kd-data-root or {ENV} at a "
                f"writable folder"
            ) from None
    try:
        return cls(str(root), train=train, download=download)
    except Exception as exc:  # torchvision raises many kinds (URLError, RuntimeError, EOF, …)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if download:
            raise KdbenchError(
                f"{name}: could not download it into {root} ({reason}): check "
                f"the network, or put the files there yourself"
            ) from None
        if isinstance(exc, RuntimeError) and "not found" in reason:  # torchvision's wording
            raise KdbenchError(f"{name}: no usable data set files in {folder}: {how}") from None
        raise KdbenchError(
            f"{name}: the data set files in {folder} are damaged ({reason}): "
            f"delete them, then {how}"
        ) from None


def _images(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) uint8 images and (N,) int64 labels of a torchvision MNIST or CIFAR set."""
    data = torch.as_tensor(dataset.data)  # MNIST (N, H, W); CIFAR (N, H, W, C)
    x = data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2)
    return x.contiguous(), torch.as_tensor(dataset.targets, dtype=torch.long)


def _in_memory(
    name: str,
    cls_name: str,
    root: Path | None,
    download: bool,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    padding: int,
    description: str,
) -> TensorData:
    """Train (less ``VAL_SIZE`` validation images) and test as normalised float tensors;
    training batches randomly cropped (``padding`` pixels) and flipped where ``padding`` > 0."""
    from torchvision import (
        datasets,  # imported on first use: the bundled digits never need it
    )

    cls = getattr(datasets, cls_name)
    mean, std = (torch.tensor(v)[:, None, None] for v in stats)  # (C, 1, 1)
    train_set, test_set = (
        _open(cls, name, data_root(root), download, train) for train in (True, False)
    )
    x, y = _images(train_set)
    x_train, y_train, x_val, y_val = carve_validation(x, y, min(VAL_SIZE, max(1, len(y) // 10)))
    x_test, y_test = _images(test_set)
    fill = tuple(((0 - mean) / std).flatten().tolist())
    return TensorData(
        name=name,
        x_train=(x_train / 255 - mean) / std,
        y_train=y_train,
        x_val=(x_val / 255 - mean) / std,
        y_val=y_val,
        x_test=(x_test / 255 - mean) / std,
        y_test=y_test,
        num_classes=len(train_set.classes),
        augment=RandomCropFlip(padding, fill) if padding else None,
        description=description,
    )


@DATASETS.register("mnist")
def mnist(root: Path | None = None, download: bool = False) -> TensorData:
    """MNIST handwritten digits, 1×28×28, 55,000 train / 5,000 val / 10,000 test, normalised."""
    return _in_memory(
        "mnist", "MNIST", root, download, MNIST_STATS, 0, "MNIST digits, 1×28×28, 10 classes"
    )


@DATASETS.register("fashion_mnist")
def fashion_mnist(
    root: Path | None = None, download: bool = False, *, augment: bool = False
) -> TensorData:
    """Fashion-MNIST clothing images, 1×28×28, 55,000 train / 5,000 val / 10,000 test.

    ``augment``: random crop (padding 2) and horizontal flip of training batches (clothes are
    mirror images of themselves; digits are not, so ``mnist`` has none)."""
    return _in_memory(
        "fashion_mnist",
        "FashionMNIST",
        root,
        download,
        FASHION_MNIST_STATS,
        2 if augment else 0,
        "Fashion-MNIST, 1×28×28, 10 classes",
    )


@DATASETS.register("cifar10")
def cifar10(
    root: Path | None = None, download: bool = False, *, augment: bool = True
) -> TensorData:
    """CIFAR-10, 3×32×32, 45,000 train / 5,000 val / 10,000 test; random crop (padding 4)
    and flip."""
    return _in_memory(
        "cifar10",
        "CIFAR10",
        root,
        download,
        CIFAR10_STATS,
        4 if augment else 0,
        "CIFAR-10, 3×32×32, 10 classes",
    )


@DATASETS.register("cifar100")
def cifar100(
    root: Path | None = None, download: bool = False, *, augment: bool = True
) -> TensorData:
    """CIFAR-100 as in the CRD/DKD papers (RepDistiller's normalisation, random crop with
    padding 4, horizontal flip), 45,000 train / 5,000 val / 10,000 test."""
    return _in_memory(
        "cifar100",
        "CIFAR100",
        root,
        download,
        CIFAR100_STATS,
        4 if augment else 0,
        "CIFAR-100, 3×32×32, 100 classes",
    )
