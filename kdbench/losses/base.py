"""The loss interface. A loss declares what it needs; the engine never asks which loss it runs.

The engine's objective for one batch is ``ce_weight · CE(student logits, y) + alpha · loss(...)``
where ``loss.forward(student, teacher, target)`` returns the distillation term; ``student`` and
``teacher`` map the tap names in ``taps`` (see ``kdbench.models.base``) to tensors. Scale factors
of a paper (β of FitNet, AT, …) live inside the term as loss options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from kdbench.losses._functional import ramp, scaled_epochs
from kdbench.registry import KdbenchError


class NotApplicable(KdbenchError):
    """The method is undefined for this teacher/student pair (the case is skipped, shown N/A)."""


@dataclass(frozen=True)
class LossContext:
    """What a loss may size itself from before training starts (once per case)."""

    student_shapes: dict[str, Any]  # tap name → torch.Size (or list of sizes for "feats")
    teacher_shapes: dict[str, Any]
    num_classes: int
    num_train: int  # training-set size (CRD memory banks)
    epochs: int
    teacher: nn.Module | None = None  # e.g. SRD sends student features through its classifier
    train_targets: torch.Tensor | None = field(default=None, repr=False)  # (N,) labels, CRD
    student: nn.Module | None = None  # e.g. CAT-KD's class activation maps use its classifier


class DistillLoss(nn.Module):
    """Base class. Subclasses set the class attributes and implement ``forward``.

    - ``taps``: tap names needed from both networks (``"index"`` is filled by the engine).
    - ``uses_temperature``: whether the profile sweeps temperatures for it;
      ``default_temperature``: the paper's T, used when the spec gives none.
    - ``needs_teacher``: False only for ``ce`` (the student trained alone).
    - ``alpha``: default weight of the term; ``ce_weight``: default CE weight, ``None`` meaning
      ``1 − alpha`` (Hinton's convex mix).
    - ``options``: default loss options (β, …), overridable from the spec's ``loss_options``.
      Two have a shared meaning: ``warmup`` (a fraction of the run over which
      ``warmup_weight`` ramps linearly to 1, per epoch, as mdistiller's DKD and ReviewKD) and
      ``init`` (a fraction of the run spent in an initialisation stage, as RepDistiller's AB,
      FT and FSP).
    """

    taps: ClassVar[tuple[str, ...]] = ("logits",)
    uses_temperature: ClassVar[bool] = False
    default_temperature: ClassVar[float | None] = None
    needs_teacher: ClassVar[bool] = True
    alpha: ClassVar[float] = 1.0
    ce_weight: ClassVar[float | None] = 1.0
    options: ClassVar[dict[str, float]] = {}
    dataset_options: ClassVar[dict[str, Any]] = {}  # data it trains on (MLKD: strong_view)

    def __init__(self, temperature: float | None = None, **options: float) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise KdbenchError(
                f"unknown option {unknown[0]!r} for loss {type(self).__name__}: "
                f"valid: {', '.join(sorted(self.options)) or 'none'}"
            )
        self.temperature, self.opts = self.resolve(temperature, options)
        self.warmup_weight = 1.0

    @classmethod
    def weights(cls, alpha: float | None = None) -> tuple[float, float]:
        """(ce_weight, alpha) for a spec, from an optional alpha override."""
        a = cls.alpha if alpha is None else alpha
        return (1.0 - a if cls.ce_weight is None else cls.ce_weight), a

    @classmethod
    def paper(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def setup(self, ctx: LossContext) -> None:
        """Create trainable parts sized from the tapped shapes; raise NotApplicable if undefined."""

    @classmethod
    def resolve(
        cls, temperature: float | None, options: dict[str, float]
    ) -> tuple[float | None, dict[str, float]]:
        """The effective temperature and options of a case (defaults filled in), checked."""
        temperature = cls.default_temperature if temperature is None else temperature
        options = {**cls.options, **options}
        cls.check(temperature, options)
        return temperature, options

    @classmethod
    def check(cls, temperature: float | None, options: dict[str, float]) -> None:
        """Raise ``KdbenchError`` (one line) when this temperature or these options cannot work
        together; run when a spec is made, before any training."""

    def set_progress(self, progress: float, epochs: int) -> None:
        """Called before every training step with the epochs done so far, fractional
        (``epoch + step / steps``): warm-ups and curricula follow it."""
        if "warmup" in self.opts:
            self.warmup_weight = ramp(math.floor(progress), epochs, self.opts["warmup"])

    def trainable(self) -> list[nn.Parameter]:
        """The loss's own trainable parts (connectors, embeddings, a learned temperature)."""
        return [p for p in self.parameters() if p.requires_grad]

    def metrics(self) -> dict[str, float]:
        """What the loss learned or adapted, recorded with the case's metrics (a learned
        temperature, an effective number of negatives); empty for most losses."""
        return {}

    def pretrain_epochs(self, epochs: int) -> int:
        """Epochs of an initialisation stage (the ``init`` option) run before distillation;
        0 for none."""
        return scaled_epochs(self.opts["init"], epochs) if "init" in self.opts else 0

    def pretrain_loss(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        """Objective of the initialisation stage (only called when ``pretrain_epochs`` > 0)."""
        raise NotImplementedError


class InitStageLoss(DistillLoss):
    """A method whose transfer happens in its initialisation stage (AB, FSP, as RepDistiller):
    afterwards the student trains with CE alone, unless ``main_stage=1`` keeps β·the
    initialisation loss as the distillation term."""

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        if self.opts["main_stage"]:
            return self.opts["beta"] * self.pretrain_loss(student, teacher, target)
        return student["logits"].new_zeros(())
