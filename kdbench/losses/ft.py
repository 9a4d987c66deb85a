from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses._functional import pool_to_smaller
from kdbench.losses.base import DistillLoss, LossContext
from kdbench.registry import LOSSES


def _convs(channels: list[int], conv, bn: bool) -> nn.Sequential:
    layers = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [
            conv(c_in, c_out, 3, 1, 1),
            nn.BatchNorm2d(c_out) if bn else nn.Identity(),
            nn.LeakyReLU(0.1),
        ]
    return nn.Sequential(*layers)


@LOSSES.register("ft")
class FT(DistillLoss):
    """Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer", NeurIPS 2018.

    Initialisation stage (30/240 of the run, ``init``): a paraphraser (3 conv encoder, 3 deconv
    decoder, rate k = 0.5) learns to reconstruct the teacher's last conv stage (MSE). Then it is
    frozen and a translator (3 conv + BN) maps the student's last stage to factors; term
    β·mean|φ(F_S) − φ(F_T)| with φ(F) = L2-normalised mean over channels of F², β = 200,
    as RepDistiller.
    """

    taps = ("feat:-1",)
    options = {"beta": 200.0, "k": 0.5, "init": 30 / 240}

    def setup(self, ctx: LossContext) -> None:
        s_c, t_c = ctx.student_shapes["feat:-1"][1], ctx.teacher_shapes["feat:-1"][1]
        f_c = int(t_c * self.opts["k"])
        self.encoder = _convs([t_c, t_c, f_c, f_c], nn.Conv2d, bn=False)
        self.decoder = _convs([f_c, f_c, t_c, t_c], nn.ConvTranspose2d, bn=False)
        self.translator = _convs([s_c, s_c, f_c, f_c], nn.Conv2d, bn=True)

    def pretrain_loss(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        f_t = teacher["feat:-1"]  # (B, Ct, H, W)
        return F.mse_loss(self.decoder(self.encoder(f_t)), f_t)

    @staticmethod
    def factor(f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.pow(2).mean(1).flatten(1), dim=1)  # (B, H·W)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        factor_s = self.translator(student["feat:-1"])  # (B, k·Ct, Hs, Ws)
        with torch.no_grad():  # the paraphraser is frozen after its stage
            factor_t = self.encoder(teacher["feat:-1"])  # (B, k·Ct, Ht, Wt)
        factor_s, factor_t = pool_to_smaller(factor_s, factor_t)
        return self.opts["beta"] * (self.factor(factor_s) - self.factor(factor_t)).abs().mean()
