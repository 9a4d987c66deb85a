"""Named optimisation recipes (optimizer, learning rate, schedule) that specs refer to by name."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kdbench.registry import KdbenchError, Registry

RECIPES = Registry("recipes")


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

    def __post_init__(self) -> None:
        for name, value, ok, rule in (
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "≥ 0"),
            ("gamma", self.gamma, self.gamma > 0, "> 0"),
        ):
            if not (math.isfinite(value) and ok):
                raise KdbenchError(f"invalid {name} {value!r} in recipe {self.name!r}: must be {rule}")
        for model, lr in self.lr_by_model:
            if not (math.isfinite(lr) and lr > 0):
                raise KdbenchError(f"invalid lr {lr!r} for {model!r} in recipe {self.name!r}: "
                                   f"must be > 0")

    def lr_for(self, model: str) -> float:
        return next((lr for prefix, lr in self.lr_by_model if model.startswith(prefix)), self.lr)

    def optimizer(self, params, model: str) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr_for(model), momentum=self.momentum,
                               weight_decay=self.weight_decay)

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int):
        steps = sorted({max(1, round(m * epochs)) for m in self.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=self.gamma)


def register_recipe(recipe: Recipe) -> Recipe:
    RECIPES.register(recipe.name)(recipe)
    return recipe


register_recipe(Recipe(
    "digits", lr=0.01, milestones=(0.5, 0.75),
    description="SGD momentum 0.9, wd 5e-4, lr 0.01, ×0.1 at 50 % and 75 % of the epochs",
))


register_recipe(Recipe(
    "fmnist", lr=0.05, milestones=(0.5, 0.75),
    description="SGD momentum 0.9, wd 5e-4, lr 0.05, ×0.1 at 50 % and 75 % of the epochs",
))
register_recipe(Recipe(
    "crd", lr=0.05, milestones=(150 / 240, 180 / 240, 210 / 240),
    lr_by_model=(("mobilenetv2", 0.01), ("shufflenet", 0.01)),
    description="CRD/RepDistiller CIFAR-100: SGD momentum 0.9, wd 5e-4, batch 64, lr 0.05 "
                "(0.01 for MobileNetV2 and ShuffleNets), ×0.1 at epochs 150/180/210 of 240",
))
