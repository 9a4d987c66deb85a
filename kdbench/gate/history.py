"""Runs over time (``kdbench history RUNS…``) and the export for github-action-benchmark.

Each RUN is the records of one run (a file or a folder); runs are ordered by date (the first
``created_at`` of their records) and named by their ``env.git_sha``. The trend follows, per
setting, pair and method, the configuration that the **newest** run's leaderboard shows (the
temperature chosen on validation top-1, ``kdbench.publish.summary.chosen``), held fixed across
the runs, so that each row is one case group and each step is decided on like data: per run its test
top-1 (mean ± std (n) over seeds) and training speed (``train_throughput_online``: samples/s
with the teacher's forward pass included). A step between a run and the one before it is
marked (▼ regression, ▲ improvement) exactly where ``kdbench compare`` would decide one —
``compare(previous, current, thresholds)`` per consecutive pair, thresholds from
``Thresholds.load()`` (``[tool.kdbench.compare]``), on the gated metrics (speed is gated only
when asked for: ``--metrics top1,train_throughput_online``).

API::

    h = history([(path, records), ...], thresholds)  # -> History
    h.runs      # one row per run: run, git_sha, date, records, path
    h.trend     # one row per (tracked configuration, run) with its numbers and steps
    h.steps     # compare's regressions/improvements of the tracked configurations
    h.to_markdown(); h.to_csv()
    kdbench.publish.plots.write_history_plots(h.trend, directory)  # top-1, speed over runs

    benchmark_action(summary)  # {"customBiggerIsBetter": [...], "customSmallerIsBetter": [...]}
    write_benchmark_action(summary, directory)  # bigger-is-better.json, smaller-is-better.json

The export is the input of benchmark-action/github-action-benchmark's ``customBiggerIsBetter``
and ``customSmallerIsBetter`` tools: a list of ``{name, unit, value, range, extra}``, one entry
per leaderboard cell and metric (its name leaves out the chosen temperature, which ``extra``
gives, so that a series stays one pair × method).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.gate.compare import compare
from kdbench.gate.thresholds import DIRECTIONS, Thresholds
from kdbench.publish.markdown import markdown
from kdbench.publish.summary import (
    SELECTION,
    SPEED,
    chosen,
    method_names,
    prepare,
    sections,
    summarize,
)
from kdbench.publish.tables import fmt_count, fmt_T, fmt_top1
from kdbench.registry import KdbenchError
from kdbench.results import records_frame

MARKS = {"regression": "▼", "improvement": "▲"}


# ---------------------------------------------------------------- runs


def _summary(records: list[dict[str, Any]]) -> pd.DataFrame:
    """``summarize`` of one run, each case group with its ``group_id`` and ``method``."""
    frame = records_frame(records)
    summary = summarize(frame)
    labels = summary.attrs["labels"]
    ids = prepare(frame)[[*labels, "group_id"]].drop_duplicates(labels)
    out = summary.merge(ids, on=labels, how="left")
    out.attrs = summary.attrs
    return out.assign(method=method_names(out))


def _run_row(path: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    frame = records_frame(records)
    shas = frame["env.git_sha"].dropna().unique() if "env.git_sha" in frame else []
    return {
        "path": path,
        "git_sha": ", ".join(sorted(map(str, shas))) or "?",
        "date": pd.to_datetime(frame["created_at"], utc=True, format="ISO8601").min(),
        "records": len(frame),
    }


def _tracked(newest: pd.DataFrame) -> pd.DataFrame:
    """The configurations the newest run's leaderboards show, with their section title."""
    parts = [
        chosen(part, ["pair", "method"]).assign(section=title) for title, part in sections(newest)
    ]
    return pd.concat(parts)[["section", "pair", "method", "group_id"]]


def _step_text(row: pd.Series) -> str:
    """compare's decision in its own words (``why`` names the change, the test and its p)."""
    return f"{MARKS[row['decision']]} {row['metric']}: {row['why']}"


# ---------------------------------------------------------------- history


