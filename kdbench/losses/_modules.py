"""Trainable building blocks shared by feature losses (regressors, fusion blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvReg(nn.Module):
    """RepDistiller's convolutional regressor: student map (Cs, Hs, Ws) → teacher map (Ct, Ht, Wt).

    Stride-2 conv when the student is twice as large, transposed conv when half as large, a
    valid conv of kernel 1 + Hs − Ht when larger; where RepDistiller has no case (the student
    is smaller by another factor) a 1×1 conv followed by bilinear interpolation. Then BN (+ ReLU).
    """

    def __init__(self, s_shape: torch.Size, t_shape: torch.Size, relu: bool = True) -> None:
        super().__init__()
        s_c, s_h, s_w = s_shape[-3:]
        t_c, t_h, t_w = t_shape[-3:]
        self.size: tuple[int, int] | None = None
        self.conv: nn.Conv2d | nn.ConvTranspose2d
        if (s_h, s_w) == (2 * t_h, 2 * t_w):
            self.conv = nn.Conv2d(s_c, t_c, 3, stride=2, padding=1)
        elif (2 * s_h, 2 * s_w) == (t_h, t_w):
            self.conv = nn.ConvTranspose2d(s_c, t_c, 4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            self.conv = nn.Conv2d(s_c, t_c, (1 + s_h - t_h, 1 + s_w - t_w))
        else:
            self.conv = nn.Conv2d(s_c, t_c, 1)
            self.size = (t_h, t_w)
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.size is not None:
            x = F.interpolate(x, self.size, mode="bilinear", align_corners=False)
        x = self.bn(x)
        return F.relu(x) if self.relu else x


class ABF(nn.Module):
    """ReviewKD's attention-based fusion: fuse a student level with the residual from the level
    below (deeper), then map it to the teacher level's channels and size."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.conv1 = nn.Sequential(conv1, nn.BatchNorm2d(mid_channels))
        conv2 = nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Sequential(conv2, nn.BatchNorm2d(out_channels))
        self.att = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(conv1.weight, a=1)
        nn.init.kaiming_uniform_(conv2.weight, a=1)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, out_size) -> tuple:
        x = self.conv1(x)  # (B, mid, H, W)
        if self.att is not None:
            assert residual is not None  # a fusing level always has the deeper one's residual
            residual = F.interpolate(residual, x.shape[-2:], mode="nearest")
            z = self.att(torch.cat([x, residual], dim=1))  # (B, 2, H, W)
            x = x * z[:, :1] + residual * z[:, 1:]
        if tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, out_size, mode="nearest")
        return self.conv2(x), x  # (B, out, Ht, Wt) output, residual for the next level
