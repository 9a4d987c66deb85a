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
   its per-seed gain over the ``ce`` student of the same pair, seed and setting. A method whose
   baseline gain was significant and whose current gain is significantly smaller has
   regressed, whatever the machine: this survives a runner change that shifts every absolute
   number, and it catches a distillation term that stopped acting (the student falls back to
   ``ce``).

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
``tolerance`` (tables metric → points or percent). Unusable input (no shared case, schema
mismatch, unknown metric) raises ``KdbenchError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from kdbench.matrix.config import find_pyproject, read_table
from kdbench.publish.markdown import markdown
from kdbench.publish.tables import fmt_num
from kdbench.registry import KdbenchError
from kdbench.results import records_frame
from kdbench.spec import group_id_of

# metric → (direction: +1 higher is better, −1 lower is better; unit of its thresholds)
DIRECTIONS: dict[str, tuple[int, str]] = {
    "top1": (1, "points"), "top5": (1, "points"), "val_top1": (1, "points"),
    "best_top1": (1, "points"), "agreement": (1, "points"), "fidelity_kl": (-1, "%"),
    "train_throughput": (1, "%"), "train_throughput_online": (1, "%"),
    "infer_throughput": (1, "%"), "latency_ms": (-1, "%"), "peak_mem_mb": (-1, "%"),
    "train_s": (-1, "%"), "student_params": (-1, "%"), "extra_params": (-1, "%"),
    "student_flops": (-1, "%"),
}
# The default gate: what does not depend on the machine or its load. Speed and memory moved
# 30–60 % between two sessions of the same code on a shared CPU; gate them only between runs on
# one quiet machine (`--metrics top1,train_throughput,…`).
GATED = ("top1", "agreement", "fidelity_kl", "student_params", "extra_params", "student_flops")
RELATIVE = ("top1", "agreement")  # also checked as a gain over ce of the same pair and seed
MIN_EFFECT = {"top1": 1.0, "top5": 1.0, "val_top1": 1.0, "best_top1": 1.0, "agreement": 1.0,
              "fidelity_kl": 25.0, "train_throughput": 15.0, "train_throughput_online": 15.0,
              "infer_throughput": 15.0, "latency_ms": 15.0, "peak_mem_mb": 15.0, "train_s": 15.0,
              "student_params": 0.0, "extra_params": 0.0, "student_flops": 0.0}
TABLE = "tool.kdbench.compare"
DECISIONS = ("regression", "improvement", "unchanged", "new", "missing")
BASELINE = "ce"

Values = dict[int, float]  # seed → value


# ---------------------------------------------------------------- configuration

def _check_metrics(names: Iterable[str], what: str) -> None:
    for name in names:
        if name not in DIRECTIONS:
            raise KdbenchError(f"unknown metric {name!r} in {what}: valid: "
                               f"{', '.join(DIRECTIONS)}")


@dataclass(frozen=True)
class Thresholds:
    """What counts as a change: significance level, gated metrics, minimum effects, tolerances
    for sides without a noise estimate."""

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


# ---------------------------------------------------------------- statistics

def t_test(base: Values, cur: Values) -> tuple[float, float, str]:
    """(two-sided p, standard error of the difference of means, test name). Paired on the
    seeds both sides share when they share every seed; Welch otherwise. NaN p when there is
    no noise estimate (a single value, or no spread on either side)."""
    b, c = np.array(list(base.values())), np.array(list(cur.values()))
    if base.keys() == cur.keys() and len(b) >= 2:
        seeds = sorted(base)
        diff = np.array([cur[s] - base[s] for s in seeds])
        if np.all(diff == diff[0]):  # one shift on every seed: a change, not noise
            return (1.0 if diff[0] == 0 else 0.0), 0.0, "paired"
        return float(stats.ttest_rel(diff, np.zeros_like(diff)).pvalue), \
            float(diff.std(ddof=1) / math.sqrt(len(diff))), "paired"
    if min(len(b), len(c)) < 2 or (np.all(b == b[0]) and np.all(c == c[0])):
        return math.nan, math.nan, "none"
    se = math.sqrt(b.var(ddof=1) / len(b) + c.var(ddof=1) / len(c))
    return float(stats.ttest_ind(c, b, equal_var=False).pvalue), se, "Welch"


