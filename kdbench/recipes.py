"""Named optimisation recipes (optimizer, learning rate, schedule) that specs refer to by name."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from kdbench.registry import KdbenchError, Registry

RECIPES = Registry("recipes")
SCHEDULES = ("step", "cosine", "onecycle")  # how the learning rate moves over a run's epochs
ONECYCLE_WARMUP = 0.3  # one-cycle: the fraction of the epochs the learning rate rises over


@dataclass(frozen=True)
class Recipe:
    name: str
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = ()  # fractions of the run's epochs where lr ×= gamma
    gamma: float = 0.1
    lr_by_model: tuple[tuple[str, float], ...] = ()  # model-name prefix → learning rate
    description: str = ""
    schedule: str = "step"  # one of SCHEDULES; "step" uses milestones and gamma

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise KdbenchError(
                f"invalid schedule {self.schedule!r} in recipe {self.name!r}: "
                f"valid: {', '.join(SCHEDULES)}"
            )
        for name, value, ok, rule in (
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "≥ 0"),
            ("gamma", self.gamma, self.gamma > 0, "> 0"),
        ):
            if not (math.isfinite(value) and ok):
                raise KdbenchError(
                    f"invalid {name} {value!r} in recipe {self.name!r}: must be {rule}"
                )
        for model, lr in self.lr_by_model:
            if not (math.isfinite(lr) and lr > 0):
                raise KdbenchError(
                    f"invalid lr {lr!r} for {model!r} in recipe {self.name!r}: must be > 0"
                )

    def lr_for(self, model: str) -> float:
        return next((lr for prefix, lr in self.lr_by_model if model.startswith(prefix)), self.lr)

    def optimizer(self, params, model: str) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            params, lr=self.lr_for(model), momentum=self.momentum, weight_decay=self.weight_decay
        )

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int):
        """Stepped once per epoch: step decay at the milestones; cosine from the learning rate
        to 0 over the epochs; one-cycle: linear from lr/25 up to lr over the first
        ``ONECYCLE_WARMUP`` of the epochs, then cosine down to 0."""
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
        if self.schedule == "onecycle":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: _one_cycle(e, epochs))
        steps = sorted({max(1, round(m * epochs)) for m in self.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=self.gamma)

    def key(self) -> dict:
        """What identifies the recipe in a teacher's cache key: its fields, the schedule left
        out where it is the default step decay (teachers cached before schedules existed keep
        their keys)."""
        fields = asdict(self)
        if self.schedule == "step":
            del fields["schedule"]
        return fields


def _one_cycle(epoch: int, epochs: int) -> float:
    rise = max(1, round(ONECYCLE_WARMUP * epochs))
    if epoch < rise:
        return 1 / 25 + (1 - 1 / 25) * epoch / rise
    return 0.5 * (1 + math.cos(math.pi * (epoch - rise) / max(1, epochs - rise)))


def register_recipe(recipe: Recipe) -> Recipe:
    RECIPES.register(recipe.name)(recipe)
    return recipe


register_recipe(
    Recipe(
        "digits",
        lr=0.01,
        milestones=(0.5, 0.75),
        description="SGD momentum 0.9, wd 5e-4, lr 0.01, ×0.1 at 50 % and 75 % of the epochs",
    )
)


register_recipe(
    Recipe(
        "fmnist",
        lr=0.05,
        milestones=(0.5, 0.75),
        description="SGD momentum 0.9, wd 5e-4, lr 0.05, ×0.1 at 50 % and 75 % of the epochs",
    )
)
# The fmnist recipe with other schedules, to find the one under which students converge in the
# fewest epochs (issue 20: ce within 0.5 points of its own test top-1 at twice the epochs;
# benchmarks/convergence.py)
for _schedule, _words in (
    ("cosine", "cosine annealing to 0"),
    ("onecycle", "one-cycle: up from lr/25 over 30 % of the epochs, cosine down to 0"),
):
    register_recipe(
        Recipe(
            f"fmnist-{_schedule}",
            lr=0.05,
            schedule=_schedule,
            description=f"SGD momentum 0.9, wd 5e-4, lr 0.05, {_words}, per epoch",
        )
    )
register_recipe(
    Recipe(
        "crd",
        lr=0.05,
        milestones=(150 / 240, 180 / 240, 210 / 240),
        lr_by_model=(("mobilenetv2", 0.01), ("shufflenet", 0.01)),
        description="CRD/RepDistiller CIFAR-100: SGD momentum 0.9, wd 5e-4, batch 64, lr 0.05 "
        "(0.01 for MobileNetV2 and ShuffleNets), ×0.1 at epochs 150/180/210 of 240",
    )
)
