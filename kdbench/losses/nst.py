from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses._functional import pool_to_smaller
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("nst")
class NST(DistillLoss):
    """Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer", arXiv 2017.

    For every stage after the stem (paired from the shallowest, pooled to the smaller size): each
    channel's spatial map L2-normalised; squared MMD with the polynomial kernel k(x, y) = (xᵀy)²,
    mean k(T,T) + mean k(S,S) − 2·mean k(S,T); summed over stages, β = 50, as RepDistiller.
    """

    taps = ("feats",)
    options = {"beta": 50.0}

    @staticmethod
    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (b @ a.transpose(1, 2)).pow(2).mean()  # (B, Cb, Ca) → mean

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        total = student["logits"].new_zeros(())
        for f_s, f_t in zip(student["feats"][1:], teacher["feats"][1:]):
            f_s, f_t = pool_to_smaller(f_s, f_t)
            s = F.normalize(f_s.flatten(2), dim=2)  # (B, Cs, H·W)
            t = F.normalize(f_t.flatten(2), dim=2)  # (B, Ct, H·W)
            total = total + self.kernel(t, t) + self.kernel(s, s) - 2 * self.kernel(s, t)
        return self.opts["beta"] * total
