"""Wide residual networks (Zagoruyko & Komodakis, BMVC 2016) for CIFAR: pre-activation blocks,
WRN-depth-k with (depth − 4) / 6 blocks per stage and widths 16k / 32k / 64k.

Architecture and parameter names follow RepDistiller's ``models/wrn.py`` (mdistiller's
``cifar/wrn.py``); pooling is adaptive and the input may have any number of channels.
As in the reference, the stage features are the stem convolution and the raw outputs of the
(pre-activation) stages, and their pre-activations (``preact=True``) are the stem output itself
(read as ``block1``'s input) and the BN outputs that the next ReLU reads: ``block2``/``block3``'s
first ``relu1`` and the final ``relu``.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models._common import reference_init
from kdbench.models.base import StagedModel
from kdbench.registry import MODELS


class WideBlock(nn.Module):
    """BN-ReLU-conv3×3(stride)-BN-ReLU-conv3×3, added to the input (or to a 1×1 projection of the
    activated input where the width changes)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        self.convShortcut = (
            None
            if in_planes == out_planes
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, out, H/s, W/s)
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        return (x if self.convShortcut is None else self.convShortcut(act)) + out


class NetworkBlock(nn.Module):
    """One stage: ``layer`` holds its blocks (the reference's module, kept for parameter names)."""

    def __init__(self, depth: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                for i in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(StagedModel):
    stages = ("conv1", "block1", "block2", "block3")
    preact_stages = ("block1", "block2.layer.0.relu1", "block3.layer.0.relu1", "relu")
    classifier_path = "fc"

    def __init__(
        self, depth: int, widen_factor: int, num_classes: int, input_shape: tuple[int, int, int]
    ) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        reference_init(self, linear="zero_bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        x = self.conv1(x)  # (B, 16, H, W)
        x = self.block1(x)  # (B, 16k, H, W)
        x = self.block2(x)  # (B, 32k, H/2, W/2)
        x = self.block3(x)  # (B, 64k, H/4, W/4)
        x = self.avgpool(self.relu(self.bn1(x))).flatten(1)  # (B, 64k)
        return self.fc(x)


def _register(depth: int, widen_factor: int) -> None:
    @MODELS.register(f"wrn_{depth}_{widen_factor}")
    def factory(num_classes: int, input_shape: tuple[int, int, int]) -> WideResNet:
        return WideResNet(depth, widen_factor, num_classes, input_shape)

    factory.__doc__ = f"WRN-{depth}-{widen_factor} for CIFAR."


for _depth, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _k)
