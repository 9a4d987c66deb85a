from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses.catkd import LAST_MAP, ClassifierOnMapLoss
from kdbench.registry import LOSSES, KdbenchError

FINEST = 4  # SDD's SPP pools the last map to 4×4 first and the coarser scales from that


def local_logits(feat: torch.Tensor, classifier: nn.Linear, scales: int) -> torch.Tensor:
    """The classifier on the average of each region of 1×1, 2×2, … (``scales`` of them) grids:
    (B, C, H, W) → (N·B, K), region-major (rows 0…B−1 the whole map), as SDD's SPP and the
    reshape of its losses."""
    finest = F.adaptive_avg_pool2d(feat, FINEST)  # (B, C, 4, 4)
    regions = torch.cat(
        [F.adaptive_avg_pool2d(finest, 2**k).flatten(2) for k in range(scales)], dim=2
    )  # (B, C, N), N = 1 + 4 + 16
    return classifier(regions.permute(2, 0, 1)).flatten(0, 1)  # (N, B, K) → (N·B, K)


def kd_rows(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """T²·KL(softmax(t/T) ‖ softmax(s/T)) of each row: (R, K) → (R,)."""
    kl = F.kl_div(
        F.log_softmax(student / T, dim=1), F.softmax(teacher / T, dim=1), reduction="none"
    )
    return kl.sum(1) * T * T


def dkd_rows(
    student: torch.Tensor,
    teacher: torch.Tensor,
    target: torch.Tensor,
    T: float,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """α·TCKD + β·NCKD (Zhao et al. 2022) of each row, T²-scaled: (R, K) → (R,)."""
    gt = F.one_hot(target, student.shape[1]).bool()  # (R, K)
    p_s, p_t = F.softmax(student / T, dim=1), F.softmax(teacher / T, dim=1)
    b_s = torch.stack([p_s[gt], p_s.masked_fill(gt, 0).sum(1)], dim=1)  # (R, 2) target / rest
    b_t = torch.stack([p_t[gt], p_t.masked_fill(gt, 0).sum(1)], dim=1)
    tckd = F.kl_div(b_s.log(), b_t, reduction="none").sum(1)
    nckd = F.kl_div(
        F.log_softmax(student / T - 1000.0 * gt, dim=1),
        F.softmax(teacher / T - 1000.0 * gt, dim=1),
        reduction="none",
    ).sum(1)
    return (alpha * tckd + beta * nckd) * T * T


@LOSSES.register("sdd")
class SDD(ClassifierOnMapLoss):
    """Wei, Luo & Luo, "Scale Decoupled Distillation", CVPR 2024: SD-DKD, SD-KD at dkd=0.

    The last stage's map is average-pooled on 1×1, 2×2 and 4×4 grids (``scales`` 3, the
    authors' ``--M [1,2,4]``; 2: [1,2]; 1: the global logits only) and every region goes through
    the network's own classifier: 21 local logit vectors per image, the student's trained through
    this term. Each region gets the base loss against the teacher's logits of the same region,
    DKD (α·TCKD + β·NCKD, ``dkd`` 1) or KD (``dkd`` 0), with the image's label; a region is
    *complementary* when the teacher's local prediction is right and its global one wrong or the
    reverse, and then weighs ``complementary`` (2) instead of 1; term: the weighted sum over
    regions and images divided by their number (N·B), then the DKD warm-up. As
    ``mdistiller/distillers/SDD_DKD.py`` (``multi_dkd``, ``dkd_loss``), ``KD.py``
    (``sdd_kd_loss``) and ``models/cifar/utils.py`` (``SPP``: 4×4 first, the coarser grids pooled
    from it) of shicaiwei123/SDD-CVPR2024 at e412036.

    Defaults: the README's command, ``train_origin.py --cfg configs/cifar100/sdd_dkd/
    res32x4_shuv1.yaml --M [1,2,4]``: ``cfg.py`` CFG.DKD (CE weight 1, α 1, β 8, T 4) and
    ``--warmup 20`` (epochs of 240, ``min(epoch / 20, 1)`` as mdistiller). SD-KD (``KD.py``
    ``SDD_KD``, CFG.KD) is ``dkd`` 0, T 4, ``alpha`` 0.9 (KD_WEIGHT), ``ce_weight`` 0.1 and
    ``warmup`` 0: it has none. Their guards that zero a non-finite loss are left out (kdbench
    reports divergence instead).
    """

    method = "SDD"
    uses_temperature = True
    default_temperature = 4.0
    temperature: float  # never None: it defaults to default_temperature
    options = {
        "scales": 3,
        "complementary": 2.0,
        "dkd": 1,
        "tckd_weight": 1.0,
        "nckd_weight": 8.0,
        "warmup": 20 / 240,
    }

    @classmethod
    def check(cls, temperature: float | None, options: dict[str, float]) -> None:
        if options["scales"] not in (1, 2, 3):
            raise KdbenchError(
                f"invalid sdd scales {options['scales']!r}: 1, 2 or 3 (the "
                f"authors' M = [1], [1,2], [1,2,4])"
            )

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        s_classifier, t_classifier = self.classifiers(student, teacher)
        scales = int(self.opts["scales"])
        if scales == 1:  # the authors' M = [1]: the networks' logits, no regions
            s, t = student["logits"], teacher["logits"]  # (B, K)
        else:
            s = local_logits(student[LAST_MAP], s_classifier, scales)  # (N·B, K)
            with torch.no_grad():
                t = local_logits(teacher[LAST_MAP], t_classifier, scales)
        y = target.repeat(len(s) // len(target))  # (N·B,) region-major, as s and t
        T = self.temperature
        if self.opts["dkd"]:
            rows = dkd_rows(s, t, y, T, self.opts["tckd_weight"], self.opts["nckd_weight"])
        else:
            rows = kd_rows(s, t, T)
        right = t.argmax(1) == y  # (N·B,) the teacher's local prediction is right
        complementary = right != right[: len(target)].repeat(len(s) // len(target))
        weight = 1.0 + (self.opts["complementary"] - 1.0) * complementary.to(rows.dtype)
        return self.warmup_weight * (weight * rows).mean()
