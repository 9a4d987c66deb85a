"""Baseline vs current records: noise-aware regression decisions (``kdbench compare``).

A case group (``group_id``: every spec field but the seed) of the baseline is matched with the
same group of the current run. For every gated metric the per-seed values of ``ok`` records of
both sides are compared; a change counts only when it is both

- **unlikely under seed noise**: Welch's t-test on the per-seed values, two-sided p < ``alpha``
  (default 0.01); when a side has a single seed, the change must exceed the metric's
  ``tolerance`` instead (default twice the minimum effect), and
- **larger than the minimum effect**: in points for accuracy-like metrics (``top1`` 1.0,
  ``agreement`` 1.0), in percent of the baseline mean for the others (throughput, latency,
  memory 15; params and FLOPs 0, as they do not depend on the seed).

Bit-identical per-seed values are "unchanged". A group whose ok seeds all became diverged or
error is a regression (metric ``status``); the reverse is an improvement. Groups only in the
current run are "new"; groups only in the baseline are "missing" and fail the gate
(``Comparison.failed``) unless ``allow_missing`` (an intentional subset: ``-k``, one shard).

API::

    thresholds = Thresholds.load(pyproject="pyproject.toml",        # [tool.kdbench.compare]
                                 min_effect={"top1": 0.5}, alpha=None, metrics=None)
    result = compare(baseline_records, current_records, thresholds)  # -> Comparison
    result.has_regression      # bool
    result.metrics             # DataFrame: one row per (case, metric) with the decision
    result.cases               # DataFrame: one row per case: regression/improvement/unchanged/
                               #            new/missing
    result.to_markdown(); result.to_json(); result.to_dict()
    compare_paths(["results/baseline.jsonl"], ["results/runs"], thresholds)  # loads, checks
    write_baseline(records, path)   # newest record per case, sorted: a refreshed baseline

``[tool.kdbench.compare]`` keys: ``alpha``, ``metrics`` (list of gated metrics),
``min_effect`` and ``tolerance`` (tables metric → points or percent). Unusable input (missing
file, no shared case, schema mismatch, unknown metric) raises ``KdbenchError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from kdbench.config import find_pyproject, read_table
from kdbench.registry import KdbenchError
from kdbench.report import fmt_num, markdown
from kdbench.results import load_records, records_frame

# metric → (direction: +1 higher is better, −1 lower is better; unit of its thresholds)
DIRECTIONS: dict[str, tuple[int, str]] = {
    "top1": (1, "points"), "top5": (1, "points"), "best_top1": (1, "points"),
    "agreement": (1, "points"),
    "train_throughput": (1, "%"), "infer_throughput": (1, "%"),
    "latency_ms": (-1, "%"), "peak_mem_mb": (-1, "%"), "train_s": (-1, "%"),
    "student_params": (-1, "%"), "extra_params": (-1, "%"), "student_flops": (-1, "%"),
}
GATED = ("top1", "agreement", "train_throughput", "infer_throughput", "latency_ms",
         "peak_mem_mb", "student_params", "extra_params", "student_flops")
MIN_EFFECT = {"top1": 1.0, "top5": 1.0, "best_top1": 1.0, "agreement": 1.0,
              "train_throughput": 15.0, "infer_throughput": 15.0, "latency_ms": 15.0,
              "peak_mem_mb": 15.0, "train_s": 15.0,
              "student_params": 0.0, "extra_params": 0.0, "student_flops": 0.0}
TABLE = "tool.kdbench.compare"
DECISIONS = ("regression", "improvement", "unchanged", "new", "missing")


# ---------------------------------------------------------------- statistics

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0 or x >= 1.0:
        return float(x >= 1.0)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's unequal-variance t-test (each side ≥ 2 values); NaN when
    neither side varies (a value measured once and shared by the seeds): no noise estimate,
    so the caller falls back to the one-measurement tolerance."""
    if np.all(a == a[0]) and np.all(b == b[0]):  # (a float variance here is rounding noise)
        return 1.0 if a[0] == b[0] else math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = b.mean() - a.mean()
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return betainc(df / 2.0, 0.5, df / (df + t * t))


# ---------------------------------------------------------------- thresholds

def _check_metrics(names: Iterable[str], what: str) -> None:
    for name in names:
        if name not in DIRECTIONS:
            raise KdbenchError(f"unknown metric {name!r} in {what}: valid: "
                               f"{', '.join(DIRECTIONS)}")


