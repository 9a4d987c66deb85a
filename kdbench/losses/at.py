from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses._functional import pool_to_smaller
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("at")
class AT(DistillLoss):
    """Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017: attention transfer.

    Attention map Q = mean over channels of |A|^p (p = 2), flattened and L2-normalised, for every
    stage after the stem (paired from the shallowest, maps pooled to the smaller size).
    As coded (RepDistiller, and the authors' code up to its β/2): β·Σ_j mean((Q_S − Q_T)²),
    β = 1000.
    As written in the paper (``paper=1``): β/2·Σ_j ‖Q_S − Q_T‖₂ per sample, with β divided by the
    map size and batch size as the paper says, i.e. β/2·Σ_j mean_b ‖Q_S − Q_T‖₂ / (H_j·W_j).
    """

    taps = ("feats",)
    options = {"beta": 1000.0, "p": 2.0, "paper": 0.0}

    def attention(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.pow(self.opts["p"]).mean(1).flatten(1), dim=1)  # (B, H·W)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        total = student["logits"].new_zeros(())
        for f_s, f_t in zip(student["feats"][1:], teacher["feats"][1:]):
            f_s, f_t = pool_to_smaller(f_s, f_t)  # (B, C, H, W), same H, W
            diff = self.attention(f_s) - self.attention(f_t)  # (B, H·W)
            if self.opts["paper"]:
                total = total + diff.norm(dim=1).mean() / diff.shape[1] / 2
            else:
                total = total + diff.pow(2).mean()
        return self.opts["beta"] * total
