"""The one training loop: ``fit(stage, spec, data)`` trains the model of a ``Stage`` under its
objective (the teacher, the ``ce`` baseline and every distillation loss alike) and ``evaluate``
returns validation and test logits. The loop never asks which loss it runs: a loss declares
its taps and hooks (``kdbench.losses.base``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.data.base import DataSource
from kdbench.recipes import RECIPES
from kdbench.run import measure
from kdbench.run.accel import Accel
from kdbench.run.taps import Tapper, map_taps
from kdbench.spec import RunSpec

EVAL_BATCH = 1024  # evaluation batch size (inference only, no activations kept)


Objective = Callable[[dict, dict, torch.Tensor], torch.Tensor]


TeacherFn = Callable[[torch.Tensor, torch.Tensor], dict]


Progress = Callable[[str], None]
Tick = Callable[[str, float, int], None]  # (stage label, epochs done, epochs)


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, last_finite_loss: float | None) -> None:
        super().__init__(f"loss is not finite at epoch {epoch}")
        self.epoch = epoch
        self.last_finite_loss = last_finite_loss


@dataclass
class FitStats:
    epochs: int = 0
    epoch_samples: list[int] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)  # training steps only, no eval
    last_loss: float | None = None
    best_top1: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def throughput(self, skip_first: bool = False) -> float:
        """Training samples/s; with ``skip_first`` the first epoch (compilation) is left out."""
        start = 1 if skip_first and self.epochs > 1 else 0
        return sum(self.epoch_samples[start:]) / sum(self.epoch_seconds[start:])

    def compile_seconds(self) -> float:
        """First-epoch time beyond the later epochs' median: the cost of torch.compile."""
        if self.epochs < 2:
            return float("nan")
        rest = sorted(self.epoch_seconds[1:])
        return max(0.0, self.epoch_seconds[0] - rest[len(rest) // 2])


def no_teacher(x: torch.Tensor, index: torch.Tensor) -> dict:
    return {}


def cross_entropy(s: dict, t: dict, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(s["logits"], y)


@dataclass
class Stage:
    """One run of the training loop: the model behind ``tapper`` (and ``extra`` parameters, a
    loss's connectors) learns ``objective`` for ``epochs`` with the recipe's optimizer for
    ``model_name``; ``on_step(progress, epochs)`` sees the fractional epoch before every step;
    ``channels_last``: the model and its batches in that memory format on the CPU too."""

    tapper: Tapper
    objective: Objective
    model_name: str
    epochs: int
    seed: int
    label: str
    extra: Sequence[nn.Parameter] = ()
    teacher: TeacherFn = no_teacher
    on_step: Callable[[float, int], None] | None = None
    channels_last: bool = False


def evaluate(model: nn.Module, data: DataSource) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation logits, test logits) of ``model``."""
    return (
        measure.predict(model, data.val_batches(EVAL_BATCH)),
        measure.predict(model, data.test_batches(EVAL_BATCH)),
    )


def cat_taps(parts: list[dict]) -> dict:
    """The taps of several forward passes (one per view) as those of one batch."""
    if len(parts) == 1:
        return parts[0]
    return {
        k: (
            [torch.cat(z) for z in zip(*(p[k] for p in parts))]
            if isinstance(v, list)
            else torch.cat([p[k] for p in parts])
        )
        for k, v in parts[0].items()
    }


def fit(
    stage: Stage, spec: RunSpec, data: DataSource, progress: Progress, tick: Tick | None = None
) -> FitStats:
    """Train ``stage.tapper.model`` to minimise ``stage.objective``; validation and test top-1
    after every epoch, one host sync per epoch; ``tick(label, epochs done, epochs)`` before every
    step and after every epoch (kdbench.observe's live progress)."""
    model = stage.tapper.model
    device = torch.device(spec.device)
    accel = Accel.for_spec(spec.precision, device, stage.channels_last)
    recipe = RECIPES.get(spec.recipe)
    optimizer = recipe.optimizer([*model.parameters(), *stage.extra], stage.model_name)
    scheduler = recipe.scheduler(optimizer, stage.epochs)
    generator = torch.Generator().manual_seed(stage.seed)
    steps = math.ceil(data.num_train / spec.batch_size)
    stats = FitStats()
    for epoch in range(stage.epochs):
        model.train()
        total = torch.zeros((), device=device)
        seen = 0
        measure.synchronize(device)
        start = time.perf_counter()
        for step, (x, y, index) in enumerate(data.train_batches(spec.batch_size, generator)):
            if stage.on_step is not None:
                stage.on_step(epoch + step / steps, stage.epochs)
            if tick is not None:
                tick(stage.label, epoch + step / steps, stage.epochs)
            x = accel.batch(x)
            with accel.autocast():
                student = cat_taps([stage.tapper(v) for v in x.chunk(getattr(data, "views", 1))])
                teacher = stage.teacher(x, index)
            student["index"] = index
            loss = stage.objective(
                map_taps(accel.for_loss, student), map_taps(accel.for_loss, teacher), y
            )
            accel.step(loss, optimizer)
            total += loss.detach().float() * len(y)
            seen += len(y)
        measure.synchronize(device)
        stats.epoch_seconds.append(time.perf_counter() - start)
        stats.epoch_samples.append(seen)
        scheduler.step()
        epoch_loss = (total / seen).item()  # the one host sync per epoch
        if not math.isfinite(epoch_loss):
            raise Diverged(epoch + 1, stats.last_loss)
        stats.last_loss = epoch_loss
        val_logits, test_logits = evaluate(model, data)
        val_top1 = measure.topk_accuracy(val_logits, data.val_targets(), 1)
        top1 = measure.topk_accuracy(test_logits, data.test_targets(), 1)
        stats.best_top1 = max(stats.best_top1, top1)
        stats.epochs = epoch + 1
        stats.history.append(
            {"epoch": epoch + 1, "loss": epoch_loss, "val_top1": val_top1, "top1": top1}
        )
        progress(
            f"{stage.label}: epoch {epoch + 1}/{stage.epochs} loss {epoch_loss:.4f} "
            f"val top1 {val_top1:.2f} test top1 {top1:.2f}"
        )
        if tick is not None:
            tick(stage.label, epoch + 1, stage.epochs)
    return stats
