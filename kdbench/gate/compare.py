"""Baseline vs current records: noise-aware regression decisions (``kdbench compare``).

A case group (``group_id``: every spec field but the seed) of the baseline is matched with the
same group of the current run. Two checks decide; each counts a change only when it is both
**unlikely under seed noise** (a t-test at ``alpha``, scipy.stats) and **larger than the
metric's minimum effect** (points for accuracy-like metrics, percent of the baseline for the
others):

1. **The metric itself** (every gated metric): the per-seed values of the ``ok`` records of the
   two sides. Seeds present on both sides are paired (same seed = same student initialisation
   and data order; on the CPU identical code gives identical numbers): a paired t-test on the
   per-seed differences. Otherwise Welch's unequal-variance t-test. A side with one value, or
   values that are the same for every seed (a speed measured once per session), carries no
   noise estimate: the change must then exceed the metric's ``tolerance`` (default twice the
   minimum effect). Bit-identical values are "unchanged".
2. **The gain over ``ce``** (``RELATIVE`` metrics: top-1, agreement): for a distillation method,
   its per-seed gain over the ``ce`` student of the same pair, seed and setting, with its own
   significance level and minimum effects (``gain_alpha``, ``gain_min_effect``; default those
   of check 1). A method whose baseline gain was significant and whose current gain is
   significantly smaller has regressed, whatever the machine: this survives a runner change
   that shifts every absolute number. A method that became identical to ``ce`` on every seed
   (every gain exactly zero, where the baseline's were not) is a **no-op** whatever its gain:
   its distillation term stopped acting (same seed = same initialisation and data order, so a
   student trained by ``ce``'s objective alone matches ``ce`` to the bit).

A group whose ok seeds all became diverged or error is a regression (metric ``status``); the
reverse is an improvement. Groups only in the current run are "new"; groups only in the
baseline are "missing" and fail the gate (``Comparison.failed``) unless ``allow_missing`` (an
intentional subset: ``-k``, one shard).

Every decision says why, in words (``why``), and the report states what the seeds can detect:
the smallest change each metric would be flagged for at ``alpha`` with the seeds it has
(``detectable``).

API::

    thresholds = Thresholds.load()          # defaults ← [tool.kdbench.compare] ← overrides
    result = compare(baseline_records, current_records, thresholds, allow_missing=False)
    result.failed, result.has_regression    # bool
    result.metrics                          # one row per (case, check, metric): the decision
    result.cases                            # one row per case: regression/improvement/…
    result.to_markdown(); result.to_json()
    write_baseline(records, path)           # newest record per case, sorted: a refreshed baseline

``[tool.kdbench.compare]`` keys: ``alpha``, ``metrics`` (gated metrics), ``min_effect`` and
``tolerance`` (tables metric → points or percent), ``gain_alpha`` and ``gain_min_effect`` (the
gain over ce check's). Unusable input (no shared case, schema
mismatch, unknown metric) raises ``KdbenchError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.gate.comparison import Comparison
from kdbench.gate.decide import (
    BASELINE,
    Values,
    decide,
    decide_gain,
    gains,
    status_change,
)
from kdbench.gate.thresholds import RELATIVE, Thresholds
from kdbench.registry import KdbenchError
from kdbench.results import records_frame
from kdbench.spec import group_id_of


@dataclass
class Side:
    """One side of a comparison: per case group its name, ok counts and per-seed values, and
    the group of its ``ce`` student (same pair, seed set and setting)."""

    records: list[dict[str, Any]]
    frame: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        frame = records_frame(self.records)
        self.frame = frame.assign(ok=frame["status"].eq("ok"))

    def values(self, metrics: Iterable[str]) -> dict[tuple[str, str], Values]:
        """(group_id, metric) → {seed: value} of the ok records."""
        ok = self.frame[self.frame["ok"]]
        long = ok.melt(
            id_vars=["group_id", "seed"],
            value_vars=[m for m in metrics if m in ok],
            var_name="metric",
        ).dropna(subset=["value"])
        out: dict[tuple[str, str], Values] = {}
        for gid, seed, metric, value in long.itertuples(index=False):
            out.setdefault((gid, metric), {})[int(seed)] = float(value)
        return out

    def ce_groups(self) -> dict[str, str]:
        """group_id of every distillation method → group_id of its ``ce`` baseline: the same
        spec with the loss's own settings replaced by ce's."""
        from kdbench.losses import LOSSES

        ce_weight, alpha = LOSSES.get(BASELINE).weights()
        return {
            r["group_id"]: group_id_of(
                {
                    **r["spec"],
                    "loss": BASELINE,
                    "temperature": None,
                    "alpha": alpha,
                    "ce_weight": ce_weight,
                    "loss_options": {},
                }
            )
            for r in self.records
            if r["spec"]["loss"] != BASELINE
        }


def compare(
    baseline: list[dict[str, Any]],
    current: list[dict[str, Any]],
    thresholds: Thresholds | None = None,
    allow_missing: bool = False,
) -> Comparison:
    """Decide per case group, check and metric; see the module docstring."""
    th = thresholds or Thresholds()
    if not baseline or not current:
        raise KdbenchError(f"no records in the {'baseline' if not baseline else 'current run'}")
    base, cur = Side(baseline), Side(current)
    schemas = set(base.frame["schema"].dropna()) | set(cur.frame["schema"].dropna())
    if len(schemas) > 1:
        raise KdbenchError(
            f"schema mismatch: records of schema versions "
            f"{', '.join(map(str, sorted(schemas)))}: refresh the baseline"
        )
    shared = sorted(set(base.frame["group_id"]) & set(cur.frame["group_id"]))
    if not shared:
        raise KdbenchError(
            "no shared cases between baseline and current run "
            "(cases match by every spec field but the seed)"
        )
    names = (
        pd.concat([cur.frame, base.frame]).drop_duplicates("group_id").set_index("group_id")["name"]
    )
    case_name = names.str.replace(r"-s\d+$", "", regex=True)
    bv, cv = base.values(th.metrics), cur.values(th.metrics)
    ok_b = base.frame.groupby("group_id")["ok"].agg(["sum", "size"])
    ok_c = cur.frame.groupby("group_id")["ok"].agg(["sum", "size"])
    rows = []
    for gid in shared:
        status = status_change(*ok_b.loc[gid], *ok_c.loc[gid])
        if status:
            rows.append({"group_id": gid, "metric": "status", **status})
    lost = {r["group_id"] for r in rows}
    rows += [
        {"group_id": gid, "metric": metric, **decide(bv[gid, metric], cv[gid, metric], metric, th)}
        for gid, metric in sorted(bv.keys() & cv.keys())
        if gid not in lost
    ]
    ce_of = base.ce_groups()
    for gid in (g for g in shared if g in ce_of and g not in lost):
        for metric in (m for m in RELATIVE if m in th.metrics):
            ce = ce_of[gid]
            if {(gid, metric), (ce, metric)} <= bv.keys() & cv.keys():
                row = decide_gain(
                    gains(bv[gid, metric], bv[ce, metric]),
                    gains(cv[gid, metric], cv[ce, metric]),
                    metric,
                    th,
                )
                if row:
                    rows.append({"group_id": gid, "metric": metric, **row})
    metrics = pd.DataFrame(
        rows,
        columns=[
            "group_id",
            "check",
            "metric",
            "baseline",
            "baseline_std",
            "baseline_n",
            "current",
            "current_std",
            "current_n",
            "delta",
            "effect",
            "unit",
            "p",
            "test",
            "detectable",
            "decision",
            "why",
        ],
    )
    metrics.insert(0, "case", metrics["group_id"].map(case_name))
    per_case = metrics.groupby("group_id")["decision"].agg(
        lambda d: (
            "regression"
            if d.eq("regression").any()
            else "improvement"
            if d.eq("improvement").any()
            else "unchanged"
        )
    )
    only = pd.Series(
        {
            **{g: "new" for g in set(cur.frame["group_id"]) - set(shared)},
            **{g: "missing" for g in set(base.frame["group_id"]) - set(shared)},
        },
        dtype=object,
    )
    decisions = pd.concat([per_case, only]).rename("decision")
    cases = decisions.rename_axis("group_id").reset_index()
    cases.insert(0, "case", cases["group_id"].map(case_name))
    return Comparison(
        metrics=metrics,
        cases=cases.sort_values("case", ignore_index=True),
        thresholds=th,
        allow_missing=allow_missing,
    )


def write_baseline(records: Iterable[dict[str, Any]], path: Path | str) -> int:
    """Write the newest record of every case, sorted by name: a refreshed baseline. Returns the
    number of records written."""
    from kdbench.results import newest

    latest, _ = newest(records)
    lines = [
        json.dumps(r, sort_keys=True)
        for r in sorted(latest, key=lambda r: (r.get("name") or "", r["case_id"]))
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return len(lines)
