from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses.base import DistillLoss, LossContext, NotApplicable
from kdbench.registry import LOSSES


@LOSSES.register("crd")
class CRD(DistillLoss):
    """Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020.

    Penultimate embeddings → trainable linear maps → L2-normalised 128-d codes. Each side's code
    is contrasted against the other side's memory bank (N entries, momentum-0.5 updates, buffers)
    at the sample's own index (positive) and K negatives drawn without replacement from the
    other classes ("exact" mode); scores exp(v·m/0.07) divided by a normalisation constant Z fixed
    at the first batch; NCE loss with noise 1/N for both directions, summed; β = 0.8.
    K = 16384, or fewer when some class has fewer other-class samples, as RepDistiller.
    """

    taps = ("embed", "index")
    options = {"beta": 0.8, "dim": 128, "nce_k": 16384, "nce_t": 0.07, "nce_m": 0.5}

    def setup(self, ctx: LossContext) -> None:
        if ctx.train_targets is None:
            raise NotApplicable("CRD needs the training-set labels to draw its negatives")
        dim, targets = int(self.opts["dim"]), ctx.train_targets.long()
        self.embed_s = nn.Linear(ctx.student_shapes["embed"][-1], dim)
        self.embed_t = nn.Linear(ctx.teacher_shapes["embed"][-1], dim)
        self.k = min(int(self.opts["nce_k"]), len(targets) - int(targets.bincount().max()))
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("targets", targets.clone())
        self.register_buffer("memory_s", torch.rand(len(targets), dim) * 2 * stdv - stdv)
        self.register_buffer("memory_t", torch.rand(len(targets), dim) * 2 * stdv - stdv)
        self.register_buffer("z", torch.full((2,), -1.0))  # Z of the student / teacher scores

    def sample(self, index: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K) dataset indices: the sample itself, then K other-class samples."""
        other = (self.targets[None, :] != target[:, None]).float()  # (B, N)
        return torch.cat([index[:, None], torch.multinomial(other, self.k)], dim=1)

    def nce(self, scores: torch.Tensor) -> torch.Tensor:
        m, noise, eps = scores.shape[1] - 1, 1.0 / len(self.targets), 1e-7
        log_pos = torch.log(scores[:, 0] / (scores[:, 0] + m * noise + eps))
        log_neg = torch.log(m * noise / (scores[:, 1:] + m * noise + eps))
        return -(log_pos.sum() + log_neg.sum()) / len(scores)

    def update(self, memory: torch.Tensor, index: torch.Tensor, v: torch.Tensor) -> None:
        m = self.opts["nce_m"]
        memory[index] = F.normalize(memory[index] * m + v.detach() * (1 - m), dim=1)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        index = student["index"]  # (B,) dataset indices
        v_s = F.normalize(self.embed_s(student["embed"].flatten(1)), dim=1)  # (B, 128)
        v_t = F.normalize(self.embed_t(teacher["embed"].flatten(1)), dim=1)  # (B, 128)
        idx = self.sample(index, target)  # (B, 1 + K)
        scores_s = torch.exp(self.memory_t[idx] @ v_s[:, :, None] / self.opts["nce_t"])[..., 0]
        scores_t = torch.exp(self.memory_s[idx] @ v_t[:, :, None] / self.opts["nce_t"])[..., 0]
        if self.z[0] < 0:
            self.z.copy_(torch.stack([scores_s.mean(), scores_t.mean()]).detach() * len(self.targets))
        loss = self.nce(scores_s / self.z[0]) + self.nce(scores_t / self.z[1])
        with torch.no_grad():
            self.update(self.memory_s, index, v_s)
            self.update(self.memory_t, index, v_t)
        return self.opts["beta"] * loss
