from __future__ import annotations

import itertools

import torch

from kdbench.losses._functional import pool_to_smaller
from kdbench.losses.base import InitStageLoss, LossContext, NotApplicable
from kdbench.registry import LOSSES


@LOSSES.register("fsp")
class FSP(InitStageLoss):
    """Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast Optimization, Network Minimization and Transfer Learning", CVPR 2017.

    FSP matrix of consecutive stages (stem included; the larger map pooled):
    G = F_i·F_{i+1}ᵀ / (H·W).
    Initialisation stage (30/240 of the run, ``init``): the student's feature layers minimise
    Σ mean((G_S − G_T)²); then CE alone, as RepDistiller (``main_stage=1`` keeps β·that loss,
    β = 50). Needs equal channel counts at every paired stage (else not applicable).
    """

    taps = ("feats",)
    options = {"beta": 50.0, "init": 30 / 240, "main_stage": 0.0}

    def setup(self, ctx: LossContext) -> None:
        s_c = [s[1] for s in ctx.student_shapes["feats"]]
        t_c = [t[1] for t in ctx.teacher_shapes["feats"]]
        if s_c != t_c:
            raise NotApplicable(
                f"FSP needs equal channels at every stage: student {s_c}, teacher {t_c}"
            )

    @staticmethod
    def matrices(feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for bottom, top in itertools.pairwise(feats):
            bottom, top = pool_to_smaller(bottom, top)
            out.append(top.flatten(2) @ bottom.flatten(2).transpose(1, 2) / bottom[0, 0].numel())
        return out  # (B, C_top, C_bottom) each

    def pretrain_loss(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        pairs = zip(self.matrices(student["feats"]), self.matrices(teacher["feats"]))
        return sum(
            ((g_s - g_t).pow(2).mean() for g_s, g_t in pairs), student["logits"].new_zeros(())
        )
