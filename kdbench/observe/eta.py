"""When a run will end: from the durations earlier runs recorded for the same cases
(``metrics.train_s``; a case never run before: the median of its tuning key's records, its
other seeds and settings), scaled to this run's pace, and from the running cases' own
progress."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench import results
from kdbench.matrix.tuning import tuning_key
from kdbench.observe.state import CaseState, RunState
from kdbench.registry import KdbenchError


@dataclass
class Durations:
    """Training seconds of earlier records: per case id (its newest ok record) and per tuning
    key (the median of the key's ok records: the same training at other seeds and settings)."""

    cases: dict[str, float] = field(default_factory=dict)
    keys: dict[str, float] = field(default_factory=dict)

    def of(self, case: CaseState) -> float | None:
        return self.cases.get(case.case_id, self.keys.get(case.key or ""))


def known_durations(records: Iterable[dict[str, Any]]) -> Durations:
    """The ``Durations`` of ok records with a ``train_s``."""
    cases: dict[str, float] = {}
    keys: dict[str, list[float]] = {}
    for r in records:
        train_s = r["metrics"].get("train_s")
        if r.get("status") == "ok" and isinstance(train_s, (int, float)):
            cases[r["case_id"]] = float(train_s)
            keys.setdefault(tuning_key(r["spec"]), []).append(float(train_s))
    return Durations(cases, {k: statistics.median(v) for k, v in keys.items()})


def load_durations(paths: Iterable[Path]) -> Durations:
    """``known_durations`` of the records under ``paths`` (missing or unreadable: none)."""
    paths = [p for p in paths if p.exists()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return known_durations(results.read(paths).records) if paths else Durations()
    except (KdbenchError, OSError):
        return Durations()


def remaining(state: RunState, known: Durations, now: float | None = None) -> float | None:
    """Seconds until the run's cases are done, or None when nothing tells yet.

    A pending case takes its earlier duration times this run's pace (the median ratio, over the
    cases done here that have one, of the time from their last stage's start to their end — a
    worker's first case also loads data and trains or loads teachers — to their earlier
    duration), else the median of that time over the cases done here (their wall time where
    they reported no stage). A running case takes what its stage's pace leaves
    (elapsed × (1 − f) / f), else its estimate less its elapsed time. The sum is shared by the
    run's processes.
    """
    now = time.time() if now is None else now
    done = state.done()
    last_stage = {
        c.case_id: c.ended - c.stage_started if c.stage_started is not None else c.seconds
        for c in done
        if c.ended is not None and c.outcome != "skipped"
    }
    earlier = {c: known.of(state.cases[c]) for c in last_stage}
    ratios = [s / e for c, s in last_stage.items() if s and (e := earlier[c])]
    pace = statistics.median(ratios) if ratios else 1.0
    times = [s for s in last_stage.values() if s is not None]
    fallback = statistics.median(times) if times else None

    def estimate(case: CaseState) -> float | None:
        e = known.of(case)
        return fallback if e is None else e * pace

    total = 0.0
    for case in state.cases.values():
        if case.ended is not None:
            continue
        if case.started is None:
            guess = estimate(case)
        elif 0 < case.fraction < 1 and case.stage_started is not None:
            elapsed = now - case.stage_started
            guess = elapsed * (1 - case.fraction) / case.fraction
        else:
            guess = estimate(case)
            guess = None if guess is None else max(0.0, guess - (now - case.started))
        if guess is None:
            return None
        total += guess
    return total / state.workers()


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    )
