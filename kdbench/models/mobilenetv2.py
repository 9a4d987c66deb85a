"""MobileNetV2 (Sandler et al., CVPR 2018) at width 0.5 with expansion 6: the CIFAR student of
the CRD/DKD tables, RepDistiller's ``models/mobilenetv2.py`` ``mobile_half`` (mdistiller's
``cifar/mobilenetv2.py``).

Same architecture and parameter names as the reference (a stride-2 stem; every inverted
residual keeps its 1×1 expansion, even at ratio 1; a 1,280-channel 1×1 head; the linear layer
inside a one-module ``classifier`` sequence), so its checkpoints load as they are; pooling is
adaptive.
Stages are the reference's features: the stem and the outputs of inverted-residual groups 1, 2,
4 and 6. Those outputs are linear bottlenecks, so their pre-activations are the same tensors,
read as the inputs of the modules that follow (the reference returns the same list for
``preact=True``); the stem's is the input of its ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models._common import reference_init
from kdbench.models.base import StagedModel
from kdbench.registry import MODELS

# expansion t, output channels c, repeats n, first stride s (before the width multiplier)
SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1×1 expansion-BN-ReLU, 3×3 depthwise(stride)-BN-ReLU, 1×1 projection-BN (linear), plus
    the input when the shape is unchanged."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, out, H/s, W/s)
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(StagedModel):
    stages = ("conv1", "blocks.1", "blocks.2", "blocks.4", "blocks.6")
    preact_stages = ("conv1.2", "blocks.2", "blocks.3", "blocks.5", "conv2")
    classifier_path = "classifier.0"

    def __init__(
        self, width_mult: float, num_classes: int, input_shape: tuple[int, int, int]
    ) -> None:
        super().__init__()
        channels = int(32 * width_mult)
        self.conv1 = conv_bn_relu(input_shape[0], channels, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in SETTINGS:
            out = int(c * width_mult)
            group = []
            for i in range(n):
                group.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
            self.blocks.append(nn.Sequential(*group))
        last = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = conv_bn_relu(channels, last, 1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last, num_classes))
        reference_init(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        x = self.conv1(x)  # (B, 16, H/2, W/2) at width 0.5
        for group in self.blocks:  # … → (B, 160, H/32, W/32)
            x = group(x)
        x = self.avgpool(self.conv2(x)).flatten(1)  # (B, 1280)
        return self.classifier(x)


@MODELS.register("mobilenetv2")
def mobilenetv2(num_classes: int, input_shape: tuple[int, int, int]) -> MobileNetV2:
    """MobileNetV2, width 0.5, expansion 6 (RepDistiller's ``mobile_half``)."""
    return MobileNetV2(0.5, num_classes, input_shape)
