from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses._modules import ConvReg
from kdbench.losses.base import DistillLoss, LossContext
from kdbench.registry import LOSSES


@LOSSES.register("fitnet")
class FitNet(DistillLoss):
    """Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    Term β·MSE(r(S_h), T_h): a convolutional regressor r (conv + BN + ReLU, RepDistiller's
    ConvReg, sized from the tapped shapes) maps the student's hint stage onto the teacher's.
    Stage ``hint_layer`` = 2 counting the stem as 0 (RepDistiller's ``--hint_layer 2``), or the
    deepest stage of a shallower network; trained jointly with CE (β = 100), as RepDistiller.
    """

    taps = ("feats",)
    options = {"beta": 100.0, "hint_layer": 2}

    def setup(self, ctx: LossContext) -> None:
        s, t = ctx.student_shapes["feats"], ctx.teacher_shapes["feats"]
        self.hint = min(int(self.opts["hint_layer"]), len(s) - 1, len(t) - 1)
        self.regressor = ConvReg(s[self.hint], t[self.hint])

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        f_s = self.regressor(student["feats"][self.hint])  # (B, Ct, Ht, Wt)
        return self.opts["beta"] * F.mse_loss(f_s, teacher["feats"][self.hint])
