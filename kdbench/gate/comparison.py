"""What ``compare`` decided (``Comparison``): the gate's verdict, what its seeds can detect,
and the decisions as Markdown (the pytest session's summary, ``kdbench compare``) and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kdbench.gate.decide import fmt_value
from kdbench.gate.thresholds import DIRECTIONS, RELATIVE, Thresholds
from kdbench.publish.markdown import markdown
from kdbench.publish.tables import fmt_num

DECISIONS = ("regression", "improvement", "unchanged", "new", "missing")


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
            return (
                f"FAILED: {missing} baseline case(s) missing from the current run "
                f"(a lost shard or a subset? --allow-missing decides on what ran)"
            )
        return "no regression" + (
            f" ({missing} baseline case(s) not run, allowed)" if missing else ""
        )

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
            line = (
                f"{metric}: n = {n} seeds a side can detect changes ≥ {fmt_value(x)} {unit} "
                f"at α = {th.alpha:g} (median over {len(part)} cases)"
            )
            if x > th.min_effect[metric] > 0:
                line += (
                    f" — more than the minimum effect {th.min_effect[metric]:g} {unit}: "
                    f"smaller changes pass unseen; run more seeds"
                )
            lines.append(line)
        return lines

    def to_dict(self) -> dict[str, Any]:
        def rows(df: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(df.to_json(orient="records"))

        return {
            "has_regression": self.has_regression,
            "failed": self.failed,
            "allow_missing": self.allow_missing,
            "counts": self.counts(),
            "power": self.power(),
            "thresholds": {
                "alpha": self.thresholds.alpha,
                "metrics": list(self.thresholds.metrics),
                "min_effect": self.thresholds.min_effect,
                "tolerance": {m: self.thresholds.tolerance_for(m) for m in self.thresholds.metrics},
                "gain_alpha": self.thresholds.alpha_gain,
                "gain_min_effect": {
                    m: self.thresholds.gain_min_for(m)
                    for m in RELATIVE
                    if m in self.thresholds.metrics
                },
            },
            "cases": rows(self.cases),
            "changes": rows(self.metrics),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        counts = self.counts()
        verdict = f"**{self.verdict()}**" if self.failed else self.verdict()
        lines = [
            f"### kdbench compare: {verdict}",
            "",
            " · ".join(f"{n} {d}" for d, n in counts.items()),
            "",
        ]
        changed = self.metrics[self.metrics["decision"].isin(["regression", "improvement"])]
        for decision in ("regression", "improvement"):
            rows = changed[changed["decision"].eq(decision)]
            if len(rows):
                lines += [f"#### {decision.capitalize()}s", "", markdown(_change_table(rows)), ""]
        for decision in ("unchanged", "new", "missing"):
            names = self.cases.loc[self.cases["decision"].eq(decision), "case"]
            if len(names):
                lines += [
                    f"#### {decision.capitalize()} ({len(names)})",
                    "",
                    ", ".join(f"`{n}`" for n in sorted(names)),
                    "",
                ]
        th = self.thresholds
        lines += ["#### What the gate can see", "", *(f"- {line}" for line in self.power()), ""]
        gain = [m for m in RELATIVE if m in th.metrics]
        lines.append(
            f"t-tests (paired on shared seeds, else Welch) at α = {th.alpha:g}; a "
            f"method's gain over ce is checked too"
            + (
                f" (α = {th.alpha_gain:g}; minimum effects: "
                + ", ".join(f"{m} {th.gain_min_for(m):g} {DIRECTIONS[m][1]}" for m in gain)
                + "; identical to ce on every seed: a no-op)"
                if gain
                else ""
            )
            + "; minimum effects: "
            + ", ".join(f"{m} {th.min_effect[m]:g} {DIRECTIONS[m][1]}" for m in th.metrics)
            + "."
        )
        return "\n".join(lines) + "\n"


def _change_table(rows: pd.DataFrame) -> pd.DataFrame:
    def cell(mean: float, std: float, n: float, unit: str) -> str:
        if unit == "ok seeds":
            return f"{mean:.0f}/{n:.0f} ok"
        spread = "" if pd.isna(std) else f" ± {fmt_num(std)}"
        return f"{fmt_num(mean)}{spread} ({n:.0f})"

    def side(mean: pd.Series, std: pd.Series, n: pd.Series) -> pd.Series:
        return pd.Series(list(map(cell, mean, std, n, rows["unit"])), index=rows.index)

    return pd.DataFrame(
        {
            "case": rows["case"],
            "check": rows["check"],
            "metric": rows["metric"],
            "baseline": side(rows["baseline"], rows["baseline_std"], rows["baseline_n"]),
            "current": side(rows["current"], rows["current_std"], rows["current_n"]),
            "why": rows["why"],
        }
    )
