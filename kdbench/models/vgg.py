"""VGG with batch norm for CIFAR (Simonyan & Zisserman, ICLR 2015): five convolutional blocks
and a single linear classifier, no fully connected hidden layers.

Architecture and parameter names follow RepDistiller's ``models/vgg.py`` (``vgg*_bn``, the
variants the CRD tables use as ``vgg8``/``vgg13``; mdistiller's ``cifar/vgg.py``), so its
checkpoints load as they are. Each block is conv-BN-ReLU repeated, without its last ReLU, which
is applied as a separate module so that the block output is the stage's pre-activation.
Max-pooling follows blocks 0–2; after block 3 only for inputs of 64 pixels or more (the
reference pools there for 64-pixel TinyImageNet).
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models._common import reference_init
from kdbench.models.base import StagedModel
from kdbench.registry import MODELS

CONFIGS = {  # channels of the 3×3 convolutions, per block
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def conv_block(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    """[conv3×3-BN-ReLU] × len(widths), minus the last ReLU."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(StagedModel):
    stages = ("relu0", "relu1", "relu2", "relu3", "relu4")
    preact_stages = stages
    classifier_path = "classifier"
    # added by name in __init__
    block0: nn.Sequential
    block1: nn.Sequential
    block2: nn.Sequential
    block3: nn.Sequential
    block4: nn.Sequential
    relu0: nn.ReLU
    relu1: nn.ReLU
    relu2: nn.ReLU
    relu3: nn.ReLU
    relu4: nn.ReLU

    def __init__(
        self,
        config: tuple[tuple[int, ...], ...],
        num_classes: int,
        input_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        in_channels = input_shape[0]
        for i, widths in enumerate(config):
            self.add_module(f"block{i}", conv_block(in_channels, widths))
            self.add_module(f"relu{i}", nn.ReLU())
            in_channels = widths[-1]
        self.pool0 = nn.MaxPool2d(2)
        self.pool1 = nn.MaxPool2d(2)
        self.pool2 = nn.MaxPool2d(2)
        self.pool3 = nn.MaxPool2d(2) if input_shape[1] >= 64 else nn.Identity()
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        reference_init(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        x = self.relu0(self.block0(x))  # (B, 64, H, W)
        x = self.relu1(self.block1(self.pool0(x)))  # (B, 128, H/2, W/2)
        x = self.relu2(self.block2(self.pool1(x)))  # (B, 256, H/4, W/4)
        x = self.relu3(self.block3(self.pool2(x)))  # (B, 512, H/8, W/8)
        x = self.relu4(self.block4(self.pool3(x)))  # (B, 512, H/8, W/8); H/16 if H ≥ 64
        x = self.pool4(x).flatten(1)  # (B, 512)
        return self.classifier(x)


def _register(name: str) -> None:
    @MODELS.register(name)
    def factory(num_classes: int, input_shape: tuple[int, int, int]) -> VGG:
        return VGG(CONFIGS[name], num_classes, input_shape)

    factory.__doc__ = f"CIFAR {name.upper()} with batch norm."


for _name in CONFIGS:
    _register(_name)
