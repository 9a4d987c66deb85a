from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses._functional import gaussian_negative_mean
from kdbench.losses.base import DistillLoss, LossContext
from kdbench.registry import LOSSES


def _connector(s_c: int, t_c: int) -> nn.Sequential:
    conv = nn.Conv2d(s_c, t_c, 1, bias=False)
    nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / t_c))
    return nn.Sequential(conv, nn.BatchNorm2d(t_c))


@LOSSES.register("ofd")
class OFD(DistillLoss):
    """Heo, Kim, Yun, Park, Kwak & Choi, "A Comprehensive Overhaul of Feature Distillation", ICCV 2019.

    Pre-ReLU features of every stage after the stem (the deepest stages paired when the depths
    differ), the student's through a 1×1 conv + BN connector, the teacher's average-pooled to the
    student's size; partial L2 that ignores positions where the teacher is below its margin and
    the student is lower still; the margin per teacher channel is E[x | x < 0] of a Gaussian.
    Stage j weighted 1/2^(n−j−1); mean over the batch, sum over the rest; β = 0.001, as
    mdistiller. mdistiller reads the Gaussian from the BN before the ReLU (mean β, std |γ|);
    here it is the teacher pre-activation's own per-channel mean and std on the first batch.
    """

    taps = ("preacts",)
    options = {"beta": 0.001}

    def setup(self, ctx: LossContext) -> None:
        s, t = ctx.student_shapes["preacts"][1:], ctx.teacher_shapes["preacts"][1:]
        n = min(len(s), len(t))
        self.connectors = nn.ModuleList(_connector(a[1], b[1]) for a, b in zip(s[-n:], t[-n:]))
        for j, b in enumerate(t[-n:]):
            self.register_buffer(f"margin{j}", torch.full((1, b[1], 1, 1), float("nan")))

    def margin(self, j: int, f_t: torch.Tensor) -> torch.Tensor:
        margin = getattr(self, f"margin{j}")
        if torch.isnan(margin).any():
            mean, std = f_t.mean(dim=(0, 2, 3)), f_t.std(dim=(0, 2, 3)).clamp_min(1e-6)
            margin.copy_(gaussian_negative_mean(mean, std).view_as(margin))
        return margin

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        n = len(self.connectors)
        total = student["logits"].new_zeros(())
        pairs = zip(student["preacts"][1:][-n:], teacher["preacts"][1:][-n:], self.connectors)
        for j, (f_s, f_t, connect) in enumerate(pairs):
            m = self.margin(j, f_t)  # (1, Ct, 1, 1)
            s = connect(f_s)  # (B, Ct, Hs, Ws)
            t = F.adaptive_avg_pool2d(f_t, s.shape[-2:])
            mask_margin = (s > m) & (t <= m)
            mask_between = (s > t) & (t > m) & (t <= 0)
            loss = (s - m) ** 2 * mask_margin + (s - t) ** 2 * (mask_between | (t > 0))
            total = total + loss.mean(dim=0).sum() / 2 ** (n - j - 1)
        return self.opts["beta"] * total