@dataclass(frozen=True)
class Thresholds:
    """What counts as a change: significance level, minimum effects, one-seed tolerances."""

    alpha: float = 0.01
    metrics: tuple[str, ...] = GATED
    min_effect: dict[str, float] = field(default_factory=lambda: dict(MIN_EFFECT))
    tolerance: dict[str, float] = field(default_factory=dict)  # default 2 × min_effect

    def tolerance_for(self, metric: str) -> float:
        return self.tolerance.get(metric, 2.0 * self.min_effect[metric])

    def updated(self, alpha: float | None = None, metrics: Iterable[str] | None = None,
                min_effect: dict[str, float] | None = None,
                tolerance: dict[str, float] | None = None) -> "Thresholds":
        for what, names in (("metrics", metrics or ()), ("min_effect", min_effect or {}),
                            ("tolerance", tolerance or {})):
            _check_metrics(names, what)
        if alpha is not None and not 0.0 < alpha < 1.0:
            raise KdbenchError(f"invalid alpha {alpha!r}: must be in (0, 1)")
        return replace(
            self, alpha=self.alpha if alpha is None else float(alpha),
            metrics=self.metrics if metrics is None else tuple(metrics),
            min_effect={**self.min_effect, **(min_effect or {})},
            tolerance={**self.tolerance, **(tolerance or {})})

    @classmethod
    def load(cls, where: Path | str | None = None, **overrides: Any) -> "Thresholds":
        """Defaults, then ``[tool.kdbench.compare]`` of the project's pyproject.toml, then
        ``overrides`` (keyword arguments of ``updated``; the command line). ``where`` is a
        pyproject.toml, or a folder to look from (default: the current one): the nearest
        pyproject.toml with that table in it or above it (``find_pyproject``)."""
        start = Path(where or ".")
        if not start.exists():
            raise KdbenchError(f"no config file or folder at {str(start)!r}: give a "
                               f"pyproject.toml with [tool.kdbench.compare]")
        path = start if start.is_file() else find_pyproject(start, TABLE)
        config = read_table(path, TABLE) if path else {}
        unknown = sorted(set(config) - {"alpha", "metrics", "min_effect", "tolerance"})
        if unknown:
            raise KdbenchError(f"unknown key {unknown[0]!r} in [tool.kdbench.compare]: valid: "
                               "alpha, metrics, min_effect, tolerance")
        return cls().updated(**config).updated(**overrides)


