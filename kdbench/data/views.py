"""Two views of every training image, as MLKD (Jin, Wang & Lin, CVPR 2023) trains: the data
set's own augmentation (the weak view) and a strong one.

The dataset option ``strong_view`` (a name in ``STRONG_VIEWS``) turns it on; it is part of the
spec (``RunSpec.dataset_options``), so of the case id and group. Each training batch of B images
then holds 2B rows: the weak views, then the strong views of the same images, with targets and
indices repeated; validation and test batches are unchanged. The weak view is the data set's own
augmentation — CIFAR's random crop (padding 4) and flip; digits and Fashion-MNIST, which have
none, as they are — and the strong view applies that augmentation again (its own random draw,
as the authors' two torchvision pipelines do) followed by ``STRONG_VIEWS[name]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import torch

from kdbench.data.base import DataSource, TensorData
from kdbench.registry import KdbenchError

STRONG_VIEW = "strong_view"  # the dataset option
CUTOUT_FILL = (125, 123, 114)  # the authors' Cutout colour (RGB; a grey image takes the first)

Op = Callable[[torch.Tensor, float], torch.Tensor]  # (C, H, W) uint8 image, magnitude → image


def _affine(img: torch.Tensor, matrix: tuple[float, ...]) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, matrix)`` with nearest sampling: output pixel
    (x, y) takes the input pixel at ``matrix`` applied to its centre; outside it is black."""
    _, h, w = img.shape
    a, b, c, d, e, f = matrix
    ys, xs = torch.meshgrid(
        torch.arange(h, device=img.device, dtype=torch.float64) + 0.5,
        torch.arange(w, device=img.device, dtype=torch.float64) + 0.5,
        indexing="ij",
    )  # (H, W) pixel centres
    col, row = (a * xs + b * ys + c).floor().long(), (d * xs + e * ys + f).floor().long()
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    source = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).flatten()  # (H·W,)
    out = img.flatten(1).index_select(1, source).view_as(img)  # (C, H, W)
    return torch.where(inside, out, torch.zeros((), dtype=img.dtype, device=img.device))


@cache
def fixmatch_ops() -> tuple[tuple[Op, float, float], ...]:
    """FixMatch's RandAugment op list as the authors' ``mdistiller/dataset/cifar100.py`` has it:
    (op, lowest magnitude, highest magnitude). Theirs are PIL operations on 8-bit images; here
    the torchvision.transforms.v2 functions that equal them, shears and translations
    ``_affine`` (torchvision's shear turns about the centre, PIL's about the corner)."""
    import torchvision.transforms.v2.functional as TF  # on first use, as torchvision_sets

    return (
        (lambda img, v: TF.autocontrast(img), 0, 1),
        (TF.adjust_brightness, 0.05, 0.95),
        (TF.adjust_saturation, 0.05, 0.95),  # PIL's Color
        (TF.adjust_contrast, 0.05, 0.95),
        (lambda img, v: TF.equalize(img), 0, 1),
        (lambda img, v: img, 0, 1),  # Identity
        (lambda img, v: TF.posterize(img, max(1, int(v))), 4, 8),
        (lambda img, v: TF.rotate(img, v), -30, 30),
        (TF.adjust_sharpness, 0.05, 0.95),
        (lambda img, v: _affine(img, (1, v, 0, 0, 1, 0)), -0.3, 0.3),  # ShearX
        (lambda img, v: _affine(img, (1, 0, 0, v, 1, 0)), -0.3, 0.3),  # ShearY
        (lambda img, v: TF.solarize(img, v) if v <= 255 else img, 0, 256),  # > 255: none
        (lambda img, v: _affine(img, (1, 0, v * img.shape[2], 0, 1, 0)), -0.3, 0.3),  # TranslateX
        (lambda img, v: _affine(img, (1, 0, 0, 0, 1, v * img.shape[1])), -0.3, 0.3),  # TranslateY
    )


def _cutout(img: torch.Tensor, fraction: float, u: float, v: float) -> torch.Tensor:
    """The authors' ``Cutout``/``CutoutAbs``: a square of side ``fraction``·width at a uniform
    centre (``u``, ``v`` in [0, 1)), clipped to the image, painted ``CUTOUT_FILL`` (PIL's
    rectangle: both corners inclusive, coordinates truncated)."""
    if fraction <= 0:
        return img
    c, h, w = img.shape
    side = fraction * w
    x0, y0 = int(max(0.0, u * w - side / 2)), int(max(0.0, v * h - side / 2))
    x1, y1 = int(min(w, x0 + side)), int(min(h, y0 + side))
    out = img.clone()
    fill = torch.tensor(
        CUTOUT_FILL[:c] if c <= 3 else CUTOUT_FILL[:1] * c, dtype=img.dtype, device=img.device
    )
    out[:, y0 : y1 + 1, x0 : x1 + 1] = fill[:, None, None]
    return out


@dataclass(frozen=True)
class FixMatchRandAugment:
    """FixMatch's RandAugment as MLKD's CIFAR strong view (``RandAugment(2, 10)`` of the authors'
    ``get_cifar100_train_transform_strong``): per image, ``ops`` operations drawn uniformly with
    replacement from ``fixmatch_ops()``, each at a magnitude uniform in its range, then Cutout of a
    square of side uniform in [0, ½]·width. The operations work on 8-bit images, as PIL's: the
    normalised batch is mapped to 0–255 by ``low``/``high``, the per-channel normalised values of
    the darkest and brightest pixel of the training set, and back. Every random number comes
    from the batch generator (drawn on the CPU), so a seed gives the same views."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    ops: int = 2

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        table = fixmatch_ops()
        b = len(x)
        choice = torch.randint(len(table), (b, self.ops), generator=generator).tolist()
        magnitude = torch.rand(b, self.ops, generator=generator, dtype=torch.float64).tolist()
        cutout = torch.rand(b, 3, generator=generator, dtype=torch.float64).tolist()
        low = torch.tensor(self.low, device=x.device)[:, None, None]  # (C, 1, 1)
        span = torch.tensor(self.high, device=x.device)[:, None, None] - low
        pixels = ((x - low) / span * 255).round().clamp(0, 255).to(torch.uint8)  # (B, C, H, W)
        out = []
        for img, ops, mags, (size, u, v) in zip(pixels, choice, magnitude, cutout):
            for k, m in zip(ops, mags):
                op, lo, hi = table[k]
                img = op(img, lo + (hi - lo) * m)
            out.append(_cutout(img, size * 0.5, u, v))
        return torch.stack(out).to(x.dtype) / 255 * span + low  # (B, C, H, W) normalised


STRONG_VIEWS = {"fixmatch": FixMatchRandAugment}


def with_strong_view(data: DataSource, name: str) -> TensorData:
    """``data`` (in memory) yielding weak and strong views of every training image."""
    if name not in STRONG_VIEWS:
        raise KdbenchError(
            f"invalid dataset option {STRONG_VIEW}={name!r}: valid: {', '.join(STRONG_VIEWS)}"
        )
    if not isinstance(data, TensorData):
        raise KdbenchError(
            f"dataset option {STRONG_VIEW} needs an in-memory data set: "
            f"{data.name} streams its images"
        )
    dims = (0, *range(2, data.x_train.dim()))  # every dimension but the channel
    low, high = data.x_train.amin(dim=dims), data.x_train.amax(dim=dims)
    strong = STRONG_VIEWS[name](tuple(low.tolist()), tuple(high.tolist()))
    return replace(
        data, strong=strong, description=f"{data.description}, weak + strong ({name}) views"
    )
