from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses.base import DistillLoss, LossContext
from kdbench.registry import LOSSES


@LOSSES.register("ickd")
class ICKD(DistillLoss):
    """Liu, Zhang, Xu, Wang & Zhang, "Exploring Inter-Channel Correlation for Diversity-preserved Knowledge Distillation", ICCV 2021.

    The student's last conv stage through a trainable 1×1 conv + BN to the teacher's channels;
    inter-channel correlation G = F·Fᵀ over spatial positions (C×C, so any map sizes pair),
    rows L2-normalised; term β·‖G_S − G_T‖²_F / (C·B), β = 2.5, as the authors' CIFAR code (ICKD-C).
    """

    taps = ("feat:-1",)
    options = {"beta": 2.5}

    def setup(self, ctx: LossContext) -> None:
        s_c, t_c = ctx.student_shapes["feat:-1"][1], ctx.teacher_shapes["feat:-1"][1]
        self.embed = nn.Sequential(nn.Conv2d(s_c, t_c, 1, bias=False), nn.BatchNorm2d(t_c))

    @staticmethod
    def correlation(f: torch.Tensor) -> torch.Tensor:
        f = f.flatten(2)  # (B, C, H·W)
        return F.normalize(f @ f.transpose(1, 2), dim=2)  # (B, C, C)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        g_s = self.correlation(self.embed(student["feat:-1"]))
        g_t = self.correlation(teacher["feat:-1"])
        b, c = g_s.shape[:2]
        return self.opts["beta"] * (g_s - g_t).pow(2).sum() / (c * b)
