from __future__ import annotations

import torch

from kdbench.losses._functional import pearson_rows
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("dist")
class DIST(DistillLoss):
    """Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022.

    Term τ²·(β·inter + γ·intra) on the softened predictions p = softmax(logits/τ): inter is
    1 − the mean Pearson correlation between student and teacher per sample, intra the same per
    class across the batch (hunto/DIST_KD). β = γ = 1, τ = 4, CE weight 1.
    """

    uses_temperature = True
    default_temperature = 4.0
    temperature: float  # never None: it defaults to default_temperature
    options = {"beta": 1.0, "gamma": 1.0}

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        p_s = (student["logits"] / T).softmax(dim=1)  # (B, C)
        p_t = (teacher["logits"] / T).softmax(dim=1)  # (B, C)
        inter = 1 - pearson_rows(p_s, p_t).mean()
        intra = 1 - pearson_rows(p_s.t(), p_t.t()).mean()
        return T * T * (self.opts["beta"] * inter + self.opts["gamma"] * intra)
