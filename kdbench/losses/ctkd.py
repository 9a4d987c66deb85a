from __future__ import annotations

import math

import torch
from torch import nn

from kdbench.losses._functional import REFERENCE_EPOCHS, GradReverse, soft_kl
from kdbench.losses.base import DistillLoss
from kdbench.registry import LOSSES, KdbenchError


@LOSSES.register("ctkd")
class CTKD(DistillLoss):
    """Li, Li, Yang, Zhao, Song, Luo, Li & Yang, "Curriculum Temperature for Knowledge Distillation", AAAI 2023.

    KD with a learnable global temperature T = t_start + t_range·sigmoid(θ) that is trained
    adversarially: a gradient-reversal layer multiplies θ's gradient by λ ≤ 0, and λ follows the
    curriculum of zhengli97/CTKD, a cosine from 0 to −1 over the first 10/240 of the run
    (``loops``), then −1. The spec's temperature is the starting T (default: the repo's
    θ = 1, T ≈ 15.6); the learned T at the end is recorded as ``final_temperature``.
    CE 0.1 + KD 0.9 as the repo's CIFAR script.
    """

    uses_temperature = True
    default_temperature = 1.0 + 20.0 / (1.0 + math.exp(-1.0))
    temperature: float  # never None: it defaults to default_temperature
    alpha = 0.9
    ce_weight = None
    options = {
        "t_start": 1.0,
        "t_range": 20.0,
        "loops": 10 / 240,
        "lambda_max": 0.0,
        "lambda_min": -1.0,
    }

    @classmethod
    def check(cls, temperature: float | None, options: dict[str, float]) -> None:
        low, high = options["t_start"], options["t_start"] + options["t_range"]
        assert temperature is not None  # resolve fills in default_temperature
        if not low < temperature < high:
            raise KdbenchError(
                f"invalid ctkd temperature {temperature:g}: its starting value "
                f"must lie strictly between t_start and t_start + t_range "
                f"({low:g}, {high:g})"
            )

    def __init__(self, temperature: float | None = None, **options: float) -> None:
        super().__init__(temperature, **options)
        fraction = (self.temperature - self.opts["t_start"]) / self.opts["t_range"]
        self.theta = nn.Parameter(torch.tensor(math.log(fraction / (1 - fraction))))
        self.set_progress(0.0, REFERENCE_EPOCHS)

    def set_progress(self, progress: float, epochs: int) -> None:
        """λ follows the cosine over the first ``loops`` of the run, per step: the repo's
        per-epoch schedule of 10/240 epochs, scaled to the run's length (a 15-epoch run still
        has its curriculum, over its first 0.625 epochs)."""
        span = self.opts["loops"] * epochs
        x = min(progress / span, 1.0) if span > 0 else 1.0
        hi, lo = self.opts["lambda_max"], self.opts["lambda_min"]
        self.lam = (math.cos(x * math.pi) + 1) / 2 * (hi - lo) + lo

    def metrics(self) -> dict[str, float]:
        with torch.no_grad():
            return {"final_temperature": float(self.current_temperature())}

    def current_temperature(self) -> torch.Tensor:
        theta = GradReverse.apply(self.theta, self.lam)
        return self.opts["t_start"] + self.opts["t_range"] * torch.sigmoid(theta)

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        return soft_kl(student["logits"], teacher["logits"], self.current_temperature())
