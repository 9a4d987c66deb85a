from __future__ import annotations

import torch

from kdbench.losses._functional import transformed_teacher_kl
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("ttm")
class TTM(DistillLoss):
    """Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching", ICLR 2024: TTM.

    Term β·KL(p_t^γ / Σ p_t^γ ‖ softmax(s)), batch mean: temperature on the teacher's side only,
    read as a power transform of its probabilities, γ = 1/T; the student's softmax is at
    temperature 1 and there is no T² factor (zkxufo/TTM ``distiller_zoo/ttm.py``). Its
    ``train_student.py`` applies β outside the loss (``-b``): here the ``beta`` option, with CE
    weight r = 1 (``-r``) and α = 1, so ``ce_weight·CE + alpha·term`` is their objective. The
    defaults are the README's CIFAR-100 command (vgg13 → vgg8): ``--ttm_l 0.1 -r 1 -b 45 -a 0``,
    i.e. T = 10. The teacher's transform is computed as softmax(t/T), which equals their
    normalised power of softmax(t) without its underflow for very confident teachers.
    """

    uses_temperature = True
    default_temperature = 10.0  # γ = 1/T = 0.1
    temperature: float  # never None: it defaults to default_temperature
    options = {"beta": 45.0}

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        kl = transformed_teacher_kl(student["logits"], teacher["logits"], self.temperature)  # (B,)
        return self.opts["beta"] * kl.mean()
