"""Whether a run's students are converged: ``ce`` (the student alone) at its E epochs against
``ce`` of the same setting at 2E, over seeds. A student is converged where the mean test top-1
at E is within ``TOLERANCE`` points of the mean at 2E (issue 20). Records of both runs may lie
in one report's input (``fashion-tuned`` and ``fashion-tuned-2x``): ``split`` takes the 2E runs
out of the leaderboards and ``table`` sets them against the E runs, one row per pair."""

from __future__ import annotations

import pandas as pd

from kdbench.publish.summary import SETTING_KEYS, summarize
from kdbench.spec import pair_name

TOLERANCE = 0.5  # points of test top-1
# what the E and 2E runs of one student share: every setting but the epochs and the tuning stage
# (the E runs of a tuned profile are its tuned `ce` cases, the 2E runs plain ones)
SAME = ("teacher", "student", *(k for k in SETTING_KEYS if k not in ("epochs", "tune")))


def _ok_ce(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty or "loss" not in frame:
        return frame.iloc[:0]
    ce = frame[frame["loss"].eq("ce") & frame["status"].eq("ok")]
    return ce.assign(**{k: ce[k].map(str) for k in SAME if k in ce})  # None, dicts: keys


def _doubled(frame: pd.DataFrame) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(ce at E, ce at 2E) of each setting that has both."""
    ce = _ok_ce(frame)
    keys = [k for k in SAME if k in ce]
    pairs = []
    for _, rows in ce.groupby(keys, sort=True) if len(ce) else ():
        epochs = sorted(set(rows["epochs"]))
        for e in epochs:
            if 2 * e in epochs:
                pairs.append((rows[rows["epochs"].eq(e)], rows[rows["epochs"].eq(2 * e)]))
    return pairs


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(``frame`` without the 2E runs of ``ce``, the convergence table)."""
    doubled = _doubled(frame)
    longer = {i for _, twice in doubled for i in twice.index}
    return frame.drop(index=sorted(longer)), table(doubled)


def leaderboard_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """What every format's leaderboards and plots are made of: ``summarize`` of ``frame``
    without the 2E runs of ``ce`` (they are the convergence table's)."""
    return summarize(split(frame)[0])


def _mean_std(rows: pd.DataFrame) -> str:
    top1 = rows["top1"].astype(float)
    std = top1.std() if len(top1) > 1 else float("nan")
    return f"{top1.mean():.2f} ± {std:.2f} ({len(top1)})"


def table(doubled: list[tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """One row per student: epochs, ``ce``'s test top-1 at E and at 2E (mean ± std (seeds)),
    the gain from doubling and whether it is within ``TOLERANCE``."""
    rows = []
    for once, twice in doubled:
        first = once.iloc[0]
        gain = twice["top1"].astype(float).mean() - once["top1"].astype(float).mean()
        rows.append(
            {
                "pair": pair_name(first["teacher"], first["student"]),
                "epochs E": f"{int(first['epochs'])}",
                "ce at E": _mean_std(once),
                "ce at 2E": _mean_std(twice),
                "2E − E": f"{gain:+.2f}",
                "converged": "yes" if abs(gain) <= TOLERANCE else "no",
            }
        )
    return pd.DataFrame(rows)


def heading() -> str:
    return (
        f"## Convergence — `ce` test top-1 at the run's epochs E and at 2E; converged: within "
        f"{TOLERANCE:g} points"
    )
