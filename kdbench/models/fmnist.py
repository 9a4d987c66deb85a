"""Small CNNs for 28×28 grey images (Fashion-MNIST, MNIST) that train fast on a few CPU cores:
three stages of 3×3 convolutions with batch norm, max-pooling after the first two (28 → 14 → 7),
global average pooling and one linear layer. Sized by the width and depth of each stage."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from kdbench.models.base import StagedModel
from kdbench.registry import MODELS


class FashionCNN(StagedModel):
    classifier_path = "fc"
    native_input = (1, 28, 28)
    # added by name in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        widths: tuple[int, int, int],
        depths: tuple[int, int, int],
        num_classes: int,
        input_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        for i, (width, depth) in enumerate(zip(widths, depths), start=1):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for j in range(1, depth + 1):
                layers[f"conv{j}"] = nn.Conv2d(channels, width, 3, padding=1, bias=False)
                layers[f"bn{j}"] = nn.BatchNorm2d(width)
                layers[f"relu{j}"] = nn.ReLU()
                channels = width
            self.add_module(f"layer{i}", nn.Sequential(layers))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels, num_classes)
        # a stage's feature is its last ReLU's output; its pre-activation that ReLU's input
        self.stages = tuple(f"layer{i}.relu{d}" for i, d in enumerate(depths, start=1))
        self.preact_stages = self.stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 28, 28) → (B, classes)
        x = self.pool(self.layer1(x))  # (B, w1, 14, 14)
        x = self.pool(self.layer2(x))  # (B, w2, 7, 7)
        x = self.layer3(x)  # (B, w3, 7, 7)
        return self.fc(x.mean((2, 3)))


@MODELS.register("fmnist_t")
def fmnist_t(num_classes: int, input_shape: tuple[int, int, int]) -> FashionCNN:
    """Teacher for 28×28 grey images, ≈61k parameters."""
    return FashionCNN((16, 32, 64), (1, 1, 2), num_classes, input_shape)


@MODELS.register("fmnist_tl")
def fmnist_tl(num_classes: int, input_shape: tuple[int, int, int]) -> FashionCNN:
    """Large teacher for 28×28 grey images, ≈279k parameters (two convs in stages 2 and 3)."""
    return FashionCNN((32, 64, 128), (1, 2, 2), num_classes, input_shape)


@MODELS.register("fmnist_l")
def fmnist_l(num_classes: int, input_shape: tuple[int, int, int]) -> FashionCNN:
    """Large student for 28×28 grey images, ≈24k parameters (fmnist_t's widths, one conv each)."""
    return FashionCNN((16, 32, 64), (1, 1, 1), num_classes, input_shape)


@MODELS.register("fmnist_m")
def fmnist_m(num_classes: int, input_shape: tuple[int, int, int]) -> FashionCNN:
    """Medium student for 28×28 grey images, ≈6.3k parameters (10× fewer than fmnist_t)."""
    return FashionCNN((8, 16, 32), (1, 1, 1), num_classes, input_shape)


@MODELS.register("fmnist_s")
def fmnist_s(num_classes: int, input_shape: tuple[int, int, int]) -> FashionCNN:
    """Small student for 28×28 grey images, ≈1.7k parameters (36× fewer than fmnist_t)."""
    return FashionCNN((4, 8, 16), (1, 1, 1), num_classes, input_shape)


@MODELS.register("fmnist_xs")
def fmnist_xs(num_classes: int, input_shape: tuple[int, int, int]) -> FashionCNN:
    """Extra-small student for 28×28 grey images, ≈0.5k parameters (48× fewer than fmnist_l)."""
    return FashionCNN((2, 4, 8), (1, 1, 1), num_classes, input_shape)
