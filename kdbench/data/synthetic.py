"""Procedural class-prototype images of any shape and class count, seeded: for tests."""

from __future__ import annotations

from pathlib import Path

import torch

from kdbench.data.base import RandomCropFlip, TensorData, carve_validation
from kdbench.registry import DATASETS


@DATASETS.register("synthetic")
def synthetic(
    root: Path | None = None,
    download: bool = False,
    *,
    num_classes: int = 10,
    channels: int = 1,
    size: int = 8,
    num_train: int = 512,
    num_val: int = 128,
    num_test: int = 128,
    noise: float = 0.6,
    seed: int = 0,
    augment: bool = False,
) -> TensorData:
    """Each class is a random smooth prototype image; samples are prototype + Gaussian noise;
    ``num_val`` of ``num_train + num_val`` drawn training samples form the validation split.
    ``augment`` adds the CIFAR training augmentation (4-pixel padded random crop and horizontal
    flip), so the teacher runs online as on CIFAR (used by benchmarks/gpu.py)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, channels, max(2, size // 4), max(2, size // 4), generator=g)
    protos = torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )  # (K, C, H, W)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = protos[y] + noise * torch.randn(n, channels, size, size, generator=g)
        return x, y

    x_tr, y_tr, x_val, y_val = carve_validation(*draw(num_train + num_val), num_val)
    x_te, y_te = draw(num_test)
    return TensorData(
        name="synthetic",
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_val,
        y_val=y_val,
        x_test=x_te,
        y_test=y_te,
        num_classes=num_classes,
        description=f"class prototypes + noise, {channels}×{size}×{size}, {num_classes} classes"
        + (", crop+flip augmentation" if augment else ""),
        augment=RandomCropFlip(4, (0.0,) * channels) if augment else None,
    )
