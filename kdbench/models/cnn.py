"""Small CNNs for the bundled 8×8 digits, in the topology of the classic teacher/student example:
two 3×3 convolutions, max-pooling, two linear layers. Sized by width."""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models.base import StagedModel
from kdbench.registry import MODELS


class DigitsCNN(StagedModel):
    stages = ("relu1", "relu2")
    preact_stages = ("relu1", "relu2")
    classifier_path = "fc2"
    native_input = (1, 8, 8)

    def __init__(
        self, c1: int, c2: int, hidden: int, num_classes: int, input_shape: tuple[int, int, int]
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(c2 * (height // 2) * (width // 2), hidden)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        x = self.relu1(self.conv1(x))  # (B, c1, H, W)
        x = self.relu2(self.pool(self.conv2(x)))  # (B, c2, H/2, W/2); pool and ReLU commute
        x = self.relu3(self.fc1(x.flatten(1)))  # (B, hidden)
        return self.fc2(x)


@MODELS.register("cnn_t")
def cnn_t(num_classes: int, input_shape: tuple[int, int, int]) -> DigitsCNN:
    """Teacher, ≈151k parameters on digits."""
    return DigitsCNN(32, 64, 128, num_classes, input_shape)


@MODELS.register("cnn_m")
def cnn_m(num_classes: int, input_shape: tuple[int, int, int]) -> DigitsCNN:
    """Medium student, ≈9.8k parameters on digits."""
    return DigitsCNN(8, 16, 32, num_classes, input_shape)


@MODELS.register("cnn_s")
def cnn_s(num_classes: int, input_shape: tuple[int, int, int]) -> DigitsCNN:
    """Small student, ≈2.6k parameters on digits."""
    return DigitsCNN(4, 8, 16, num_classes, input_shape)
