"""Pieces shared by the CIFAR model families (not a model file: the registry skips ``_`` files)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn


def reference_init(model: nn.Module, linear: Literal["default", "zero_bias", "normal"]) -> None:
    """The initialisation of RepDistiller's CIFAR models: convolutions ~ N(0, 2 / (k·k·C_out))
    (He, fan-out) with zero bias, batch norms 1 / 0, and the final linear layers left as PyTorch
    makes them (``default``: ResNet), with zero bias (``zero_bias``: WRN) or ~ N(0, 0.01) with
    zero bias (``normal``: VGG, MobileNetV2)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear != "default":
            if linear == "normal":
                nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: (B, g·c, H, W) → view (B, g, c, H, W) → swap →
    (B, c·g, H, W)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
