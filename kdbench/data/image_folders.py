"""``imagefolder``: any ImageNet-layout folder (``train/<class>/*``, ``val/<class>/*``) under
the data root (``kdbench.data.torchvision_sets.data_root``), streamed through a DataLoader.

The folder is checked when it is opened, before any training: a class folder without images,
or a file that does not decode as training would decode it, is one line naming it.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from kdbench.data.base import Batch, validation_indices
from kdbench.data.torchvision_sets import ENV, data_root
from kdbench.registry import DATASETS, KdbenchError

if TYPE_CHECKING:
    from torchvision import datasets

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGEFOLDER_VAL_FRACTION = 0.1  # of train/: ImageNet-layout folders use val/ as the test split
CHECKED = ".kdbench-checked"  # an image folder's stamp: the hash of the files found sound


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
