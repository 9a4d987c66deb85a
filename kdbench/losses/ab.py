from __future__ import annotations

import torch
from torch import nn

from kdbench.losses._modules import ConvReg
from kdbench.losses.base import InitStageLoss, LossContext
from kdbench.registry import LOSSES


@LOSSES.register("ab")
class AB(InitStageLoss):
    """Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden Neurons", AAAI 2019.

    Initialisation stage (30/240 of the run, ``init``): the student's feature layers and connectors
    (ConvReg without ReLU, identity where shapes agree) learn the teacher's activation boundaries
    on the pre-ReLU features of every stage after the stem, with the hinge-squared criterion
    (margin 1), stage j weighted 2^(j−n+1), ×3/1000 per sample, as RepDistiller. Then the student
    trains with CE alone, as RepDistiller (``main_stage=1`` keeps β·the AB loss there, β = 1).
    """

    taps = ("preacts",)
    options = {"beta": 1.0, "margin": 1.0, "init": 30 / 240, "main_stage": 0.0}

    def setup(self, ctx: LossContext) -> None:
        pairs = list(zip(ctx.student_shapes["preacts"][1:], ctx.teacher_shapes["preacts"][1:]))
        self.connectors = nn.ModuleList(
            nn.Identity() if s[1:3] == t[1:3] else ConvReg(s, t, relu=False) for s, t in pairs
        )

    def pretrain_loss(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        m = self.opts["margin"]
        n = len(self.connectors)
        total = student["logits"].new_zeros(())
        pairs = zip(student["preacts"][1:], teacher["preacts"][1:], self.connectors)
        for j, (f_s, f_t, connect) in enumerate(pairs):
            s = connect(f_s)  # (B, Ct, Ht, Wt)
            on = f_t > 0  # the teacher neuron fires
            loss = ((s + m) ** 2 * ((s > -m) & ~on) + (s - m) ** 2 * ((s <= m) & on)).sum()
            total = total + 2.0 ** (j - n + 1) * loss
        return total / len(target) * 3 / 1000