def detectable(se: float, n_base: int, n_cur: int, test: str, alpha: float) -> float:
    """The smallest difference of means a two-sided test at ``alpha`` would call significant
    with this standard error: t_{1−α/2, df} × SE (df: n − 1 paired, Welch–Satterthwaite
    approximated by the smaller side's n − 1 otherwise)."""
    if test == "none" or math.isnan(se):
        return math.nan
    df = (n_cur if test == "paired" else min(n_base, n_cur)) - 1
    return float(stats.t.ppf(1 - alpha / 2, df) * se)


# ---------------------------------------------------------------- decisions

def _effect(metric: str, base_mean: float, delta: float) -> float:
    """A change in the metric's threshold unit: points, or percent of the baseline mean."""
    if DIRECTIONS[metric][1] == "points":
        return delta
    if base_mean:
        return 100.0 * delta / abs(base_mean)
    return math.copysign(math.inf, delta) if delta else 0.0


def _fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 0.01 else f"{x:.2f}"


def decide(base: Values, cur: Values, metric: str, th: Thresholds) -> dict[str, Any]:
    """Check 1 for one metric of one case group (see the module docstring)."""
    direction, unit = DIRECTIONS[metric]
    b, c = np.array(list(base.values())), np.array(list(cur.values()))
    delta = c.mean() - b.mean()
    effect = _effect(metric, b.mean(), delta)
    p, se, test = t_test(base, cur)
    worse = direction * delta < 0
    change = f"{'drop' if worse else 'rise'} of {_fmt(abs(effect))} {unit}"
    if base == cur:
        decision, why = "unchanged", "identical on every seed"
    elif abs(effect) <= th.min_effect[metric]:
        decision, why = "unchanged", (f"{change}, below the minimum effect "
                                      f"{th.min_effect[metric]:g} {unit}")
    elif test == "none" and abs(effect) <= th.tolerance_for(metric):
        decision, why = "unchanged", (f"{change} within the tolerance {th.tolerance_for(metric):g}"
                                      f" {unit} (no noise estimate: one seed or no spread)")
    elif test != "none" and p >= th.alpha:
        decision, why = "unchanged", (f"{change} within seed noise ({test} t-test p = "
                                      f"{p:.2g} ≥ {th.alpha:g})")
    else:
        decision = "regression" if worse else "improvement"
        why = (f"{change} beyond the tolerance {th.tolerance_for(metric):g} {unit} (no noise "
               f"estimate)" if test == "none" else
               f"{change}, {test} t-test p = {p:.2g} < {th.alpha:g}")
    return {"check": "value", "baseline": b.mean(), "baseline_std": _std(b),
            "baseline_n": len(b), "current": c.mean(), "current_std": _std(c),
            "current_n": len(c), "delta": delta, "effect": effect, "unit": unit, "p": p,
            "test": test, "detectable": _in_unit(metric, b.mean(),
                                                 detectable(se, len(b), len(c), test, th.alpha)),
            "decision": decision, "why": why}


def _in_unit(metric: str, base_mean: float, value: float) -> float:
    return abs(_effect(metric, base_mean, value)) if not math.isnan(value) else math.nan


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def gains(method: Values, ce: Values) -> Values:
    """Per-seed gain of a method over ``ce`` of the same pair and seed."""
    return {s: method[s] - ce[s] for s in method.keys() & ce.keys()}


