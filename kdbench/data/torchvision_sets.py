"""Data sets read through torchvision: MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 held in
memory (``TensorData``: batches and augmentation stay on the case's device), and any
ImageNet-layout folder streamed through a DataLoader (``imagefolder``).

Files are looked for under the data root: the ``root`` argument (the plugin passes
``--kd-data-root``), else ``$KDBENCH_DATA``, else ``~/.cache/kdbench/data``. They are downloaded
only when ``download`` is true (``--kd-download``); otherwise missing files raise a one-line
``KdbenchError`` that says where they were looked for and how to get them. An image folder is
checked when it is opened, before any training: a class folder without images, or a file that
does not decode as training would decode it, is one line naming it. Fashion-MNIST is also
found without a download where Debian's ``dataset-fashion-mnist`` package installed it: its
gzipped IDX files are unpacked once into the data root, where torchvision reads them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from kdbench.data.base import (
    Batch,
    RandomCropFlip,
    TensorData,
    carve_validation,
    validation_indices,
)
from kdbench.registry import DATASETS, KdbenchError

if TYPE_CHECKING:
    from torchvision import datasets

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
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
VAL_SIZE = 5000  # validation images carved from the training set of MNIST, Fashion-MNIST, CIFAR
# (a tenth of a smaller set, such as the tiny files of tests)
IMAGEFOLDER_VAL_FRACTION = 0.1  # of train/: ImageNet-layout folders use val/ as the test split
# gzipped IDX files installed by Debian's packages (`dpkg -L dataset-fashion-mnist`)
SYSTEM_COPIES = {
    "FashionMNIST": (
        Path("/usr/share/datasets/fashion-mnist"),
        "apt-get install dataset-fashion-mnist",
    )
}
CHECKED = ".kdbench-checked"  # an image folder's stamp: the hash of the files found sound


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
    augment: bool,
    description: str,
) -> TensorData:
    """Train (less ``VAL_SIZE`` validation images) and test as normalised float tensors;
    CIFAR-style augmentation if ``augment``."""
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
        augment=RandomCropFlip(4, fill) if augment else None,
        description=description,
    )


@DATASETS.register("mnist")
def mnist(root: Path | None = None, download: bool = False) -> TensorData:
    """MNIST handwritten digits, 1×28×28, 55,000 train / 5,000 val / 10,000 test, normalised."""
    return _in_memory(
        "mnist", "MNIST", root, download, MNIST_STATS, False, "MNIST digits, 1×28×28, 10 classes"
    )


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: Path | None = None, download: bool = False) -> TensorData:
    """Fashion-MNIST clothing images, 1×28×28, 55,000 train / 5,000 val / 10,000 test."""
    return _in_memory(
        "fashion_mnist",
        "FashionMNIST",
        root,
        download,
        FASHION_MNIST_STATS,
        False,
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
        augment,
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
        augment,
        "CIFAR-100, 3×32×32, 100 classes",
    )


class Indexed(Dataset):
    """A data set whose items also carry their position: (x, y, index)."""

    def __init__(self, dataset: datasets.VisionDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, y = self.dataset[i]
        return x, y, i


@dataclass(frozen=True)
class FolderData:
    """An ImageNet-layout folder (``train/<class>/*``, ``val/<class>/*``) streamed through a
    DataLoader with ``workers`` processes, with the standard ImageNet recipe: random resized crop
    and flip for training, resize to size/0.875 and centre crop for evaluation. ``val/`` is the
    test split; the validation split is a fixed stratified ``IMAGEFOLDER_VAL_FRACTION`` of
    ``train/``, seen with the evaluation transform. The training order comes from the caller's
    generator, which also seeds the workers, so a fixed worker count gives the same batches."""

    name: str
    train: Subset
    val: Subset
    test: datasets.ImageFolder
    size: int
    workers: int
    device: str = "cpu"

    @property
    def num_classes(self) -> int:
        return len(self.test.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_val(self) -> int:
        return len(self.val)

    @property
    def num_test(self) -> int:
        return len(self.test)

    @property
    def augmented(self) -> bool:
        return True

    def to(self, device: torch.device | str) -> FolderData:
        return replace(self, device=str(device))

    def _batches(
        self, dataset: Dataset, batch_size: int, order: list[int], generator: torch.Generator | None
    ) -> Iterator[Batch]:
        loader = DataLoader(
            Indexed(dataset),
            batch_size=batch_size,
            sampler=order,
            num_workers=self.workers,
            generator=generator,
            pin_memory=self.device.startswith("cuda"),
        )
        for x, y, index in loader:
            yield (
                x.to(self.device, non_blocking=True),
                y.to(self.device, non_blocking=True),
                index.to(self.device, non_blocking=True),
            )

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(self.num_train, generator=generator).tolist()
        return self._batches(self.train, batch_size, order, generator)

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        return self._batches(self.val, batch_size, list(range(self.num_val)), None)

    def test_batches(self, batch_size: int) -> Iterator[Batch]:
        return self._batches(self.test, batch_size, list(range(self.num_test)), None)

    def _targets(self, split: Subset) -> torch.Tensor:
        folder = cast("datasets.ImageFolder", split.dataset)  # the splits of one image folder
        targets = torch.tensor(folder.targets)
        return targets[torch.as_tensor(split.indices)].to(self.device)

    def train_targets(self) -> torch.Tensor:
        return self._targets(self.train)

    def val_targets(self) -> torch.Tensor:
        return self._targets(self.val)

    def test_targets(self) -> torch.Tensor:
        return torch.tensor(self.test.targets, device=self.device)

    def fingerprint(self) -> str:
        """A hash of the image size and of every sample's class and path within its split."""
        h = hashlib.sha256(f"{self.name}|{self.size}|{self.test.classes}".encode())
        for split in (self.train, self.val):
            h.update(f"{split.indices}".encode())
        for folder in (cast("datasets.ImageFolder", self.train.dataset), self.test):
            for path, target in folder.samples:
                h.update(f"{Path(path).relative_to(folder.root)}|{target}\n".encode())
        return h.hexdigest()[:16]


def _image_folder(path: Path, transform) -> datasets.ImageFolder:
    """torchvision's ImageFolder of ``path``, every class folder of it holding an image, and
    every image decoded once (``_check_images``); else one line naming what is wrong."""
    from torchvision import datasets

    try:
        found = datasets.ImageFolder(str(path), transform, allow_empty=True)
    except FileNotFoundError as exc:  # no class folder at all
        raise KdbenchError(
            f"imagefolder: {str(exc).splitlines()[0]}: ImageNet layout is {path}/<class>/<image>"
        ) from None
    counts = Counter(found.targets)
    for target, name in enumerate(found.classes):
        if not counts[target]:
            raise KdbenchError(
                f"imagefolder: class folder {path / name} has no images "
                f"({', '.join(datasets.folder.IMG_EXTENSIONS)}): add some or remove it"
            )
    return found


def _check_images(found: datasets.ImageFolder, workers: int) -> None:
    """Decode every image of ``found`` with its own loader, as training will, in ``workers``
    threads; the first that fails is one line naming the file. A stamp in the folder (where it
    is writable) holds the hash of the paths, sizes and modification times of the files found
    sound, so the next opening of the same files decodes none."""
    root = Path(found.root)
    listing = hashlib.sha256()
    for path, _ in found.samples:
        stat = os.stat(path)
        listing.update(
            f"{Path(path).relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode()
        )
    stamp = root / CHECKED
    if stamp.is_file() and stamp.read_text() == listing.hexdigest():
        return

    def problem(path: str) -> str | None:
        from PIL import UnidentifiedImageError

        try:
            found.loader(path)
        except UnidentifiedImageError:
            return "not an image"
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for damaged files
            return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for (path, _), why in zip(found.samples, pool.map(problem, [p for p, _ in found.samples])):
            if why:
                raise KdbenchError(
                    f"imagefolder: cannot read image {path} ({why}): delete or replace it"
                )
    try:
        stamp.write_text(listing.hexdigest())
    except OSError:
        pass  # a read-only folder is checked at every opening


@DATASETS.register("imagefolder")
def imagefolder(
    root: Path | None = None,
    download: bool = False,
    *,
    path: str | None = None,
    size: int = 224,
    workers: int | None = None,
) -> FolderData:
    """Any folder with ``train/`` and ``val/`` class subfolders (ImageNet layout): ``path``
    (absolute, or relative to the data root; default: the data root itself). ``val/`` is the
    test split; a stratified tenth of ``train/`` is the validation split."""
    folder = data_root(root) / (path or "")
    if not ((folder / "train").is_dir() and (folder / "val").is_dir()):
        raise KdbenchError(
            f"imagefolder: no train/ and val/ folders in {folder}: point "
            f"--kd-data-root or {ENV} (or the path option) at an ImageNet-layout "
            f"folder; it cannot be downloaded"
        )
    from torchvision import transforms

    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    mean, std = IMAGENET_STATS
    normalize = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    evaluate = transforms.Compose(
        [transforms.Resize(round(size / 0.875)), transforms.CenterCrop(size), *normalize]
    )
    train = _image_folder(
        folder / "train",
        transforms.Compose(
            [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), *normalize]
        ),
    )
    test = _image_folder(folder / "val", evaluate)
    if test.classes != train.classes:
        raise KdbenchError(
            f"imagefolder: val/ classes differ from train/ classes in {folder}: "
            f"{len(test.classes)} vs {len(train.classes)}"
        )
    for found in (train, test):
        _check_images(found, workers)
    n_val = max(1, round(IMAGEFOLDER_VAL_FRACTION * len(train)))
    train_idx, val_idx = validation_indices(train.targets, n_val)
    val = Subset(_image_folder(folder / "train", evaluate), val_idx.tolist())
    return FolderData("imagefolder", Subset(train, train_idx.tolist()), val, test, size, workers)
