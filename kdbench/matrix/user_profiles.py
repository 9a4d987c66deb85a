"""Profiles users write themselves: ``[tool.kdbench.profiles.<name>]`` tables of their own
project's pyproject.toml, run with ``--kd-profile <name>`` like the shipped ones::

    [tool.kdbench.profiles.my-digits]
    description = "digits: cnn_t → cnn_s with three losses"
    dataset = "digits"
    pairs = ["cnn_t/cnn_s"]               # or [["cnn_t", "cnn_s"]]
    recipe = "digits"
    epochs = 15
    losses = ["ce", "kd", "dkd*"]         # name patterns over the LOSSES registry
    [tool.kdbench.profiles.my-digits.loss_options]
    dkd = { warmup = 0.333 }
    dkd_ls = { warmup = 0.333 }
    [tool.kdbench.profiles.my-digits.pair_settings."cnn_t/cnn_s"]
    kd = { temperature = 2.0, alpha = 0.5 }
    [tool.kdbench.profiles.my-digits.tuning]  # optional: an equal tuning budget on validation
    kd = { alpha = [0.5, 0.9], temperature = [2.0, 4.0] }  # the paper setting among the values
    dkd = { nckd_weight = [2.0, 4.0, 8.0, 16.0] }          # every method as many trials
    dkd_ls = { nckd_weight = [8.0, 81.0], warmup = [0.083333, 0.333] }
    # optional: paper_cases = false (no plain seeds at the paper settings: the paper setting is
    # a trial), channels_last = ["cnn_s"] (students channels_last on the CPU), and per pair:
    # [tool.kdbench.profiles.my-digits.pair_epochs] "cnn_t/cnn_s" = 20, and pair_losses

A table with ``base = "<shipped profile>"`` starts from that profile: the keys it gives replace
the shipped ones, the shipped settings are kept for the pairs and losses it runs; a GPU user turns
tuning on for ``cifar100-crd`` with ``base = "cifar100-crd"`` and a ``tuning`` table.

The keys are ``Profile``'s fields (``KEYS``), with its defaults but for these: ``REQUIRED``
ones have none, ``teacher_epochs`` defaults to ``epochs`` and ``sweep`` to no loss (each at its
paper's temperature; sweeping every loss would take ctkd to T = 1, which it refuses).
Everything is checked when the table is read: keys, types, registered names, loss patterns, the
pair of each pair setting, the name (no shipped profile's), the tuning grids, and every
configuration the profile expands to (its specs at one seed: a seed changes no check), its
losses' own constraints included. A mistake is a one-line ``KdbenchError`` naming the file, the
key and the valid choices, before any training.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kdbench.data import DATASETS
from kdbench.data.base import TEACHER_PREFIX
from kdbench.losses import LOSSES
from kdbench.matrix.config import find_first, read_table
from kdbench.matrix.profiles import PROFILES, Pair, Profile
from kdbench.matrix.toml_values import (
    Key,
    as_count,
    as_kind,
    as_list,
    as_registered,
    as_table,
    check_keys,
)
from kdbench.models.base import model_factory
from kdbench.recipes import RECIPES
from kdbench.registry import KdbenchError, Registry, did_you_mean
from kdbench.spec import PAIR_SEP, pair_name

TABLE = "tool.kdbench.profiles"
REQUIRED = ("dataset", "pairs", "recipe", "epochs")
KEYS = (
    "description",
    "dataset",
    "dataset_options",
    "pairs",
    "recipe",
    "epochs",
    "teacher_epochs",
    "batch_size",
    "seeds",
    "losses",
    "temperatures",
    "sweep",
    "loss_options",
    "pair_settings",
    "tuning",
    "tuning_seed",
    "paper_cases",
    "pair_epochs",
    "pair_losses",
    "channels_last",
    "base",
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a word for --kd-profile and job names


def find_profiles(*starts: Path) -> Path | None:
    """The nearest pyproject.toml with ``[tool.kdbench.profiles]`` from the first of the folders
    ``starts`` that has one in it or above it."""
    return find_first(TABLE, *starts)


def project_profiles(pyproject: Path | None) -> Registry:
    """The shipped profiles and the user's of ``pyproject`` (``None``: the shipped only), in
    one registry: ``get`` names them all when a name is unknown."""
    registry = Registry("profiles")
    for name in PROFILES:
        registry.register(name)(PROFILES.get(name))
    for profile in user_profiles(pyproject) if pyproject else ():
        registry.register(profile.name)(profile)
    return registry


def user_profiles(pyproject: Path) -> list[Profile]:
    """The profiles of ``[tool.kdbench.profiles]`` in ``pyproject``, each checked in full."""
    table = Key(pyproject, tuple(TABLE.split(".")))
    return [
        _profile(table / name, name, entry) for name, entry in read_table(pyproject, TABLE).items()
    ]


def _profile(at: Key, name: str, entry: Any) -> Profile:
    if not NAME.fullmatch(name):
        raise at.error(f"invalid profile name {name!r}: use letters, digits, '-', '_' and '.'")
    if name in PROFILES:
        raise at.error(
            f"the name {name!r} is taken by kdbench's shipped profile {name!r}: "
            f"rename yours; shipped: {', '.join(PROFILES.names())}"
        )
    entry = as_table(at, entry)
    check_keys(at, entry, KEYS, "unknown key {}")
    if "base" in entry:
        entry = _inherited(
            PROFILES.get(as_registered(at / "base", PROFILES.get, entry["base"])), entry
        )
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise at.error(f"missing key {missing[0]!r}: required: {', '.join(REQUIRED)}")
    dataset = as_registered(at / "dataset", DATASETS.get, entry["dataset"])
    fields: dict[str, Any] = {
        "description": as_kind(at / "description", entry.get("description", ""), ""),
        "dataset": dataset,
        "pairs": _pairs(at / "pairs", entry["pairs"]),
        "recipe": as_registered(at / "recipe", RECIPES.get, entry["recipe"]),
        "dataset_options": _dataset_options(
            at / "dataset_options", dataset, entry.get("dataset_options", {})
        ),
    }
    for key in ("epochs", "teacher_epochs", "batch_size", "seeds"):
        if key in entry:
            fields[key] = as_count(at / key, entry[key])
    if "tuning_seed" in entry:
        fields["tuning_seed"] = as_kind(at / "tuning_seed", entry["tuning_seed"], 0)
    if "paper_cases" in entry:
        fields["paper_cases"] = as_kind(at / "paper_cases", entry["paper_cases"], True)
    if "channels_last" in entry:
        fields["channels_last"] = tuple(
            as_registered(at / "channels_last" / i, model_factory, model)
            for i, model in enumerate(as_list(at / "channels_last", entry["channels_last"], True))
        )
    fields.setdefault("teacher_epochs", fields["epochs"])
    if "losses" in entry:
        fields["losses"] = _patterns(at / "losses", entry["losses"], LOSSES.names(), "loss")
    if "temperatures" in entry:
        fields["temperatures"] = _temperatures(at / "temperatures", entry["temperatures"])
    profile = Profile(name, **fields, sweep=())
    losses = profile.loss_names()
    if "sweep" in entry:
        profile = replace(
            profile,
            sweep=_patterns(
                at / "sweep", entry["sweep"], losses, "loss of this profile", empty=True
            ),
        )
    pairs = {pair_name(*pair): pair for pair in profile.pairs}
    settings = as_table(at / "pair_settings", entry.get("pair_settings", {}))
    check_keys(at / "pair_settings", settings, pairs, "pair {} is not in pairs")
    profile = replace(
        profile,
        loss_options=_loss_settings(at / "loss_options", entry.get("loss_options", {}), losses),
        pair_settings={
            pairs[key]: _loss_settings(at / "pair_settings" / key, value, losses)
            for key, value in settings.items()
        },
        tuning=_tuning(at / "tuning", entry.get("tuning", {})),
        pair_epochs={
            pairs[key]: as_count(at / "pair_epochs" / key, value)
            for key, value in _per_pair(at / "pair_epochs", entry, pairs).items()
        },
        pair_losses={
            pairs[key]: _patterns(at / "pair_losses" / key, value, LOSSES.names(), "loss")
            for key, value in _per_pair(at / "pair_losses", entry, pairs).items()
        },
    )
    try:
        profile.specs(("cpu",), seeds=1)
    except KdbenchError as exc:
        raise at.error(str(exc)) from None
    return profile


def _inherited(base: Profile, entry: dict) -> dict:
    """``entry`` with the keys it lacks taken from the shipped profile ``base``, as TOML writes
    them: a shipped profile with a tuning grid (``cifar100-crd`` with a few lines), fewer losses
    or pairs, other epochs. Inherited settings are kept for the pairs and losses it runs."""
    pairs = {
        item if isinstance(item, str) else PAIR_SEP.join(map(str, item))
        for item in entry.get("pairs", [pair_name(*p) for p in base.pairs])
    }
    patterns = [p for p in entry.get("losses", base.losses) if isinstance(p, str)]
    losses = {n for n in LOSSES.names() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}

    def kept(settings: Mapping[str, Mapping[str, Any]]) -> dict:
        return {loss: dict(v) for loss, v in settings.items() if loss in losses}

    inherited = {
        "description": base.description,
        "dataset": base.dataset,
        "dataset_options": dict(base.dataset_options),
        "pairs": [pair_name(*p) for p in base.pairs],
        "recipe": base.recipe,
        "epochs": base.epochs,
        "teacher_epochs": base.teacher_epochs,
        "batch_size": base.batch_size,
        "seeds": base.seeds,
        "losses": list(base.losses),
        "temperatures": list(base.temperatures),
        "sweep": [p for p in base.sweep if fnmatch.filter(losses, p)],
        "loss_options": kept(base.loss_options),
        "pair_settings": {
            pair_name(*pair): kept(settings)
            for pair, settings in base.pair_settings.items()
            if pair_name(*pair) in pairs
        },
        "tuning": {
            loss: {k: list(v) for k, v in grid.items()} for loss, grid in kept(base.tuning).items()
        },
        "tuning_seed": base.tuning_seed,
        "paper_cases": base.paper_cases,
        "pair_epochs": {
            pair_name(*p): e for p, e in base.pair_epochs.items() if pair_name(*p) in pairs
        },
        "pair_losses": {
            pair_name(*p): list(v) for p, v in base.pair_losses.items() if pair_name(*p) in pairs
        },
        "channels_last": list(base.channels_last),
    }
    return {**inherited, **{k: v for k, v in entry.items() if k != "base"}}


def _per_pair(at: Key, entry: dict, pairs: Mapping[str, Pair]) -> dict:
    """The table ``entry[at's key]`` keyed by pairs of the profile ("teacher/student")."""
    table = as_table(at, entry.get(str(at.keys[-1]), {}))
    check_keys(at, table, pairs, "pair {} is not in pairs")
    return table


def _pairs(at: Key, value: Any) -> tuple[Pair, ...]:
    """``["teacher/student", …]`` or ``[["teacher", "student"], …]``, registered models."""
    pairs: list[Pair] = []
    for i, item in enumerate(as_list(at, value)):
        if isinstance(item, str) and item.count(PAIR_SEP) == 1:
            pair = tuple(item.split(PAIR_SEP))
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(n, str) for n in item):
            pair = tuple(item)
        else:
            raise (at / i).error(
                f'a pair is "teacher{PAIR_SEP}student" or ["teacher", "student"], got {item!r}'
            )
        for model in pair:
            as_registered(at / i, model_factory, model)
        if pair in pairs:
            raise (at / i).error(f"pair {pair_name(*pair)!r} is listed twice")
        pairs.append(pair)  # type: ignore[arg-type]
    return tuple(pairs)