def decide_gain(base: Values, cur: Values, metric: str, th: Thresholds) -> dict[str, Any] | None:
    """Check 2 for one metric of one method: ``base``/``cur`` are its per-seed gains over ce.
    None when the baseline had no significant gain (nothing to lose)."""
    direction, unit = DIRECTIONS[metric]
    b, c = np.array(list(base.values())), np.array(list(cur.values()))
    if len(b) < 2 or not len(c) or direction * b.mean() <= 0:
        return None
    spread = b.std(ddof=1)
    p_gain = 0.0 if spread == 0 else float(stats.ttest_1samp(direction * b, 0.0,
                                                             alternative="greater").pvalue)
    if p_gain >= th.alpha:
        return None
    delta = c.mean() - b.mean()
    p_two, se, test = t_test(base, cur)
    lost = direction * delta < 0
    # one-sided: only a smaller gain counts here (a larger one is check 1's improvement)
    p = (p_two / 2 if lost else 1 - p_two / 2) if not math.isnan(p_two) else math.nan
    row = {"check": "gain over ce", "baseline": b.mean(), "baseline_std": _std(b),
           "baseline_n": len(b), "current": c.mean(), "current_std": _std(c),
           "current_n": len(c), "delta": delta, "effect": delta, "unit": unit, "p": p,
           "test": test, "detectable": detectable(se, len(b), len(c), test, 2 * th.alpha)}
    gain = f"gain over ce {b.mean():+.2f} → {c.mean():+.2f} {unit}"
    if lost and abs(delta) > th.min_effect[metric] and (
            (not math.isnan(p) and p < th.alpha)
            or (math.isnan(p) and abs(delta) > th.tolerance_for(metric))):
        return {**row, "decision": "regression",
                "why": f"lost its gain: {gain} (the baseline gain had p = {p_gain:.2g}; "
                       f"{test} one-sided p = {p:.2g} < {th.alpha:g})"}
    return {**row, "decision": "unchanged", "why": f"kept its gain: {gain}"}


def _status_change(base_ok: int, base_n: int, cur_ok: int, cur_n: int) -> dict[str, Any] | None:
    """A group that lost (or regained) every ok seed: decided on its status alone."""
    if (base_ok == 0) == (cur_ok == 0):
        return None
    return {"check": "status", "baseline": base_ok, "baseline_n": base_n, "current": cur_ok,
            "current_n": cur_n, "unit": "ok seeds",
            "decision": "regression" if cur_ok == 0 else "improvement",
            "why": "no ok seed left" if cur_ok == 0 else "ok again"}


# ---------------------------------------------------------------- sides

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
        long = ok.melt(id_vars=["group_id", "seed"], value_vars=[m for m in metrics if m in ok],
                       var_name="metric").dropna(subset=["value"])
        out: dict[tuple[str, str], Values] = {}
        for gid, seed, metric, value in long.itertuples(index=False):
            out.setdefault((gid, metric), {})[int(seed)] = float(value)
        return out

    def ce_groups(self) -> dict[str, str]:
        """group_id of every distillation method → group_id of its ``ce`` baseline: the same
        spec with the loss's own settings replaced by ce's."""
        from kdbench.losses import LOSSES

        ce_weight, alpha = LOSSES.get(BASELINE).weights()
        return {r["group_id"]: group_id_of({**r["spec"], "loss": BASELINE, "temperature": None,
                                            "alpha": alpha, "ce_weight": ce_weight,
                                            "loss_options": {}})
                for r in self.records if r["spec"]["loss"] != BASELINE}


# ---------------------------------------------------------------- the comparison

@dataclass
class Comparison:
    metrics: pd.DataFrame  # one row per (group_id, check, metric)
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

    def power(self) -> list[str]:
        """What the seeds can detect, per gated metric (median over cases), in words."""
        rows = self.metrics[self.metrics["check"].eq("value")].dropna(subset=["detectable"])
        lines = []
        th = self.thresholds
        for metric, part in rows.groupby("metric", sort=False):
            n = int(part["current_n"].median())
            x = part["detectable"].median()
            unit = DIRECTIONS[metric][1]
            line = (f"{metric}: n = {n} seeds a side can detect changes ≥ {_fmt(x)} {unit} "
                    f"at α = {th.alpha:g} (median over {len(part)} cases)")
            if x > th.min_effect[metric] > 0:
                line += (f" — more than the minimum effect {th.min_effect[metric]:g} {unit}: "
                         f"smaller changes pass unseen; run more seeds")
            lines.append(line)
        return lines

    def to_dict(self) -> dict[str, Any]:
        def rows(df: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(df.to_json(orient="records"))

        return {"has_regression": self.has_regression, "failed": self.failed,
                "allow_missing": self.allow_missing, "counts": self.counts(),
                "power": self.power(),
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
        lines += ["#### What the gate can see", "", *(f"- {line}" for line in self.power()), ""]
        lines.append(f"t-tests (paired on shared seeds, else Welch) at α = {th.alpha:g}; a "
                     f"method's gain over ce is checked too; minimum effects: " + ", ".join(
                         f"{m} {th.min_effect[m]:g} {DIRECTIONS[m][1]}" for m in th.metrics)
                     + ".")
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
        "case": rows["case"], "check": rows["check"], "metric": rows["metric"],
        "baseline": side(rows["baseline"], rows["baseline_std"], rows["baseline_n"]),
        "current": side(rows["current"], rows["current_std"], rows["current_n"]),
        "why": rows["why"],
    })


