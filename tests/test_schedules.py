"""Learning-rate schedules of recipes (step decay, cosine, one-cycle, stepped per epoch), and
teacher cache keys that stay what they were for the step recipes."""

from __future__ import annotations

import itertools
from dataclasses import asdict

import pytest
import torch

from kdbench.recipes import RECIPES, Recipe
from kdbench.registry import KdbenchError


def rates(recipe: str, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=RECIPES.get(recipe).lr)
    scheduler = RECIPES.get(recipe).scheduler(optimizer, epochs)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_each_schedule_moves_the_learning_rate_as_described():
    assert rates("fmnist", 8) == pytest.approx([0.05] * 4 + [0.005] * 2 + [0.0005] * 2)
    cosine = rates("fmnist-cosine", 8)
    assert cosine[0] == 0.05 and all(a > b for a, b in itertools.pairwise(cosine))
    cycle = rates("fmnist-onecycle", 10)
    assert cycle[0] == pytest.approx(0.05 / 25) and max(cycle) == pytest.approx(0.05)
    assert cycle.index(max(cycle)) == 3 and all(a > b for a, b in itertools.pairwise(cycle[3:]))


def test_step_recipes_keep_their_teacher_cache_keys():
    fmnist = RECIPES.get("fmnist")
    assert fmnist.key() == {k: v for k, v in asdict(fmnist).items() if k != "schedule"}
    assert RECIPES.get("fmnist-cosine").key()["schedule"] == "cosine"


def test_an_unknown_schedule_is_refused():
    with pytest.raises(KdbenchError, match=r"invalid schedule 'linear'.*valid: step, cosine"):
        Recipe("x", lr=0.1, schedule="linear")
