from __future__ import annotations

import torch

from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES


@LOSSES.register("pkt")
class PKT(DistillLoss):
    """Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer", ECCV 2018.

    Cosine similarities of the penultimate embeddings, mapped to [0, 1] and normalised per row into
    conditional probabilities; term β·mean(p_T·log((p_T + ε)/(p_S + ε))), β = 30000, as
    RepDistiller.
    """

    taps = ("embed",)
    options = {"beta": 30000.0, "eps": 1e-7}

    def probabilities(self, e: torch.Tensor) -> torch.Tensor:
        e = e.flatten(1)
        e = e / (e.norm(dim=1, keepdim=True) + self.opts["eps"])
        sim = (e @ e.t() + 1) / 2  # (B, B) in [0, 1]
        return sim / sim.sum(dim=1, keepdim=True)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        eps = self.opts["eps"]
        p_s = self.probabilities(student["embed"])  # (B, B)
        p_t = self.probabilities(teacher["embed"])  # (B, B)
        return self.opts["beta"] * (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()
