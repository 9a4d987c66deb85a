from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses.base import DistillLoss, LossContext, NotApplicable
from kdbench.registry import LOSSES


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


@LOSSES.register("kdsvd")
class KDSVD(DistillLoss):
    """Lee, Kim & Song, "Self-supervised Knowledge Distillation Using Singular Value Decomposition", ECCV 2018.

    For every stage after the stem: the leading right singular vectors of the (H·W, C) feature
    matrix (k for the teacher, k + 3 for the student, the student's sign- and order-aligned to the
    teacher's by cosine), scaled by the teacher's normalised singular values; between consecutive
    stages an RBF exp(−(v_i − v_{i−1})²/8) over channel pairs; term β·Σ ‖RBF_S − RBF_T‖² / B,
    k = 1, β = 1, as RepDistiller. Needs equal channels per paired stage and two stages after the
    stem.
    """

    taps = ("feats",)
    options = {"beta": 1.0, "k": 1}

    def setup(self, ctx: LossContext) -> None:
        s_c = [s[1] for s in ctx.student_shapes["feats"][1:]]
        t_c = [t[1] for t in ctx.teacher_shapes["feats"][1:]]
        n = min(len(s_c), len(t_c))
        if n < 2 or s_c[:n] != t_c[:n]:
            raise NotApplicable(
                f"KDSVD needs two or more stages after the stem with equal "
                f"channels: student {s_c}, teacher {t_c}"
            )

    @staticmethod
    def svd(f: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = f.flatten(2).transpose(1, 2)  # (B, H·W, C)
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        v = _finite(vh.transpose(1, 2))[:, :, :n]  # (B, C, n)
        return F.normalize(_finite(s)[:, :n], dim=1), F.normalize(v, dim=1)

    @staticmethod
    def align(v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        cosine = v_s.transpose(1, 2) @ v_t  # (B, n_s, n_t)
        best = cosine.abs().amax(dim=1, keepdim=True)
        return v_s @ torch.where(cosine.abs() == best, cosine.sign(), torch.zeros_like(cosine))

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        k = int(self.opts["k"])
        losses, prev = [], None
        for f_s, f_t in zip(student["feats"][1:], teacher["feats"][1:]):
            s_t, v_t = self.svd(f_t, k)
            _, v_s = self.svd(f_s, k + 3)
            v_s = self.align(v_s, v_t) * s_t[:, None]  # (B, C, k)
            v_t = v_t * s_t[:, None]
            if prev is not None:
                rbf_s = torch.exp(-(v_s[:, :, None] - prev[0][:, None]).pow(2) / 8)  # (B, C, C', k)
                rbf_t = torch.exp(-(v_t[:, :, None] - prev[1][:, None]).pow(2) / 8)
                losses.append(_finite((rbf_s - rbf_t).pow(2)).sum())
            prev = (v_s, v_t)
        return self.opts["beta"] * sum(losses, student["logits"].new_zeros(())) / len(target)
