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
    # buffers, registered by setup
    targets: torch.Tensor  # (N,) training-set labels
    order: torch.Tensor  # (N,) dataset indices grouped by class
    counts: torch.Tensor  # (classes,) samples per class
    starts: torch.Tensor  # (classes,) where each class begins in ``order``
    memory_s: torch.Tensor  # (N, dim) student bank
    memory_t: torch.Tensor  # (N, dim) teacher bank
    z: torch.Tensor  # (2,) normalisation constants

    def setup(self, ctx: LossContext) -> None:
        if ctx.train_targets is None:
            raise NotApplicable("CRD needs the training-set labels to draw its negatives")
        dim, targets = int(self.opts["dim"]), ctx.train_targets.long()
        self.embed_s = nn.Linear(ctx.student_shapes["embed"][-1], dim)
        self.embed_t = nn.Linear(ctx.teacher_shapes["embed"][-1], dim)
        counts = targets.bincount()
        fewest_others = len(targets) - int(counts.max())
        self.k = min(int(self.opts["nce_k"]), fewest_others)
        self.by_position = 4 * self.k <= fewest_others  # how ``sample`` draws, fixed per run
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("targets", targets.clone())
        self.register_buffer("order", targets.argsort(stable=True))  # indices grouped by class
        self.register_buffer("counts", counts)
        self.register_buffer("starts", counts.cumsum(0) - counts)  # of each class in ``order``
        self.register_buffer("memory_s", torch.rand(len(targets), dim) * 2 * stdv - stdv)
        self.register_buffer("memory_t", torch.rand(len(targets), dim) * 2 * stdv - stdv)
        self.register_buffer("z", torch.full((2,), -1.0))  # Z of the student / teacher scores

    def metrics(self) -> dict[str, float]:
        """K as run: ``nce_k`` clipped to the fewest other-class samples of any class."""
        return {"nce_k_effective": self.k}

    def sample(self, index: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K) dataset indices: the sample itself, then K other-class samples drawn
        uniformly without replacement. Where K is at most a quarter of the fewest other-class
        samples (the common case), K positions among the sample's other-class samples are drawn
        at random and a duplicate is redrawn until none is left: every K-subset equally likely,
        at O(B·K) instead of the O(B·N) of the top-K of random keys (0.2 s a step on a CPU core
        at N = 55,000), which serves the rest."""
        if not self.by_position:
            keys = torch.rand(len(index), len(self.targets), device=index.device)  # (B, N)
            keys.masked_fill_(self.targets[None, :] == target[:, None], -1.0)
            return torch.cat([index[:, None], keys.topk(self.k, dim=1).indices], dim=1)

        n_other = len(self.targets) - self.counts[target]  # (B,)

        def draw(columns: int) -> torch.Tensor:  # (B, columns) positions in [0, n_other)
            u = torch.rand(len(index), columns, device=index.device)
            return (u * n_other[:, None]).long().clamp_max_(n_other[:, None] - 1)

        pos = draw(self.k).sort(dim=1).values
        while (dup := pos[:, 1:] == pos[:, :-1]).any():
            pos[:, 1:] = torch.where(dup, draw(self.k - 1), pos[:, 1:])
            pos = pos.sort(dim=1).values
        # the p-th other-class sample: skip the sample's own class in the class-grouped order
        start, count = self.starts[target][:, None], self.counts[target][:, None]
        negatives = self.order[pos + (pos >= start) * count]
        return torch.cat([index[:, None], negatives], dim=1)

    def nce(self, scores: torch.Tensor) -> torch.Tensor:
        m, noise, eps = scores.shape[1] - 1, 1.0 / len(self.targets), 1e-7
        log_pos = torch.log(scores[:, 0] / (scores[:, 0] + m * noise + eps))
        log_neg = torch.log(m * noise / (scores[:, 1:] + m * noise + eps))
        return -(log_pos.sum() + log_neg.sum()) / len(scores)

    def update(self, name: str, index: torch.Tensor, v: torch.Tensor) -> None:
        """Momentum update of a bank, out of place: this step's graph still holds the old bank."""
        memory, m = getattr(self, name), self.opts["nce_m"]
        rows = F.normalize(memory[index] * m + v.detach() * (1 - m), dim=1)
        setattr(self, name, memory.index_copy(0, index, rows))

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        index = student["index"]  # (B,) dataset indices
        v_s = F.normalize(self.embed_s(student["embed"].flatten(1)), dim=1)  # (B, 128)
        v_t = F.normalize(self.embed_t(teacher["embed"].flatten(1)), dim=1)  # (B, 128)
        idx = self.sample(index, target)  # (B, 1 + K)
        # scores against the whole bank, then gathered: (B, N) instead of a (B, 1 + K, 128) copy
        # (B·K exceeds N at K = 16,384 and at K = 1,024 on 55,000 images alike, and a matrix
        # product beats a gather of as many rows)
        scores_s = torch.exp((v_s @ self.memory_t.T).gather(1, idx) / self.opts["nce_t"])
        scores_t = torch.exp((v_t @ self.memory_s.T).gather(1, idx) / self.opts["nce_t"])
        if self.z[0] < 0:
            means = torch.stack([scores_s.mean(), scores_t.mean()]).detach()
            self.z.copy_(means * len(self.targets))
        loss = self.nce(scores_s / self.z[0]) + self.nce(scores_t / self.z[1])
        with torch.no_grad():
            self.update("memory_s", index, v_s)
            self.update("memory_t", index, v_t)
        return self.opts["beta"] * loss
