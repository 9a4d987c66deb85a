"""An equal tuning budget, chosen on validation.

A profile may declare a tuning grid per method (``Profile.tuning``: loss → setting → a few
values; a setting is ``temperature``, ``alpha``, ``ce_weight`` or one of the loss's options) and
a tuning seed. Its cases are then, for every pair:

- the **trials** (spec ``tune="trial"``, ids ``…-kd-tune-T4-a0.9-c0.1-cpu-s100``, marker
  ``tuning``): every grid point of every method, on the tuning seed;
- the **tuned** cases (``tune="tuned"``, ids ``…-kd-tuned-cpu-s0``, marker ``tuned``): the
  setting whose trial has the best *validation* top-1, on the profile's seeds; ``ce``, which has
  nothing to tune, runs as it is, so that the tuned table has its baseline;
- the profile's plain cases at the paper's settings, as without tuning (same ids).

Every method with a teacher has a grid, every grid the same number of trials, and every grid
the method's paper setting (the profile's setting for the pair, else the loss's default): a
profile that breaks one of these fails with one line when its cases are made (``check``).

A tuned case's id names no setting: at run time it reads the records of its trials from the
results folder (``resolve``), runs the chosen setting and records it in its spec, with the trial
case ids it chose among under ``tuning`` in its record. The choice is a function of those
records only (``choose``, ``choices``). Trials come first in the collection order; under
``pytest -n`` a tuned case whose trials are still running on another worker waits for their
records. Two steps work too: ``pytest -m tuning`` then ``pytest -m "not tuning" --kd-resume``.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from kdbench.losses import LOSSES
from kdbench.registry import KdbenchError, did_you_mean
from kdbench.spec import RunSpec, stable_hash

WEIGHTS = ("temperature", "alpha", "ce_weight")  # the settings besides a loss's own options
MAX_TRIALS = 8  # "a few values": a grid of more points is refused
CRITERION = "val_top1"  # what a trial is chosen by: never the test split
POLL_S = 2.0  # how often a tuned case looks for the records of trials still running

Grid = Mapping[str, tuple[float, ...]]
Setting = dict[str, Any]


def points(grid: Grid) -> list[dict[str, float]]:
    """Every grid point, settings in name order, values in the grid's order."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def paper_setting(
    loss: str, settings: Mapping[str, float], keys: Iterable[str]
) -> dict[str, float]:
    """The values of ``keys`` that a case of ``loss`` runs at without tuning: the profile's
    ``settings`` for the pair, else the loss's defaults (the paper's)."""
    cls = LOSSES.get(loss)
    ce_weight, alpha = cls.weights(settings.get("alpha"))
    known = {
        **cls.options,
        "alpha": alpha,
        "ce_weight": ce_weight,
        **({"temperature": cls.default_temperature} if cls.uses_temperature else {}),
        **settings,
    }
    return {k: known[k] for k in keys}


