"""ShuffleNet V2 1× (Ma et al., ECCV 2018) for CIFAR: RepDistiller's ``models/ShuffleNetv2.py``
``ShuffleV2`` (mdistiller's ``cifar/ShuffleNetv2.py``), with its architecture and parameter
names, adaptive pooling and any number of input channels.

The reference's block pre-activation is ``cat([x1, branch])`` before the shuffle, and its output
``shuffle(cat([x1, relu(branch)]))``. Here the block applies one ReLU module to the
concatenation, so its input is exactly that pre-activation: ``x1`` is a ReLU output (every block
and down-sampling block ends in ReLUs), hence ``relu(cat([x1, b])) == cat([x1, relu(b)])``.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models._common import ChannelShuffle
from kdbench.models.base import StagedModel
from kdbench.registry import MODELS

STEM = 24


class BasicBlock(nn.Module):
    """Split the channels in halves; the second goes through 1×1-BN-ReLU, depthwise 3×3-BN,
    1×1-BN; concatenate with the first, ReLU, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)
        self.relu = nn.ReLU()
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, C, H, W)
        x1, x2 = x.chunk(2, dim=1)  # (B, C/2, H, W) each
        branch = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x2)))))
        branch = self.bn3(self.conv3(branch))
        return self.shuffle(self.relu(torch.cat([x1, branch], 1)))


class DownBlock(nn.Module):
    """Two stride-2 branches, concatenated and shuffled: depthwise 3×3-BN then 1×1-BN-ReLU on the
    left; 1×1-BN-ReLU, depthwise 3×3-BN, 1×1-BN-ReLU on the right."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, out, H/2, W/2)
        left = self.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.bn4(self.conv4(self.relu(self.bn3(self.conv3(x)))))
        right = self.relu(self.bn5(self.conv5(right)))
        return self.shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(StagedModel):
    stages = ("relu", "layer1", "layer2", "layer3")
    classifier_path = "linear"
    # added by name in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        widths: tuple[int, int, int, int],
        depths: tuple[int, int, int],
        num_classes: int,
        input_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], STEM, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        self.relu = nn.ReLU()
        in_channels = STEM
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = [DownBlock(in_channels, width), *(BasicBlock(width) for _ in range(depth))]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_channels = width
        self.conv2 = nn.Conv2d(in_channels, widths[-1], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(widths[-1])
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[-1], num_classes)
        # layer i holds a down-sampling block, then depths[i] blocks
        self.preact_stages = ("relu", *(f"layer{i + 1}.{d}.relu" for i, d in enumerate(depths)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 24, H, W)
        x = self.layer1(x)  # (B, 116, H/2, W/2)
        x = self.layer2(x)  # (B, 232, H/4, W/4)
        x = self.layer3(x)  # (B, 464, H/8, W/8)
        x = self.relu2(self.bn2(self.conv2(x)))  # (B, 1024, H/8, W/8)
        return self.linear(self.avgpool(x).flatten(1))


@MODELS.register("shufflenetv2")
def shufflenetv2(num_classes: int, input_shape: tuple[int, int, int]) -> ShuffleNetV2:
    """ShuffleNet V2 1×: stages of 3/7/3 blocks at widths 116/232/464, 1,024-channel head."""
    return ShuffleNetV2((116, 232, 464, 1024), (3, 7, 3), num_classes, input_shape)
