from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES, KdbenchError


@LOSSES.register("rld")
class RLD(DistillLoss):
    """Sun, Chen, Lyu, Chen, Chen & Wang, "Knowledge Distillation with Refined Logits", ICCV 2025.

    Term w·(α·SCD + β·MCD) (zju-SWJ/RLD ``mdistiller/distillers/RLD.py``). Sample confidence
    distillation: the T_α²-scaled KL between the teacher's binary (its top class, the rest) and
    the student's binary (the true class, the rest) at temperature T_α. Masked correlation
    distillation: the T²-scaled KL among the classes the teacher ranks strictly below the true
    class (every class whose teacher logit is ≥ the true class's, the true class included, is
    masked out of both softmaxes), so a wrong teacher's misleading classes are left out.
    w ramps to 1 over the first 20/240 of the run (``warmup``). Defaults: its ``cfg.py`` CFG.RLD
    (CE weight 1, α = 1, β = 8, T = 4, WARMUP 20) and its README's CIFAR-100 command
    ``--same-t``, which sets T_α = T (``same_t`` = 1); ``same_t`` = 0 uses ``alpha_t``
    (CFG.RLD.ALPHA_T, 1).
    """

    uses_temperature = True
    default_temperature = 4.0
    temperature: float  # never None: it defaults to default_temperature
    options = {
        "scd_weight": 1.0,
        "mcd_weight": 8.0,
        "warmup": 20 / 240,
        "same_t": 1.0,
        "alpha_t": 1.0,
    }

    @classmethod
    def check(cls, temperature: float | None, options: dict[str, float]) -> None:
        if options["same_t"] not in (0, 1):
            raise KdbenchError(
                f"invalid rld same_t {options['same_t']:g}: 1 (T_α = T) or 0 (T_α = alpha_t)"
            )

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        s, t = student["logits"], teacher["logits"]  # (B, C) logits
        T = self.temperature
        T_a = T if self.opts["same_t"] else self.opts["alpha_t"]
        gt = F.one_hot(target, s.shape[1]).bool()  # (B, C)
        top = F.one_hot(t.argmax(dim=1), s.shape[1]).bool()  # (B, C) the teacher's prediction
        p_s, p_t = F.softmax(s / T_a, dim=1), F.softmax(t / T_a, dim=1)
        b_s = torch.stack([p_s[gt], p_s.masked_fill(gt, 0).sum(1)], dim=1)  # (B, 2)
        b_t = torch.stack([p_t[top], p_t.masked_fill(top, 0).sum(1)], dim=1)  # (B, 2)
        scd = F.kl_div(b_s.log(), b_t, reduction="batchmean") * T_a * T_a
        masked = t >= t.gather(1, target[:, None])  # (B, C) ranked at or above the true class
        log_q_s = F.log_softmax((s / T).masked_fill(masked, -1e9), dim=1)
        q_t = F.softmax((t / T).masked_fill(masked, -1e9), dim=1)
        mcd = F.kl_div(log_q_s, q_t, reduction="batchmean") * T * T
        return self.warmup_weight * (self.opts["scd_weight"] * scd + self.opts["mcd_weight"] * mcd)
