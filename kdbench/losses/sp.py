from __future__ import annotations

import torch

from kdbench.losses._functional import gram_rows
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("sp")
class SP(DistillLoss):
    """Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

    Term β·‖G_S − G_T‖²_F / B², G the row-normalised B×B Gram matrix of the last conv stage's
    features (RepDistiller's feat[-2]); β = 3000.
    """

    taps = ("feat:-1",)
    options = {"beta": 3000.0}

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        g_s = gram_rows(student["feat:-1"])  # (B, B)
        g_t = gram_rows(teacher["feat:-1"])  # (B, B)
        return self.opts["beta"] * (g_s - g_t).pow(2).sum() / len(g_s) ** 2
