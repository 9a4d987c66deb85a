"""When a run will end: from the durations earlier runs recorded for the same case ids
(``metrics.train_s``), scaled to this run's pace, and from the running cases' own progress."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kdbench import results
from kdbench.observe.state import RunState
from kdbench.registry import KdbenchError


def known_durations(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """case_id → training seconds of its newest ok record."""
    return {
        r["case_id"]: float(r["metrics"]["train_s"])
        for r in records
        if r.get("status") == "ok" and isinstance(r["metrics"].get("train_s"), (int, float))
    }


def load_durations(paths: Iterable[Path]) -> dict[str, float]:
    """``known_durations`` of the records under ``paths`` (missing or unreadable: none)."""
    paths = [p for p in paths if p.exists()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return known_durations(results.read(paths).records) if paths else {}
    except (KdbenchError, OSError):
        return {}


def remaining(state: RunState, known: dict[str, float], now: float | None = None) -> float | None:
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
    ratios = [s / known[c] for c, s in last_stage.items() if s and known.get(c, 0) > 0]
    pace = statistics.median(ratios) if ratios else 1.0
    times = [s for s in last_stage.values() if s is not None]
    fallback = statistics.median(times) if times else None

    def estimate(case_id: str) -> float | None:
        return known[case_id] * pace if case_id in known else fallback

    total = 0.0
    for case in state.cases.values():
        if case.ended is not None:
            continue
        if case.started is None:
            guess = estimate(case.case_id)
        elif 0 < case.fraction < 1 and case.stage_started is not None:
            elapsed = now - case.stage_started
            guess = elapsed * (1 - case.fraction) / case.fraction
        else:
            guess = estimate(case.case_id)
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
