"""CIFAR ResNets (He et al., CVPR 2016, §4.2): a 3×3 stem and three stages of basic blocks.

Architecture and parameter names follow RepDistiller's ``models/resnet.py`` (also mdistiller's
``cifar/resnet.py``), so parameter counts match the CRD/DKD tables and their teacher checkpoints
load as they are. Differences that change no parameter: global *adaptive* average pooling (any
input size), any number of input channels, and the block's final ReLU is its own non-inplace
module so that the stage's pre-activation (RepDistiller's ``preact=True`` feature) is its input.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from kdbench.models._common import reference_init
from kdbench.models.base import StagedModel
from kdbench.registry import MODELS


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential | None:
    """The 1×1 convolution + BN shortcut where shape changes, else None (identity shortcut)."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = projection(in_planes, planes, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, planes, H/s, W/s)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Block(Protocol):
    """A residual block class (``BasicBlock``, ``resnetv2.Bottleneck``): its output has
    ``expansion`` × ``planes`` channels."""

    expansion: int

    def __call__(self, in_planes: int, planes: int, stride: int) -> nn.Module: ...


class ResNet(StagedModel):
    """A 3×3 stem (conv-BN-ReLU at full resolution) and one stage per entry of ``depths``, the
    first at stride 1 and the others at stride 2, then global average pooling and a linear layer.

    Stages: the stem ReLU and each stage's output; pre-activations: the inputs of those ReLUs.
    ``classifier`` names the linear layer as the reference does (``fc`` or ``linear``).
    """

    def __init__(
        self,
        block: Block,
        depths: tuple[int, ...],
        widths: tuple[int, ...],
        stem_width: int,
        num_classes: int,
        input_shape: tuple[int, int, int],
        classifier: str = "fc",
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(input_shape[0], stem_width)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        in_planes = stem_width
        for i, (depth, planes) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_planes, planes, 2 if i > 0 and j == 0 else 1))
                in_planes = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.add_module(classifier, nn.Linear(in_planes, num_classes))

        layers = tuple(f"layer{i + 1}" for i in range(len(depths)))
        self.stages = ("relu", *layers)
        self.preact_stages = ("relu", *(f"{name}.{d - 1}.relu" for name, d in zip(layers, depths)))
        self.classifier_path = classifier
        reference_init(self, linear="default")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        x = self.relu(self.bn1(self.conv1(x)))  # (B, stem_width, H, W)
        for name in self.stages[1:]:
            x = self.get_submodule(name)(x)  # stage i: (B, widths[i]·expansion, H/2^i, W/2^i)
        x = self.avgpool(x).flatten(1)  # (B, widths[-1]·expansion)
        return self.classifier_module()(x)


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    """``resnet<depth>``: 6n+2 layers, n basic blocks per stage; ``x4``: four times wider."""
    n = (depth - 2) // 6

    @MODELS.register(name)
    def factory(num_classes: int, input_shape: tuple[int, int, int]) -> ResNet:
        return ResNet(BasicBlock, (n, n, n), widths[1:], widths[0], num_classes, input_shape)

    factory.__doc__ = f"CIFAR ResNet-{depth}, stem {widths[0]}, stage widths {widths[1:]}."


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64))
_register("resnet8x4", 8, (32, 64, 128, 256))
_register("resnet32x4", 32, (32, 64, 128, 256))
