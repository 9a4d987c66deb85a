from __future__ import annotations

from kdbench.losses.dkd import DKD
from kdbench.registry import LOSSES


@LOSSES.register("dkd_ls")
class DKDLS(DKD):
    """Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024: DKD.

    DKD on z-scored logits (each sample's logits minus their mean, divided by std + 1e-7).
    Defaults follow the authors' ``tools/train.py --logit-stand --kd-weight 9``: α = 1·9 and
    β = α·9 = 81 as coded (it multiplies the already scaled α; β·9 = 72 would be the evident
    intent), T stays DKD's 4 (``--base-temp`` only reaches KD), warm-up 20/240, CE weight 1.
    """

    standardize = True
    options = {"tckd_weight": 9.0, "nckd_weight": 81.0, "warmup": 20 / 240}
