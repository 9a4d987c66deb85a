from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.data.views import STRONG_VIEW
from kdbench.losses._functional import soft_kl
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES, KdbenchError

# KD_ours.py's prediction augmentation: temperatures beside the case's T (cfg.KD.TEMPERATURE 4);
# the strong-view term takes the first two on the strong view and the last two on the weak one
TEMPERATURES = (3.0, 5.0, 2.0, 6.0)
QUANTILE = 0.5  # np.percentile(confidence, 50): the median, linearly interpolated


def _levels(
    s: torch.Tensor, t: torch.Tensor, T: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample T²·KL (B,), batch-level (B, B) and class-level (C, C) squared gaps between
    the teacher's and the student's prediction correlations, at temperature T."""
    log_p_s, log_p_t = F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1)  # (B, C)
    kl = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(1) * T * T  # (B,)
    p_s, p_t = log_p_s.exp(), log_p_t.exp()
    batch = (p_t @ p_t.T - p_s @ p_s.T) ** 2  # (B, B) input correlation
    klass = (p_t.T @ p_t - p_s.T @ p_s) ** 2  # (C, C) category correlation
    return kl, batch, klass


@LOSSES.register("mlkd")
class MLKD(DistillLoss):
    """Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023.

    Aligns the teacher's and the student's predictions at three levels — instance (T²-scaled
    KL), batch (B×B Gram matrix of the softened predictions, squared gap summed, over B) and
    class (C×C, over C) — each at several temperatures (prediction augmentation: the case's T
    and 2, 3, 5, 6). Trains on a weak and a strong view of every image: the data set must have
    the dataset option ``strong_view`` (``kdbench.data.views``); the batch is split in halves.
    On the weak view all three levels at the five temperatures, each times a median-threshold
    mask of the teacher's T = 1 confidence (samples with max probability ≤ the batch median;
    classes with summed probability ≤ the median over classes); on the strong view the
    instance level, unmasked. As the authors' code (Jin-Ying/Multi-Level-Logit-Distillation
    @5ee473f, mdistiller/distillers/KD_ours.py), and unlike the paper:

    - ``paper=0`` (default): the released losses are reduced before the mask is applied, so the
      mask only scales each term by its kept fraction (≈ ½); ``paper=1`` masks samples (rows of
      the instance and batch terms) and classes (columns of the class term) before the
      reduction, with the same normalisers.
    - the strong-view term takes T, 3 and 5 on the strong view but 2 and 6 on the weak one
      (a copy of its weak-view lines), and the batch and class terms of the strong view are
      computed but not returned: neither is trained on.

    CE: theirs is 0.1·(CE(weak) + CE(strong)) (cfg.KD.LOSS.CE_WEIGHT); the engine's CE is the
    mean over both halves, so ``ce_weight`` 0.2 is the same; every term has their KD_WEIGHT 0.9
    (``alpha``). Their teacher sees each view in its own forward pass, as does the student;
    the engine's single pass over both views differs for the student's batch norm only.
    """

    taps = ("logits", "index")
    uses_temperature = True
    default_temperature = 4.0
    temperature: float  # never None: it defaults to default_temperature
    alpha = 0.9
    ce_weight = 0.2
    options = {"paper": 0.0}
    # the data it trains on: a weak and a strong view of every image (the authors' CIFAR-100
    # get_cifar100_train_transform_strong); specs of this loss need these dataset options
    dataset_options = {STRONG_VIEW: "fixmatch"}

    def __init__(self, temperature: float | None = None, **options: float) -> None:
        super().__init__(temperature, **options)
        self._views_checked = False

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        if not self._views_checked:  # once per case: one host sync
            _check_two_views(student["index"])
            self._views_checked = True
        s_weak, s_strong = student["logits"].chunk(2)  # (B, C) logits of each view
        t_weak, t_strong = teacher["logits"].chunk(2)
        p_t = F.softmax(t_weak.detach(), dim=1)  # (B, C) at T = 1
        confidence = p_t.max(dim=1).values  # (B,)
        keep = (confidence <= confidence.quantile(QUANTILE)).float()  # (B,) less confident
        mass = p_t.sum(dim=0)  # (C,)
        keep_class = (mass <= mass.quantile(QUANTILE)).float()  # (C,) less predicted
        if not self.opts["paper"]:
            keep, keep_class = keep.mean(), keep_class.mean()  # the kept fractions
        b, c = s_weak.shape
        zero = s_weak.new_zeros(())
        weak = sum(
            (
                (kl * keep).mean()
                + (batch * keep.view(-1, 1)).sum() / b
                + (klass * keep_class).sum() / c
                for kl, batch, klass in (
                    _levels(s_weak, t_weak, T) for T in (self.temperature, *TEMPERATURES)
                )
            ),
            zero,
        )
        views = ((s_strong, t_strong),) * 3 + ((s_weak, t_weak),) * 2  # as KD_ours.py
        strong = sum(
            (soft_kl(s, t, T) for (s, t), T in zip(views, (self.temperature, *TEMPERATURES))), zero
        )
        return weak + strong


def _check_two_views(index: torch.Tensor) -> None:
    """The batch must be two views of the same images (``strong_view``): one line otherwise."""
    half = len(index) // 2
    if len(index) % 2 or not torch.equal(index[:half], index[half:]):
        raise KdbenchError(
            f"loss 'mlkd' trains on a weak and a strong view of every image: "
            f"set the dataset option {STRONG_VIEW}='fixmatch'"
        )
