"""ResNet-50 with a CIFAR stem (3×3 convolution, stride 1, no max-pooling) and four stages of
bottleneck blocks, as RepDistiller's ``models/resnetv2.py`` ``ResNet50`` (mdistiller's
``cifar/resnetv2.py``), with its parameter names (``shortcut``, ``linear``)."""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models.resnet import ResNet, projection
from kdbench.registry import MODELS


class Bottleneck(nn.Module):
    """conv1×1-BN-ReLU-conv3×3(stride)-BN-ReLU-conv1×1(×4)-BN, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = projection(in_planes, planes * self.expansion, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, 4·planes, H/s, W/s)
        out = self.relu1(self.bn1(self.conv1(x)))  # (B, planes, H, W)
        out = self.relu2(self.bn2(self.conv2(out)))  # (B, planes, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4·planes, H/s, W/s)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + shortcut)


@MODELS.register("resnet50")
def resnet50(num_classes: int, input_shape: tuple[int, int, int]) -> ResNet:
    """ResNet-50, CIFAR stem: 64 channels, stages of 3/4/6/3 bottlenecks, 2,048-d embedding."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        (64, 128, 256, 512),
        64,
        num_classes,
        input_shape,
        classifier="linear",
    )