def _temperatures(at: Key, value: Any) -> tuple[float, ...]:
    temperatures: list[float] = []
    for i, t in enumerate(as_list(at, value)):
        if as_kind(at / i, t, 1.0) in temperatures:
            raise (at / i).error(f"temperature {t!r} is listed twice")
        temperatures.append(float(t))
    return tuple(temperatures)


def _patterns(
    at: Key, value: Any, names: list[str], what: str, empty: bool = False
) -> tuple[str, ...]:
    """Name patterns (``fnmatch``), each matching one of ``names`` at least."""
    patterns = as_list(at, value, empty)
    for i, pattern in enumerate(patterns):
        if not fnmatch.filter(names, as_kind(at / i, pattern, "")):
            raise (at / i).error(
                f"pattern {pattern!r} matches no {what}: "
                f"{did_you_mean(pattern, names)}valid: {', '.join(names)}"
            )
    return tuple(patterns)


def _dataset_options(at: Key, dataset: str, value: Any) -> tuple[tuple[str, Any], ...]:
    """The data set's keyword-only parameters, each of its default's kind, and each of them
    prefixed ``teacher_`` (the teacher's alone)."""
    own = {
        p.name: p.default
        for p in inspect.signature(DATASETS.get(dataset)).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    params = {**own, **{TEACHER_PREFIX + k: v for k, v in own.items()}}
    options = as_table(at, value)
    check_keys(at, options, params, f"unknown option {{}} of data set {dataset!r}")
    return tuple(sorted((k, as_kind(at / k, v, params[k])) for k, v in options.items()))


def _tuning(at: Key, value: Any) -> dict[str, dict[str, tuple[float, ...]]]:
    """loss → setting → values, each a number; what they may be is checked with the profile's
    cases (``kdbench.matrix.tuning.check``)."""
    return {
        loss: {
            key: tuple(
                as_kind(at / loss / key / i, v, 1.0)
                for i, v in enumerate(as_list(at / loss / key, values, empty=True))
            )
            for key, values in as_table(at / loss, grid).items()
        }
        for loss, grid in as_table(at, value).items()
    }


def _loss_settings(at: Key, value: Any, losses: list[str]) -> dict[str, dict[str, Any]]:
    """loss → settings (its options, ``temperature`` where it has one, ``alpha``,
    ``ce_weight``) for losses of the profile, each value of its default's kind."""
    out = {}
    for loss, table in as_table(at, value).items():
        if loss not in losses:
            as_registered(at / loss, LOSSES.get, loss)
            raise (at / loss).error(
                f"loss {loss!r} is not among this profile's losses: valid: {', '.join(losses)}"
            )
        cls = LOSSES.get(loss)
        defaults = {
            **cls.options,
            **({"temperature": 1.0} if cls.uses_temperature else {}),
            "alpha": 1.0,
            "ce_weight": 1.0,
        }
        settings = as_table(at / loss, table)
        check_keys(at / loss, settings, defaults, f"unknown setting {{}} of loss {loss!r}")
        out[loss] = {k: as_kind(at / loss / k, v, defaults[k]) for k, v in settings.items()}
    return out
