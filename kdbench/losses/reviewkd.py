from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses._modules import ABF
from kdbench.losses.base import DistillLoss, LossContext
from kdbench.registry import LOSSES


def hcl(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Hierarchical context loss: MSE at full size and at 4×4, 2×2, 1×1 pooled, weights 1, ½, ¼,
    ⅛."""
    loss, weight, total = F.mse_loss(f_s, f_t), 1.0, 1.0
    for size in (4, 2, 1):
        if size >= f_s.shape[-2]:
            continue
        weight /= 2
        loss = loss + weight * F.mse_loss(
            F.adaptive_avg_pool2d(f_s, size), F.adaptive_avg_pool2d(f_t, size)
        )
        total += weight
    return loss / total


@LOSSES.register("reviewkd")
class ReviewKD(DistillLoss):
    """Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021.

    The student's stages after the stem plus its pooled embedding (as 1×1 maps) are fused from
    deep to shallow by attention-based fusion blocks (ABF, mid channels min(512, embedding
    dim)), each output shaped like the teacher's matching pre-ReLU stage (or embedding); term
    β·w·Σ HCL(output, teacher), w ramping to 1 over 20/240 of the run, β = 1, as mdistiller.
    When the depths differ the deepest stages are paired.
    """

    taps = ("feats", "preacts", "embed")
    options = {"beta": 1.0, "warmup": 20 / 240}

    def setup(self, ctx: LossContext) -> None:
        s = [tuple(x) for x in ctx.student_shapes["feats"][1:]]
        t = [tuple(x) for x in ctx.teacher_shapes["preacts"][1:]]
        self.n = min(len(s), len(t))
        s = [*s[-self.n :], (0, ctx.student_shapes["embed"][-1], 1, 1)]
        t = [*t[-self.n :], (0, ctx.teacher_shapes["embed"][-1], 1, 1)]
        mid = min(512, s[-1][1])
        self.out_sizes = [b[2:] for b in t][::-1]  # deep → shallow
        self.abfs = nn.ModuleList(
            ABF(a[1], mid, b[1], fuse=j < self.n) for j, (a, b) in enumerate(zip(s, t))
        )[::-1]

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        x = [*student["feats"][1:][-self.n :], student["embed"][:, :, None, None]]
        y = [*teacher["preacts"][1:][-self.n :], teacher["embed"][:, :, None, None]]
        outputs, residual = [], None
        for f, abf, size in zip(x[::-1], self.abfs, self.out_sizes):  # deep → shallow
            out, residual = abf(f, residual, size)
            outputs.append(out)
        total = sum((hcl(o, t) for o, t in zip(outputs, y[::-1])), outputs[0].new_zeros(()))
        return self.opts["beta"] * self.warmup_weight * total
