from __future__ import annotations

import torch

from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("mse_logits")
class MSELogits(DistillLoss):
    """Ba & Caruana, "Do Deep Nets Really Need to be Deep?", NeurIPS 2014: logit regression.

    Term ‖f_S(x) − f_T(x)‖², summed over classes, mean over the batch. Unlike KL terms its
    gradient grows with the teacher's logit scale, so the default mix is CE-heavy: on digits
    (teacher logits up to ±22) α ≥ 0.5 diverged or killed the student at lr 0.01, α = 0.02 helped.
    """

    alpha = 0.02
    ce_weight = None

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        diff = student["logits"] - teacher["logits"]  # (B, C)
        return diff.pow(2).sum(dim=1).mean()
