from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("kd")
class KD(DistillLoss):
    """Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS DL Workshop 2015.

    Term T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean; the engine mixes (1−α)·CE + α·term.
    """

    uses_temperature = True
    alpha = 0.9
    ce_weight = None

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_p_s = F.log_softmax(student["logits"] / T, dim=1)  # (B, C)
        log_p_t = F.log_softmax(teacher["logits"] / T, dim=1)  # (B, C)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * T * T
