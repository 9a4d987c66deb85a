from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("nkd")
class NKD(DistillLoss):
    """Yang, Zeng, Yuan & Li, "From Knowledge Distillation to Self-Knowledge Distillation: A Unified Approach with Normalized Loss and Customized Soft Labels", ICCV 2023: NKD.

    Term −mean_b t_y·log s_y − γ·T²·mean_b Σ_{i≠y} q_t,i·log q_s,i: the student's log-probability
    of the true class y weighted by the teacher's probability of it (both at temperature 1), plus
    a cross-entropy (not a KL: the teacher's entropy stays in the value) against the teacher's
    normalised non-target distribution q = softmax over the C − 1 non-target logits / T
    (yzd-v/cls_KD ``mmcls/models/dis_losses/nkd.py``). Defaults from its CIFAR-100 config
    ``configs/distillers/cifar100/res34_distill_res18_cifar.py``: T = 3, γ = 3.5, CE weight 1
    (its ImageNet configs use T = 1, γ = 1.5).
    """

    uses_temperature = True
    default_temperature = 3.0
    temperature: float  # never None: it defaults to default_temperature
    options = {"gamma": 3.5}

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        s, t = student["logits"], teacher["logits"]  # (B, C) logits
        T, n = self.temperature, len(s)
        gt = F.one_hot(target, s.shape[1]).bool()  # (B, C)
        target_term = -(t.softmax(dim=1)[gt] * s.log_softmax(dim=1)[gt]).mean()
        rest_s, rest_t = s[~gt].view(n, -1), t[~gt].view(n, -1)  # (B, C−1) non-target logits
        non_target = (F.softmax(rest_t / T, dim=1) * F.log_softmax(rest_s / T, dim=1)).sum(1)
        return target_term - self.opts["gamma"] * T * T * non_target.mean()
