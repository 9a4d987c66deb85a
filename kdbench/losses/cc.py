from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses.base import DistillLoss, LossContext
from kdbench.registry import LOSSES


@LOSSES.register("cc")
class CC(DistillLoss):
    """Peng, Jin, Liu, Li, Wu, Liu, Zhou & Zhang, "Correlation Congruence for Knowledge Distillation", ICCV 2019.

    Both penultimate embeddings go through trainable linear maps to 128-d. Two public variants:
    as coded in RepDistiller (the authors' emailed code, which produced the CRD table; default):
    δ = |e_S − e_T|, term mean_i Σ_d δ_i·δ_{i+1} over consecutive samples of the batch. As written
    in the paper (``paper=1``): ‖C_S − C_T‖²_F / B² with C the Gaussian-RBF correlation matrix of
    the L2-normalised embeddings, exp(−γ‖x−y‖²) by its order-P Taylor series (γ = 0.4, P = 2).
    β = 0.02.
    """

    taps = ("embed",)
    options = {"beta": 0.02, "dim": 128, "paper": 0.0, "gamma": 0.4, "order": 2}

    def setup(self, ctx: LossContext) -> None:
        dim = int(self.opts["dim"])
        self.embed_s = nn.Linear(ctx.student_shapes["embed"][-1], dim)
        self.embed_t = nn.Linear(ctx.teacher_shapes["embed"][-1], dim)

    def correlation(self, e: torch.Tensor) -> torch.Tensor:
        g = 2 * self.opts["gamma"]
        x = F.normalize(e, dim=1)
        dot = x @ x.t()  # (B, B); ‖x − y‖² = 2 − 2·x·y on the unit sphere
        order = int(self.opts["order"])
        series = sum(
            (g**p / math.factorial(p) * dot**p for p in range(order + 1)), dot.new_zeros(())
        )
        return math.exp(-g) * series

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        e_s = self.embed_s(student["embed"])  # (B, 128)
        e_t = self.embed_t(teacher["embed"])  # (B, 128)
        if self.opts["paper"]:
            term = (self.correlation(e_s) - self.correlation(e_t)).pow(2).sum() / len(e_s) ** 2
        else:
            delta = (e_s - e_t).abs()
            term = (delta[:-1] * delta[1:]).sum(1).mean()
        return self.opts["beta"] * term