def parse_assignments(items: Iterable[str], what: str) -> dict[str, float]:
    """``["top1=0.5", "infer_throughput=20%"]`` → ``{"top1": 0.5, "infer_throughput": 20.0}``."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value.strip().rstrip("%"))
        except ValueError:
            raise KdbenchError(f"invalid {what} {item!r}: expected METRIC=NUMBER, "
                               "e.g. top1=1.0 or infer_throughput=15") from None
    return out


# ---------------------------------------------------------------- decision

def _decide(base: np.ndarray, cur: np.ndarray, metric: str, th: Thresholds) -> dict[str, Any]:
    """One metric of one case; ``base`` and ``cur`` are the sorted per-seed values."""
    direction, unit = DIRECTIONS[metric]
    delta = cur.mean() - base.mean()
    if unit == "points":
        effect = delta
    elif base.mean():
        effect = 100.0 * delta / abs(base.mean())
    else:
        effect = math.copysign(math.inf, delta) if delta else 0.0
    p = welch_p(base, cur) if min(len(base), len(cur)) >= 2 else math.nan
    if np.array_equal(base, cur):
        decision, why = "unchanged", "bit-identical"
    elif abs(effect) <= th.min_effect[metric]:
        decision, why = "unchanged", "below minimum effect"
    elif math.isnan(p) and abs(effect) <= th.tolerance_for(metric):
        decision, why = "unchanged", "within one-seed tolerance"
    elif not math.isnan(p) and p >= th.alpha:
        decision, why = "unchanged", "within seed noise"
    else:
        decision = "improvement" if direction * delta > 0 else "regression"
        why = "one seed: beyond tolerance" if math.isnan(p) else "significant"
    return {"baseline": base.mean(), "baseline_std": base.std(ddof=1) if len(base) > 1 else
            math.nan, "baseline_n": len(base), "current": cur.mean(),
            "current_std": cur.std(ddof=1) if len(cur) > 1 else math.nan, "current_n": len(cur),
            "delta": delta, "effect": effect, "unit": unit, "p": p, "decision": decision,
            "why": why}


def _status_change(base_ok: int, base_n: int, cur_ok: int, cur_n: int) -> dict[str, Any] | None:
    """A group that lost (or regained) every ok seed: decided on its status alone."""
    if (base_ok == 0) == (cur_ok == 0):
        return None
    return {"baseline": base_ok, "baseline_n": base_n, "current": cur_ok, "current_n": cur_n,
            "unit": "ok seeds",
            "decision": "regression" if cur_ok == 0 else "improvement",
            "why": "no ok seed left" if cur_ok == 0 else "ok again"}


def _sides(records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = records_frame(records)
    return frame.assign(ok=frame["status"].eq("ok"))


def _values(side: pd.DataFrame, metrics: Iterable[str]) -> dict[tuple[str, str], np.ndarray]:
    """(group_id, metric) → sorted per-seed values of the ok records."""
    ok = side[side["ok"]]
    cols = [m for m in metrics if m in ok]
    gids, values = ok["group_id"].to_numpy(), ok[cols].to_numpy(float)
    out = {}
    for gid in np.unique(gids):
        for metric, column in zip(cols, values[gids == gid].T):
            column = np.sort(column[~np.isnan(column)])
            if len(column):
                out[gid, metric] = column
    return out


@dataclass
class Comparison:
    metrics: pd.DataFrame  # one row per (group_id, metric)
    cases: pd.DataFrame  # one row per group_id
    thresholds: Thresholds
    allow_missing: bool = False  # baseline cases absent from the current run do not fail

    @property
    def has_regression(self) -> bool:
        return bool(self.cases["decision"].eq("regression").any())

    @property
    def has_missing(self) -> bool:
        return bool(self.cases["decision"].eq("missing").any())

    @property
    def failed(self) -> bool:
        """The gate's verdict: a regression, or baseline cases the current run lacks (unless
        they are allowed: an intentional subset)."""
        return self.has_regression or (self.has_missing and not self.allow_missing)

    def verdict(self) -> str:
        missing = self.counts()["missing"]
        if self.has_regression:
            return "REGRESSION"
        if missing and not self.allow_missing:
            return (f"FAILED: {missing} baseline case(s) missing from the current run "
                    f"(a lost shard or a subset? --allow-missing decides on what ran)")
        return "no regression" + (f" ({missing} baseline case(s) not run, allowed)"
                                  if missing else "")

    def counts(self) -> dict[str, int]:
        counts = self.cases["decision"].value_counts()
        return {d: int(counts.get(d, 0)) for d in DECISIONS}

    def to_dict(self) -> dict[str, Any]:
        def rows(df: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(df.to_json(orient="records"))

        return {"has_regression": self.has_regression, "failed": self.failed,
                "allow_missing": self.allow_missing, "counts": self.counts(),
                "thresholds": {"alpha": self.thresholds.alpha,
                               "metrics": list(self.thresholds.metrics),
                               "min_effect": self.thresholds.min_effect,
                               "tolerance": {m: self.thresholds.tolerance_for(m)
                                             for m in self.thresholds.metrics}},
                "cases": rows(self.cases), "changes": rows(self.metrics)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        counts = self.counts()
        verdict = f"**{self.verdict()}**" if self.failed else self.verdict()
        lines = [f"### kdbench compare: {verdict}", "",
                 " · ".join(f"{n} {d}" for d, n in counts.items()), ""]
        changed = self.metrics[self.metrics["decision"].isin(["regression", "improvement"])]
        for decision in ("regression", "improvement"):
            rows = changed[changed["decision"].eq(decision)]
            if len(rows):
                lines += [f"#### {decision.capitalize()}s", "", markdown(_change_table(rows)), ""]
        for decision in ("unchanged", "new", "missing"):
            names = self.cases.loc[self.cases["decision"].eq(decision), "case"]
            if len(names):
                lines += [f"#### {decision.capitalize()} ({len(names)})", "",
                          ", ".join(f"`{n}`" for n in sorted(names)), ""]
        th = self.thresholds
        lines.append(f"Welch t-test at α = {th.alpha:g}; minimum effects: " + ", ".join(
            f"{m} {th.min_effect[m]:g} {DIRECTIONS[m][1]}" for m in th.metrics) + ".")
        return "\n".join(lines) + "\n"


def _change_table(rows: pd.DataFrame) -> pd.DataFrame:
    def cell(mean: float, std: float, n: float, unit: str) -> str:
        if unit == "ok seeds":
            return f"{mean:.0f}/{n:.0f} ok"
        spread = "" if pd.isna(std) else f" ± {fmt_num(std)}"
        return f"{fmt_num(mean)}{spread} ({n:.0f})"

    def side(mean: pd.Series, std: pd.Series, n: pd.Series) -> pd.Series:
        return pd.Series(list(map(cell, mean, std, n, rows["unit"])), index=rows.index)

    return pd.DataFrame({
        "case": rows["case"], "metric": rows["metric"],
        "baseline": side(rows["baseline"], rows["baseline_std"], rows["baseline_n"]),
        "current": side(rows["current"], rows["current_std"], rows["current_n"]),
        "change": [f"{e:+.2f} {u}" if not pd.isna(e) else "" for e, u in
                   zip(rows["effect"], rows["unit"])],
        "p": rows["p"].map(lambda p: "" if pd.isna(p) else f"{p:.2g}"),
        "why": rows["why"],
    })


def compare(baseline: list[dict[str, Any]], current: list[dict[str, Any]],
            thresholds: Thresholds | None = None, allow_missing: bool = False) -> Comparison:
    """Decide per case group and metric; see the module docstring."""
    th = thresholds or Thresholds()
    if not baseline or not current:
        raise KdbenchError(f"no records in the {'baseline' if not baseline else 'current run'}")
    base, cur = _sides(baseline), _sides(current)
    schemas = set(base["schema"].dropna()) | set(cur["schema"].dropna())
    if len(schemas) > 1:
        raise KdbenchError(f"schema mismatch: records of schema versions "
                           f"{', '.join(map(str, sorted(schemas)))}: refresh the baseline")
    shared = sorted(set(base["group_id"]) & set(cur["group_id"]))
    if not shared:
        raise KdbenchError("no shared cases between baseline and current run "
                           "(cases match by every spec field but the seed)")
    names = pd.concat([cur, base]).drop_duplicates("group_id").set_index("group_id")["name"]
    case_name = names.str.replace(r"-s\d+$", "", regex=True)
    bv, cv = _values(base, th.metrics), _values(cur, th.metrics)
    ok_b, ok_c = base.groupby("group_id")["ok"].agg(["sum", "size"]), \
        cur.groupby("group_id")["ok"].agg(["sum", "size"])
    rows = []
    for gid in shared:
        status = _status_change(*ok_b.loc[gid], *ok_c.loc[gid])
        if status:
            rows.append({"group_id": gid, "metric": "status", **status})
    lost = {r["group_id"] for r in rows}
    rows += [{"group_id": gid, "metric": metric, **_decide(bv[gid, metric], cv[gid, metric],
                                                           metric, th)}
             for gid, metric in sorted(bv.keys() & cv.keys()) if gid not in lost]
    metrics = pd.DataFrame(rows, columns=[
        "group_id", "metric", "baseline", "baseline_std", "baseline_n", "current",
        "current_std", "current_n", "delta", "effect", "unit", "p", "decision", "why"])
    metrics.insert(0, "case", metrics["group_id"].map(case_name))
    per_case = metrics.groupby("group_id")["decision"].agg(
        lambda d: "regression" if d.eq("regression").any() else
        "improvement" if d.eq("improvement").any() else "unchanged")
    only = pd.Series({**{g: "new" for g in set(cur["group_id"]) - set(shared)},
                      **{g: "missing" for g in set(base["group_id"]) - set(shared)}},
                     dtype=object)
    decisions = pd.concat([per_case, only]).rename("decision")
    cases = decisions.rename_axis("group_id").reset_index()
    cases.insert(0, "case", cases["group_id"].map(case_name))
    return Comparison(metrics=metrics, cases=cases.sort_values("case", ignore_index=True),
                      thresholds=th, allow_missing=allow_missing)


def compare_paths(baseline: Iterable[Path | str], current: Iterable[Path | str],
                  thresholds: Thresholds | None = None) -> Comparison:
    return compare(load_records(baseline), load_records(current), thresholds)


def write_baseline(records: Iterable[dict[str, Any]], path: Path | str) -> int:
    """Write the newest record of every case, sorted by name: a refreshed baseline. Returns the
    number of records written."""
    newest: dict[str, dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: r["created_at"]):
        newest[rec["case_id"]] = rec
    lines = [json.dumps(r, sort_keys=True) for r in
             sorted(newest.values(), key=lambda r: (r.get("name") or "", r["case_id"]))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return len(lines)
