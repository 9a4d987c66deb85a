from __future__ import annotations

import torch

from kdbench.losses._functional import transformed_teacher_kl
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("wttm")
class WTTM(DistillLoss):
    """Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching", ICLR 2024: WTTM.

    Term β·mean_b U_γ(p_t)·KL(p_t^γ / Σ p_t^γ ‖ softmax(s)): TTM (see ``ttm``) with each sample
    weighted by the power sum U_γ(p_t) = Σ_i p_t,i^γ of the teacher's probabilities at
    temperature 1, γ = 1/T, larger for smoother teachers (zkxufo/TTM ``distiller_zoo/wttm.py``).
    β is applied outside the loss in its ``train_student.py``: here the ``beta`` option, with CE
    weight 1 and α = 1. The defaults are the README's only WTTM command (CIFAR-100, vgg13 →
    vgg8, WTTM added to CRD): ``--add wttm --ttm_l 0.2 -a 4``, i.e. T = 5, β = 4.
    U_γ is computed in log space, exp(logsumexp(γ·log softmax(t))), the same value as their
    ``torch.pow(softmax(t), γ).sum(1)``.
    """

    uses_temperature = True
    default_temperature = 5.0  # γ = 1/T = 0.2
    temperature: float  # never None: it defaults to default_temperature
    options = {"beta": 4.0}

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        s, t = student["logits"], teacher["logits"]  # (B, C) logits
        kl = transformed_teacher_kl(s, t, self.temperature)  # (B,)
        weight = torch.logsumexp(t.log_softmax(dim=1) / self.temperature, dim=1).exp()  # (B,)
        return self.opts["beta"] * (weight * kl).mean()