@dataclass
class History:
    runs: pd.DataFrame
    trend: pd.DataFrame
    steps: pd.DataFrame
    thresholds: Thresholds
    notes: list[str] = field(default_factory=list)

    def rule(self) -> str:
        th = self.thresholds
        return (
            f"Per pair and method: the configuration the newest run's leaderboard shows "
            f"(temperature chosen on {SELECTION}), held fixed across runs; cells: test "
            f"top-1 % mean ± std (n seeds); train samples/s: {SPEED} (teacher forward "
            f"included). ▼ regression / ▲ improvement against the run before, decided as "
            f"`kdbench compare` decides: Welch t-test at α = {th.alpha:g} and minimum "
            f"effects on the gated metrics "
            + ", ".join(f"{m} {th.min_effect[m]:g} {DIRECTIONS[m][1]}" for m in th.metrics)
            + f"; the speed marker is compare's {SPEED} decision (only when gated)."
        )

    def table(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The Markdown trend of one pair: method × run."""
        return pd.DataFrame(
            {
                "method": rows["method"],
                "T": rows["T_text"],
                "run": rows["run"].astype(str),
                "git": rows["git_sha"],
                "date": rows["date"].dt.strftime("%Y-%m-%d %H:%M"),
                "test top-1 %": rows["top1_text"]
                + rows["top1_step"].map(MARKS).fillna("").radd(" ").str.rstrip(),
                "train samples/s": rows[f"{SPEED}_mean"].map(fmt_count)
                + rows["speed_step"].map(MARKS).fillna("").radd(" ").str.rstrip(),
                "steps": rows["steps"],
            }
        )

    def to_markdown(self) -> str:
        runs = self.runs.assign(
            run=self.runs["run"].astype(str),
            date=self.runs["date"].dt.strftime("%Y-%m-%d %H:%M"),
            records=self.runs["records"].astype(str),
        )
        lines = ["# kdbench history", "", self.rule(), "", runs.to_markdown(index=False), ""]
        lines += [f"{note}\n" for note in self.notes]
        for (section, pair), rows in self.trend.groupby(["section", "pair"], sort=True):
            suffix = f" ({section})" if section else ""
            lines += [f"## {pair}{suffix}", "", markdown(self.table(rows)), ""]
        return "\n".join(lines)

    def to_csv(self) -> str:
        columns = [
            "run",
            "git_sha",
            "date",
            "section",
            "pair",
            "method",
            "T",
            "group_id",
            "n",
            "top1_mean",
            "top1_std",
            "val_top1_mean",
            f"{SPEED}_mean",
            f"{SPEED}_std",
            "top1_step",
            "speed_step",
            "steps",
        ]
        return self.trend[columns].to_csv(index=False)


def history(
    runs: Sequence[tuple[str, list[dict[str, Any]]]], thresholds: Thresholds | None = None
) -> History:
    """Trend and steps of ``runs`` ((path, records) each); see the module docstring."""
    if not runs:
        raise KdbenchError("no runs: give one records file or folder per run")
    th = thresholds or Thresholds()
    meta = pd.DataFrame([_run_row(path, records) for path, records in runs])
    order = meta.sort_values("date", kind="stable").index
    ordered = [runs[i][1] for i in order]
    meta = meta.loc[order].reset_index(drop=True)
    meta.insert(0, "run", range(1, len(meta) + 1))
    summaries = [_summary(records) for records in ordered]
    tracked = _tracked(summaries[-1])
    rows, steps, notes = [], [], []
    for i, summary in enumerate(summaries):
        now = tracked.merge(summary.drop(columns=["pair", "method"]), on="group_id")
        rows.append(now.assign(run=i + 1, git_sha=meta["git_sha"][i], date=meta["date"][i]))
        if i == 0:
            continue
        try:
            changes = compare(ordered[i - 1], ordered[i], th, allow_missing=True).metrics
        except KdbenchError as exc:
            notes.append(f"Run {i} → {i + 1}: not compared: {exc}.")
            continue
        steps.append(
            changes[
                changes["decision"].isin(list(MARKS))
                & changes["group_id"].isin(tracked["group_id"])
            ].assign(run=i + 1)
        )
    trend = pd.concat(rows, ignore_index=True)
    step_frame = (
        pd.concat(steps, ignore_index=True)
        if steps
        else pd.DataFrame(
            columns=["run", "group_id", "metric", "decision", "effect", "unit", "p", "why"]
        )
    )
    return History(
        runs=meta,
        trend=_with_steps(trend, step_frame),
        steps=step_frame,
        thresholds=th,
        notes=notes,
    )


def _with_steps(trend: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Add the step decisions (top1, speed, status) and their text to each trend row."""
    found = {key: rows for key, rows in steps.groupby(["run", "group_id"])}
    none = steps.iloc[0:0]

    def decision(key: tuple[int, str], metrics: tuple[str, ...]) -> str:
        hit = found.get(key, none)
        hit = hit[hit["metric"].isin(metrics)]
        return hit["decision"].iloc[0] if len(hit) else ""

    keys = list(zip(trend["run"], trend["group_id"]))
    method_order = trend["method"].map(lambda m: (m != "ce", m))
    return (
        trend.assign(
            T_text=trend.apply(fmt_T, axis=1),
            top1_text=trend.apply(fmt_top1, axis=1),
            top1_step=[decision(k, ("top1", "status")) for k in keys],
            speed_step=[decision(k, (SPEED, "status")) for k in keys],
            steps=[
                "; ".join(_step_text(row) for _, row in found.get(k, none).iterrows()) for k in keys
            ],
            _order=method_order,
        )
        .sort_values(["section", "pair", "_order", "run"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------- github-action-benchmark

BIGGER = (
    ("test top-1", "top1", "%"),
    ("train samples/s", SPEED, "samples/s"),
    ("infer samples/s", "infer_throughput", "samples/s"),
)
SMALLER = (("latency", "latency_ms", "ms"), ("fidelity KL", "fidelity_kl", "nats"))
TOOLS = {
    "customBiggerIsBetter": ("bigger-is-better.json", BIGGER),
    "customSmallerIsBetter": ("smaller-is-better.json", SMALLER),
}


def benchmark_action(summary: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Tool name → entries ``{name, unit, value, range, extra}`` of every leaderboard cell."""
    out: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    for title, part in sections(summary):
        prefix = f"{title} · " if title else ""
        best = chosen(part.assign(method=method_names(part)), ["pair", "method"])
        for _, row in best[best["n"].gt(0)].sort_values(["pair", "method"]).iterrows():
            temperature = f"T={fmt_T(row)} chosen on {SELECTION}; " if fmt_T(row) else ""
            extra = f"{temperature}{int(row['n'])} seed(s)"
            for tool, (_, metrics) in TOOLS.items():
                for label, metric, unit in metrics:
                    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
                    if pd.isna(mean):
                        continue
                    entry = {
                        "name": f"{prefix}{row['pair']} {row['method']}: {label}",
                        "unit": unit,
                        "value": round(float(mean), 6),
                        "extra": extra,
                    }
                    if not pd.isna(std):
                        entry["range"] = f"± {std:.4g}"
                    out[tool].append(entry)
    return out


def write_benchmark_action(summary: pd.DataFrame, directory: Path | str) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for tool, entries in benchmark_action(summary).items():
        path = out / TOOLS[tool][0]
        path.write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
