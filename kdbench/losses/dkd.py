from __future__ import annotations

import torch

from kdbench.losses._functional import dkd, zscore
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("dkd")
class DKD(DistillLoss):
    """Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022.

    Term w·(α·TCKD + β·NCKD): TCKD is the T²-scaled KL between the binary (target, non-target)
    probabilities, NCKD the T²-scaled KL among the non-target classes; w ramps linearly to 1 over
    the first 20/240 of the run (``warmup``, a fraction of the epochs), as mdistiller's CIFAR
    recipe (CE weight 1, α=1, β=8, T=4).
    """

    uses_temperature = True
    default_temperature = 4.0
    temperature: float  # never None: it defaults to default_temperature
    options = {"tckd_weight": 1.0, "nckd_weight": 8.0, "warmup": 20 / 240}
    standardize = False  # z-score the logits first (``dkd_ls``)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        s, t = student["logits"], teacher["logits"]  # (B, C) logits
        if self.standardize:
            s, t = zscore(s), zscore(t)
        term = dkd(
            s, t, target, self.temperature, self.opts["tckd_weight"], self.opts["nckd_weight"]
        )
        return self.warmup_weight * term
