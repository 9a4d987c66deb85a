from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.losses._functional import pairwise_distances
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("rkd")
class RKD(DistillLoss):
    """Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019.

    On the penultimate embeddings: distance term = smooth-L1 between the pairwise distances, each
    divided by its mean positive distance; angle term = smooth-L1 between the cosines of the
    angles of all sample triplets. Term β·(25·distance + 50·angle), β = 1, as RepDistiller.
    """

    taps = ("embed",)
    options = {"beta": 1.0, "distance": 25.0, "angle": 50.0}

    @staticmethod
    def distances(e: torch.Tensor) -> torch.Tensor:
        d = pairwise_distances(e)  # (B, B)
        return d / d[d > 0].mean()

    @staticmethod
    def angles(e: torch.Tensor) -> torch.Tensor:
        v = F.normalize(e[None, :, :] - e[:, None, :], dim=2)  # (B, B, D) unit e_j − e_i
        return (v @ v.transpose(1, 2)).flatten()  # (B·B·B,) cos ∠(e_j, e_i, e_k)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        s, t = student["embed"].flatten(1), teacher["embed"].flatten(1)  # (B, D)
        dist = F.smooth_l1_loss(self.distances(s), self.distances(t))
        angle = F.smooth_l1_loss(self.angles(s), self.angles(t))
        return self.opts["beta"] * (self.opts["distance"] * dist + self.opts["angle"] * angle)
