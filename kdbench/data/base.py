"""The data contract the engine trains on.

A registered data set is a factory ``(root: Path | None, download: bool, **options) → DataSource``.
A ``DataSource`` yields batches ``(x, y, index)`` already on the case's device, where ``index``
holds the samples' positions in the training set (teacher-output caches and CRD use them).

Every data set has three splits: train, a fixed stratified **validation** split carved out of
the published training set (``carve_validation``: the same images for every case of a data
set; nothing ever trains on them; every choice a report makes uses them) and the published
test split, on which the tables report.
In-memory sets are ``TensorData``: tensors live on the device, batches are slices of a seeded
permutation, augmentation (if any) runs on the device batch. Streaming sets (ImageFolder)
implement the same methods over a DataLoader.

The dataset option ``strong_view`` (``kdbench.data.views``), taken by ``load_dataset`` for every
in-memory set, makes each training batch two views of its images, weak then strong (MLKD).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from kdbench.registry import DATASETS

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (B, C, H, W), y (B,), index (B,)
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
SPLIT_SEED = 0  # fixes every data set's validation split


def validation_indices(
    targets: torch.Tensor | np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions of a training set: ``size`` samples drawn stratified by
    class with a fixed seed (uniformly where a split that small cannot hold every class, as in
    tests' tiny files), each part in its original order."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(targets)
    counts = np.bincount(labels)
    classes = int((counts > 0).sum())
    can_stratify = counts[counts > 0].min() >= 2 and classes <= size <= len(labels) - classes
    train, val = train_test_split(
        np.arange(len(labels)),
        test_size=size,
        stratify=labels if can_stratify else None,
        random_state=SPLIT_SEED,
    )
    return np.sort(train), np.sort(val)


def carve_validation(
    x: torch.Tensor, y: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): ``validation_indices`` applied to tensors."""
    train, val = (torch.from_numpy(i) for i in validation_indices(y, size))
    return x[train], y[train], x[val], y[val]


def eval_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterator[Batch]:
    """A held-out split in order, as batches ``(x, y, position)``."""
    for start in range(0, len(y), batch_size):
        index = torch.arange(start, min(start + batch_size, len(y)), device=x.device)
        yield x[start : start + batch_size], y[start : start + batch_size], index


@dataclass(frozen=True)
class RandomCropFlip:
    """torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` as one operation
    on a normalised batch, on the batch's device: each image is padded by ``padding`` pixels of
    ``fill`` (the normalised value of a black pixel, per channel), cropped back to its size at a
    random offset and mirrored with probability ½. Random numbers come from ``generator``; only
    the per-image offsets and flips (3 numbers per image) cross to the device."""

    padding: int
    fill: tuple[float, ...]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.padding
        padded = x.new_empty(b, c, h + 2 * p, w + 2 * p)  # (B, C, H+2p, W+2p)
        for channel, value in enumerate(self.fill):
            padded[:, channel].fill_(value)
        padded[:, :, p : p + h, p : p + w] = x
        offsets = torch.randint(
            0, 2 * p + 1, (2, b), generator=generator, device=generator.device
        ).to(x.device)  # (2, B) row, column
        flips = torch.rand(b, generator=generator, device=generator.device).to(x.device) < 0.5
        rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
        cols = torch.where(flips[:, None], cols.flip(1), cols)  # a flip reverses the columns
        batch = torch.arange(b, device=x.device)[:, None, None]
        crops = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        return crops.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


