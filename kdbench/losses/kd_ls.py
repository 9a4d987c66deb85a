from __future__ import annotations

import torch

from kdbench.losses._functional import soft_kl, zscore
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("kd_ls")
class KDLS(DistillLoss):
    """Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024: KD.

    Term kd_weight·T²·KL(softmax(z(t)/T) ‖ softmax(z(s)/T)) with z the per-sample z-score (mean 0,
    divided by std + 1e-7); the authors' CIFAR recipe: base temperature 2, KD weight 9 (the
    ``kd_weight`` option, so that α stays a mixing weight in [0, 1]), CE weight 0.1.
    """

    uses_temperature = True
    default_temperature = 2.0
    temperature: float  # never None: it defaults to default_temperature
    alpha = 1.0
    ce_weight = 0.1
    options = {"kd_weight": 9.0}

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        term = soft_kl(zscore(student["logits"]), zscore(teacher["logits"]), self.temperature)
        return self.opts["kd_weight"] * term