def compare(baseline: list[dict[str, Any]], current: list[dict[str, Any]],
            thresholds: Thresholds | None = None, allow_missing: bool = False) -> Comparison:
    """Decide per case group, check and metric; see the module docstring."""
    th = thresholds or Thresholds()
    if not baseline or not current:
        raise KdbenchError(f"no records in the {'baseline' if not baseline else 'current run'}")
    base, cur = Side(baseline), Side(current)
    schemas = set(base.frame["schema"].dropna()) | set(cur.frame["schema"].dropna())
    if len(schemas) > 1:
        raise KdbenchError(f"schema mismatch: records of schema versions "
                           f"{', '.join(map(str, sorted(schemas)))}: refresh the baseline")
    shared = sorted(set(base.frame["group_id"]) & set(cur.frame["group_id"]))
    if not shared:
        raise KdbenchError("no shared cases between baseline and current run "
                           "(cases match by every spec field but the seed)")
    names = pd.concat([cur.frame, base.frame]).drop_duplicates("group_id") \
        .set_index("group_id")["name"]
    case_name = names.str.replace(r"-s\d+$", "", regex=True)
    bv, cv = base.values(th.metrics), cur.values(th.metrics)
    ok_b = base.frame.groupby("group_id")["ok"].agg(["sum", "size"])
    ok_c = cur.frame.groupby("group_id")["ok"].agg(["sum", "size"])
    rows = []
    for gid in shared:
        status = _status_change(*ok_b.loc[gid], *ok_c.loc[gid])
        if status:
            rows.append({"group_id": gid, "metric": "status", **status})
    lost = {r["group_id"] for r in rows}
    rows += [{"group_id": gid, "metric": metric, **decide(bv[gid, metric], cv[gid, metric],
                                                          metric, th)}
             for gid, metric in sorted(bv.keys() & cv.keys()) if gid not in lost]
    ce_of = base.ce_groups()
    for gid in (g for g in shared if g in ce_of and g not in lost):
        for metric in (m for m in RELATIVE if m in th.metrics):
            ce = ce_of[gid]
            if {(gid, metric), (ce, metric)} <= bv.keys() & cv.keys():
                row = decide_gain(gains(bv[gid, metric], bv[ce, metric]),
                                  gains(cv[gid, metric], cv[ce, metric]), metric, th)
                if row:
                    rows.append({"group_id": gid, "metric": metric, **row})
    metrics = pd.DataFrame(rows, columns=[
        "group_id", "check", "metric", "baseline", "baseline_std", "baseline_n", "current",
        "current_std", "current_n", "delta", "effect", "unit", "p", "test", "detectable",
        "decision", "why"])
    metrics.insert(0, "case", metrics["group_id"].map(case_name))
    per_case = metrics.groupby("group_id")["decision"].agg(
        lambda d: "regression" if d.eq("regression").any() else
        "improvement" if d.eq("improvement").any() else "unchanged")
    only = pd.Series({**{g: "new" for g in set(cur.frame["group_id"]) - set(shared)},
                      **{g: "missing" for g in set(base.frame["group_id"]) - set(shared)}},
                     dtype=object)
    decisions = pd.concat([per_case, only]).rename("decision")
    cases = decisions.rename_axis("group_id").reset_index()
    cases.insert(0, "case", cases["group_id"].map(case_name))
    return Comparison(metrics=metrics, cases=cases.sort_values("case", ignore_index=True),
                      thresholds=th, allow_missing=allow_missing)


def write_baseline(records: Iterable[dict[str, Any]], path: Path | str) -> int:
    """Write the newest record of every case, sorted by name: a refreshed baseline. Returns the
    number of records written."""
    from kdbench.results import newest

    latest, _ = newest(records)
    lines = [json.dumps(r, sort_keys=True) for r in
             sorted(latest, key=lambda r: (r.get("name") or "", r["case_id"]))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return len(lines)