class DataSource(Protocol):
    """The data contract the engine trains on: a fixed train / validation / test split (the
    validation split carved once out of the training set, never trained on), batches as
    ``(x, y, index)`` with ``index`` the sample's position in the training set (teacher caches
    are keyed by it), augmentation (if any) applied to the device batch from the batch's
    generator, and a ``fingerprint`` of the exact tensors for cache keys."""

    @property
    def name(self) -> str: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, int, int]: ...

    @property
    def num_train(self) -> int: ...

    @property
    def num_val(self) -> int: ...

    @property
    def num_test(self) -> int: ...

    @property
    def augmented(self) -> bool: ...

    def to(self, device: torch.device | str) -> DataSource: ...

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]: ...

    def val_batches(self, batch_size: int) -> Iterator[Batch]: ...

    def test_batches(self, batch_size: int) -> Iterator[Batch]: ...

    def train_targets(self) -> torch.Tensor: ...

    def val_targets(self) -> torch.Tensor: ...

    def test_targets(self) -> torch.Tensor: ...

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class TensorData:
    """A data set held as tensors (on the case's device after ``to``)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: Augment | None = field(default=None, compare=False)
    description: str = ""
    strong: Augment | None = field(default=None, compare=False)  # a second, strong view

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.x_train.shape  # (N, C, H, W) images
        return c, h, w

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def num_val(self) -> int:
        return len(self.y_val)

    @property
    def num_test(self) -> int:
        return len(self.y_test)

    @property
    def augmented(self) -> bool:
        return self.augment is not None or self.strong is not None

    @property
    def views(self) -> int:
        """Views of each image in a training batch: 2 (weak, then strong) with ``strong``."""
        return 1 if self.strong is None else 2

    def to(self, device: torch.device | str) -> TensorData:
        return replace(self, **{name: getattr(self, name).to(device) for name in TENSORS})

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """Shuffled mini-batches; the permutation is drawn on the CPU generator (device-agnostic).
        With ``strong``, a batch of B images has 2B rows: their weak views, then their strong
        views (the own augmentation drawn again, then ``strong``), targets and indices twice."""
        order = torch.randperm(self.num_train, generator=generator).to(self.x_train.device)
        for start in range(0, self.num_train, batch_size):
            index = order[start : start + batch_size]
            x, y = self.x_train[index], self.y_train[index]
            weak = x if self.augment is None else self.augment(x, generator)
            if self.strong is None:
                yield weak, y, index
                continue
            strong = self.strong(
                x if self.augment is None else self.augment(x, generator), generator
            )
            yield torch.cat([weak, strong]), y.repeat(2), index.repeat(2)  # (2B, C, H, W)

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        return eval_batches(self.x_val, self.y_val, batch_size)

    def test_batches(self, batch_size: int) -> Iterator[Batch]:
        return eval_batches(self.x_test, self.y_test, batch_size)

    def train_targets(self) -> torch.Tensor:
        return self.y_train

    def val_targets(self) -> torch.Tensor:
        return self.y_val

    def test_targets(self) -> torch.Tensor:
        return self.y_test

    def fingerprint(self) -> str:
        """Identifies the exact tensors and augmentation (cache keys): a hash of the bytes."""
        views = "" if self.strong is None else f"|{self.strong}"
        h = hashlib.sha256(f"{self.name}|{self.augmented}{views}".encode())
        for t in (getattr(self, name) for name in TENSORS):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


# A dataset option ``teacher_<name>`` is the data set's option ``<name>`` for the teacher alone
# (``kdbench.spec.teacher_options``): its students train on the data set without it.
TEACHER_PREFIX = "teacher_"


def load_dataset(
    name: str, root: Path | str | None = None, download: bool = False, **options
) -> DataSource:
    """The registered data set ``name`` built with ``options``; ``strong_view`` is every
    in-memory set's option (``kdbench.data.views``), ``teacher_*`` options are the teacher's
    (left out here), the others go to its factory."""
    from kdbench.data.views import STRONG_VIEW, with_strong_view

    options = {k: v for k, v in options.items() if not k.startswith(TEACHER_PREFIX)}
    strong = options.pop(STRONG_VIEW, None)
    data = DATASETS.get(name)(root=Path(root) if root else None, download=download, **options)
    return data if strong is None else with_strong_view(data, strong)
