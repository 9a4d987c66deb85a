from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses.base import DistillLoss, LossContext, NotApplicable
from kdbench.models.base import StagedModel
from kdbench.registry import LOSSES


@LOSSES.register("srd")
class SRD(DistillLoss):
    """Yang, Martinez, Bulat & Tzimiropoulos, "Knowledge Distillation via Softmax Regression Representation Learning", ICLR 2021.

    The student's penultimate embedding through a trainable connector (1×1 conv ≡ linear, BN,
    ReLU) to the teacher's embedding size; term α·MSE(h_S, h_T) + β·MSE(W_T·h_S, z_T), where W_T
    is the teacher's frozen classifier and z_T its logits; α = β = 1, as the SRRL code of
    SemCKD/SimKD (the authors' "SRRL").
    """

    taps = ("embed",)  # the logits always come with the taps
    options = {"alpha_fm": 1.0, "beta_sr": 1.0}

    def setup(self, ctx: LossContext) -> None:
        if ctx.teacher is None:
            raise NotApplicable("SRD needs the teacher's classifier")
        d_s, d_t = ctx.student_shapes["embed"][-1], ctx.teacher_shapes["embed"][-1]
        self.connector = nn.Sequential(
            nn.Linear(d_s, d_t, bias=False), nn.BatchNorm1d(d_t), nn.ReLU()
        )
        teacher = cast(StagedModel, ctx.teacher)  # the model contract: it names its classifier
        self._classifier = (teacher.classifier_module(),)  # a tuple: not a parameter of ours

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        h_s = self.connector(student["embed"].flatten(1))  # (B, Dt)
        z_s = self._classifier[0](h_s)  # (B, classes) student features, teacher classifier
        return self.opts["alpha_fm"] * F.mse_loss(h_s, teacher["embed"].flatten(1)) + self.opts[
            "beta_sr"
        ] * F.mse_loss(z_s, teacher["logits"])
