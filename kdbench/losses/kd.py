from __future__ import annotations

import torch

from kdbench.losses._functional import soft_kl
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("kd")
class KD(DistillLoss):
    """Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS DL Workshop 2015.

    Term T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean; the engine mixes (1−α)·CE + α·term.
    """

    uses_temperature = True
    default_temperature = 4.0
    temperature: float  # never None: it defaults to default_temperature
    alpha = 0.9
    ce_weight = None

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        return soft_kl(student["logits"], teacher["logits"], self.temperature)  # (B, C) logits