def check(
    tuning: Mapping[str, Grid],
    seed: Any,
    losses: list[str],
    pair_settings: Callable[[str], Iterable[tuple[str, Mapping[str, float]]]],
) -> None:
    """A one-line ``KdbenchError`` for a grid that cannot give every method the same budget:
    an unknown loss or setting, an empty grid, a value twice or not a number, more than
    ``MAX_TRIALS`` points, a method with a teacher and no grid, unequal trial counts, or a grid
    without the paper setting of a pair (``pair_settings(loss)``: (pair name, settings))."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise KdbenchError(f"tuning: invalid tuning seed {seed!r}: must be an integer ≥ 0")
    trials: dict[str, int] = {}
    for loss, grid in tuning.items():
        if loss not in losses:
            raise KdbenchError(
                f"tuning: loss {loss!r} is not among this profile's losses: "
                f"{did_you_mean(loss, losses)}valid: {', '.join(losses)}"
            )
        cls = LOSSES.get(loss)
        if not cls.needs_teacher:
            raise KdbenchError(
                f"tuning: loss {loss!r} trains without a teacher: it has nothing to tune"
            )
        valid = [*(WEIGHTS if cls.uses_temperature else WEIGHTS[1:]), *sorted(cls.options)]
        if not grid:
            raise KdbenchError(
                f"tuning: loss {loss!r} has an empty grid: give a setting and "
                f"its values, the paper's among them"
            )
        for key, values in grid.items():
            if key not in valid:
                raise KdbenchError(
                    f"tuning: unknown setting {key!r} of loss {loss!r}: "
                    f"{did_you_mean(key, valid)}valid: {', '.join(valid)}"
                )
            if not values:
                raise KdbenchError(
                    f"tuning: {loss}.{key}: empty grid: give the paper's value and a few others"
                )
            for value in values:
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                ):
                    raise KdbenchError(f"tuning: {loss}.{key}: {value!r} is not a finite number")
            twice = [v for i, v in enumerate(values) if v in values[:i]]
            if twice:
                raise KdbenchError(f"tuning: {loss}.{key}: value {twice[0]:g} is listed twice")
        for pair, settings in pair_settings(loss):
            for key, value in paper_setting(loss, settings, grid).items():
                if value not in grid[key]:
                    raise KdbenchError(
                        f"tuning: {loss}.{key}: the grid {', '.join(f'{v:g}' for v in grid[key])}"
                        f" lacks the paper setting {value:g} of pair {pair}: add it, so that "
                        f"tuning can keep it"
                    )
        trials[loss] = len(points(grid))
        if trials[loss] > MAX_TRIALS:
            raise KdbenchError(
                f"tuning: loss {loss!r} has {trials[loss]} trials, more than "
                f"{MAX_TRIALS}: a few values per setting"
            )
    if not tuning:
        return
    untuned = [n for n in losses if LOSSES.get(n).needs_teacher and n not in tuning]
    if untuned:
        raise KdbenchError(
            f"tuning: loss {untuned[0]!r} of the profile has no grid: every "
            f"method gets the same tuning budget (give it a grid of "
            f"{next(iter(trials.values()))} trials, or leave it out of losses)"
        )
    counts = sorted(trials.items(), key=lambda kv: kv[1])
    (low, n_low), (high, n_high) = counts[0], counts[-1]
    if n_low != n_high:
        raise KdbenchError(
            f"tuning: unequal budgets: {low!r} has {n_low} trials, {high!r} has "
            f"{n_high}: every method gets the same number of trials"
        )


VARIED = ("seed", "temperature", "alpha", "ce_weight", "loss_options", "tune")  # within a tuning


def tuning_key(spec: Mapping[str, Any]) -> str:
    """What the trials of one method on one pair and their tuned cases share (a record's spec
    or ``RunSpec.to_dict()``): every field but the setting, the seed and the stage."""
    return stable_hash({k: v for k, v in spec.items() if k not in VARIED})


def tuned_case(spec: Mapping[str, Any]) -> tuple[str, Any] | None:
    """What a tuned case is whatever setting it ran at (its id: the tuning key and the seed);
    None for any other case."""
    return (tuning_key(spec), spec.get("seed")) if spec.get("tune") == "tuned" else None


def setting(spec: Mapping[str, Any]) -> Setting:
    """The tunable part of a spec (a record's or ``RunSpec.to_dict()``)."""
    return {
        "temperature": spec.get("temperature"),
        "alpha": spec.get("alpha"),
        "ce_weight": spec.get("ce_weight"),
        "loss_options": dict(spec.get("loss_options", {})),
    }


def rank(criterion: float, spec: Mapping[str, Any]) -> tuple[float, str]:
    """The order trials are chosen in (smallest first): the best ``CRITERION``, ties to the
    setting first in JSON order."""
    return -criterion, json.dumps(setting(spec), sort_keys=True)


def choose(trials: Iterable[Mapping[str, Any]]) -> Setting | None:
    """The setting of the trial record with the best validation top-1 among the ``ok`` ones
    (a diverged trial loses; ties go to the setting first in JSON order); None when no trial
    finished ok. Test top-1 is never read."""
    ok = [r for r in trials if r["status"] == "ok"]
    if not ok:
        return None
    best = min(ok, key=lambda r: rank(r["metrics"][CRITERION], r["spec"]))
    return setting(best["spec"])


def choices(records: Iterable[Mapping[str, Any]]) -> dict[str, Setting | None]:
    """``tuning_key`` → the chosen setting, from the trial records among ``records``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if r["spec"].get("tune") == "trial":
            groups.setdefault(tuning_key(r["spec"]), []).append(r)
    return {key: choose(group) for key, group in groups.items()}


def trials_of(spec: RunSpec, specs: Iterable[RunSpec]) -> list[RunSpec]:
    """The trials among ``specs`` whose choice the tuned case ``spec`` runs."""
    key = tuning_key(spec.to_dict())
    return [s for s in specs if s.tune == "trial" and tuning_key(s.to_dict()) == key]


def resolve(
    spec: RunSpec,
    trials: list[RunSpec],
    recorded: Callable[[], Mapping[str, Mapping[str, Any]]],
    pending: set[str],
    wait: bool,
) -> tuple[RunSpec, dict[str, Any]]:
    """The tuned case ``spec`` at the setting its ``trials`` chose, and what the record keeps of
    the choice (the trial case ids, the criterion, the setting; None: no trial finished ok, the
    case runs at the paper setting). ``recorded()``: case id → record of the results folder;
    a trial without a record must be one of ``pending`` (selected in this session, not run
    yet), whose records it waits for when ``wait`` (other workers run them)."""
    ids = [t.case_id for t in trials]
    while True:
        records = recorded()
        missing = [t for t in trials if t.case_id not in records]
        if not missing:
            break
        trial = missing[0]
        if trial.case_id not in pending:
            raise KdbenchError(
                f"{spec.name}: its tuning trial {trial.name} has no record and is "
                f"not selected: run the trials first (pytest -m tuning), in the "
                f"same --kd-results"
            )
        if not wait:
            raise KdbenchError(
                f"{spec.name}: its tuning trial {trial.name} has not run yet: "
                f"trials run before tuned cases (keep the collection order)"
            )
        time.sleep(POLL_S)
    failed = [records[i] for i in ids if records[i]["status"] == "error"]
    if failed:
        raise KdbenchError(
            f"{spec.name}: its tuning trial {failed[0].get('name')} ended in an "
            f"error: no choice is made on a failed trial; rerun it"
        )
    choice = choose(records[i] for i in ids)
    info = {"trials": ids, "criterion": CRITERION, "chosen": choice}
    if choice is None:
        return spec, info
    return replace(
        spec,
        temperature=choice["temperature"],
        alpha=choice["alpha"],
        ce_weight=choice["ce_weight"],
        loss_options=tuple(sorted(choice["loss_options"].items())),
    ), info
