from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses._functional import pool_to_smaller
from kdbench.losses.base import DistillLoss, LossContext
from kdbench.registry import LOSSES


def _conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, bias=False)


@LOSSES.register("vid")
class VID(DistillLoss):
    """Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information Distillation for Knowledge Transfer", CVPR 2019.

    For every stage after the stem (paired from the shallowest, pooled to the smaller size): the
    negative Gaussian log-likelihood ½·((μ(S) − T)²/σ² + log σ²), mean over all elements, with μ a
    trainable 3-layer 1×1-conv regressor and σ² = softplus(α_c) + ε a trainable per-channel
    variance (initially 5), as the authors' code in RepDistiller; summed over stages, β = 1.
    """

    taps = ("feats",)
    options = {"beta": 1.0, "init_var": 5.0, "eps": 1e-5}

    def setup(self, ctx: LossContext) -> None:
        pairs = list(zip(ctx.student_shapes["feats"][1:], ctx.teacher_shapes["feats"][1:]))
        self.regressors = nn.ModuleList(
            nn.Sequential(
                _conv1x1(s[1], t[1]),
                nn.ReLU(),
                _conv1x1(t[1], t[1]),
                nn.ReLU(),
                _conv1x1(t[1], t[1]),
            )
            for s, t in pairs
        )
        init = math.log(math.expm1(self.opts["init_var"] - self.opts["eps"]))
        self.log_scales = nn.ParameterList(
            nn.Parameter(torch.full((t[1],), init)) for _, t in pairs
        )

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        total = student["logits"].new_zeros(())
        stages = zip(student["feats"][1:], teacher["feats"][1:], self.regressors, self.log_scales)
        for f_s, f_t, regressor, log_scale in stages:
            f_s, f_t = pool_to_smaller(f_s, f_t)
            mean = regressor(f_s)  # (B, Ct, H, W)
            var = (F.softplus(log_scale) + self.opts["eps"]).view(1, -1, 1, 1)
            total = total + (0.5 * ((mean - f_t) ** 2 / var + var.log())).mean()
        return self.opts["beta"] * total
