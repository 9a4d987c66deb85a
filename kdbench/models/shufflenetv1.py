"""ShuffleNet V1 (Zhang et al., CVPR 2018) for CIFAR, 3 groups, stage widths 240/480/960:
RepDistiller's ``models/ShuffleNetv1.py`` ``ShuffleV1`` (mdistiller's ``cifar/ShuffleNetv1.py``),
with its architecture and parameter names, adaptive pooling, any number of input channels, and
each block's final ReLU as its own module (its input is the block's pre-activation)."""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models._common import ChannelShuffle
from kdbench.models.base import StagedModel
from kdbench.registry import MODELS

STEM = 24  # stem channels; the first block's 1×1 convolution on them is not grouped


class Bottleneck(nn.Module):
    """Grouped 1×1-BN-ReLU, channel shuffle, depthwise 3×3(stride)-BN, grouped 1×1-BN; added to
    the input, or concatenated with its 3×3 average pool at stride 2; then ReLU."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = out_planes // 4
        first_groups = 1 if in_planes == STEM else groups
        self.conv1 = nn.Conv2d(in_planes, mid, 1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU(inplace=True)
        self.shuffle1 = ChannelShuffle(first_groups)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(mid, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, out(+C), H/s, W/s)
        out = self.shuffle1(self.relu1(self.bn1(self.conv1(x))))  # (B, out/4, H, W)
        out = self.relu2(self.bn2(self.conv2(out)))  # (B, out/4, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, out, H/s, W/s)
        preact = out + x if self.shortcut is None else torch.cat([out, self.shortcut(x)], 1)
        return self.relu(preact)


class ShuffleNetV1(StagedModel):
    stages = ("relu", "layer1", "layer2", "layer3")
    classifier_path = "linear"
    # added by name in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        widths: tuple[int, int, int],
        depths: tuple[int, int, int],
        groups: int,
        num_classes: int,
        input_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], STEM, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM)
        self.relu = nn.ReLU()
        in_planes = STEM
        for i, (width, depth) in enumerate(zip(widths, depths)):
            # the first block of a stage concatenates its input, so it computes only the rest
            blocks = [Bottleneck(in_planes, width - in_planes, 2, groups)]
            blocks += [Bottleneck(width, width, 1, groups) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_planes = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)
        self.preact_stages = ("relu", *(f"layer{i + 1}.{d - 1}.relu" for i, d in enumerate(depths)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 24, H, W)
        x = self.layer1(x)  # (B, 240, H/2, W/2)
        x = self.layer2(x)  # (B, 480, H/4, W/4)
        x = self.layer3(x)  # (B, 960, H/8, W/8)
        return self.linear(self.avgpool(x).flatten(1))


@MODELS.register("shufflenetv1")
def shufflenetv1(num_classes: int, input_shape: tuple[int, int, int]) -> ShuffleNetV1:
    """ShuffleNet V1, g = 3, stages of 4/8/4 blocks at widths 240/480/960 (``ShuffleV1``)."""
    return ShuffleNetV1((240, 480, 960), (4, 8, 4), 3, num_classes, input_shape)
