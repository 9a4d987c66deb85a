"""What kdbench offers, as ``kdbench list`` shows it: per kind (losses, models, data sets,
profiles, recipes) the registered names and a function giving one name's table row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdbench.registry import KdbenchError


def _first_line(obj: Any) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def _losses() -> tuple[list[str], Callable[[str], dict]]:
    from kdbench.losses import LOSSES
    from kdbench.publish.findings import citation

    def details(name: str) -> dict:
        c = citation(LOSSES.get(name))
        return {
            "paper": c["paper"],
            "venue": c["venue"],
            "year": c["year"],
            "temperature": "yes" if LOSSES.get(name).uses_temperature else "",
        }

    return LOSSES.names(), details


def _models() -> tuple[list[str], Callable[[str], dict]]:
    import torch

    from kdbench.models import MODELS, build_model, count_params

    def params(name: str, classes: int) -> tuple[str, str]:
        with torch.device("meta"):  # shapes only: no memory, no initialisation time
            shape = build_model(name, classes, (3, 32, 32)).native_input
            n = count_params(build_model(name, classes, shape))
        return f"{n:,}", "×".join(map(str, shape))

    def details(name: str) -> dict:
        (p10, shape), (p100, _) = params(name, 10), params(name, 100)
        return {
            "input": shape,
            "params 10 classes": p10,
            "params 100 classes": p100,
            "description": _first_line(MODELS.get(name)),
        }

    return MODELS.names(), details


def _datasets() -> tuple[list[str], Callable[[str], dict]]:
    from kdbench.data import DATASETS, load_dataset

    def details(name: str) -> dict:
        row = {"description": _first_line(DATASETS.get(name))}
        try:
            data = load_dataset(name)
        except (KdbenchError, OSError, RuntimeError):
            return {**row, "classes": "", "shape": "", "train / val / test": "not on disk"}
        return {
            **row,
            "classes": data.num_classes,
            "shape": "×".join(map(str, data.input_shape)),
            "train / val / test": f"{data.num_train} / {data.num_val} / {data.num_test}",
        }

    return DATASETS.names(), details


def _profiles() -> tuple[list[str], Callable[[str], dict]]:
    """The shipped profiles and those of the nearest pyproject.toml with
    ``[tool.kdbench.profiles]``, from the current folder upwards."""
    from kdbench.matrix.profiles import PROFILES
    from kdbench.matrix.user_profiles import find_profiles, project_profiles

    pyproject = find_profiles(Path.cwd())
    profiles = project_profiles(pyproject)

    def details(name: str) -> dict:
        p = profiles.get(name)
        return {
            "dataset": p.dataset,
            "pairs": len(p.pairs),
            "from": "kdbench" if name in PROFILES else str(pyproject),
            "description": p.description,
        }

    return profiles.names(), details


def _recipes() -> tuple[list[str], Callable[[str], dict]]:
    from kdbench.recipes import RECIPES

    return RECIPES.names(), lambda n: {
        "lr": RECIPES.get(n).lr,
        "description": RECIPES.get(n).description,
    }


LISTERS = {
    "losses": _losses,
    "models": _models,
    "datasets": _datasets,
    "profiles": _profiles,
    "recipes": _recipes,
}
