"""Cross-entropy only: the student trained alone, the baseline every row is compared to."""

from __future__ import annotations

import torch

from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("ce")
class CE(DistillLoss):
    """Student alone (cross-entropy, no teacher): the baseline."""

    taps = ()
    needs_teacher = False
    alpha = 0.0
    ce_weight = 1.0

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        return target.new_zeros((), dtype=torch.float32)
