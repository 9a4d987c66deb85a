"""Records → pandas tables → Markdown / CSV / JSON: the leaderboards of ``kdbench report``.

Public API (every function takes the frame of ``kdbench.results.records_frame``):

- ``summarize(frame) -> DataFrame``: one row per case group (every spec field but the seed),
  aggregated over seeds: the label columns (``pair``, ``loss``, ``T`` and whichever other spec
  fields vary), ``n`` (ok seeds), ``diverged``, ``error``, ``<metric>_mean`` / ``<metric>_std``
  for every metric of ``kdbench.results.METRICS`` and ``d_top1`` (Δ mean top-1 vs ``ce`` of
  the same pair and setting). Metrics of diverged/error records never enter the means.
- ``session_report(frame) -> str``: the Markdown leaderboard the pytest session prints and
  writes to ``results/leaderboard.md``.
- ``build_report(frame, published=None) -> Report``: every table of the full report; ``Report``
  has ``to_markdown()``, ``to_csv()`` and ``to_json()``; ``render(frame, fmt)`` picks one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields

import pandas as pd

from kdbench.results import METRICS
from kdbench.spec import RunSpec

# spec fields that describe the method of a case (the rest describe the setting it ran in)
METHOD_KEYS = ("loss", "T", "alpha", "ce_weight", "loss_options")
SETTING_KEYS = tuple(f.name for f in fields(RunSpec)
                     if f.name not in ("seed", "teacher", "student", "temperature", "loss",
                                       "alpha", "ce_weight", "loss_options"))
FAILED = ("diverged", "error")
LABELS = {*SETTING_KEYS, *METHOD_KEYS, "pair", "method", "case", "metric", "decision"}


def _options_text(value: object) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in sorted(value.items())) if isinstance(value, dict) else ""


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``pair`` and ``T`` (NaN for losses without one); dict options become text."""
    df = frame.copy()
    df["pair"] = df["teacher"] + ">" + df["student"]
    df["T"] = pd.to_numeric(df["temperature"], errors="coerce")
    for col in ("loss_options", "dataset_options"):
        df[col] = df[col].map(_options_text) if col in df else ""
    for m in METRICS:
        if m not in df:
            df[m] = math.nan
    return df


def label_columns(df: pd.DataFrame) -> list[str]:
    """pair, loss, T plus every setting that varies and every method knob varied within a loss,
    so that the labels tell the case groups apart."""
    settings = [c for c in SETTING_KEYS if c in df and df[c].nunique(dropna=False) > 1]
    knobs = [c for c in METHOD_KEYS[2:] if c in df
             and df.groupby("loss")[c].nunique(dropna=False).max() > 1]
    return settings + ["pair", "loss", "T"] + knobs


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    df = prepare(frame)
    keys = label_columns(df)
    ok = df["status"].eq("ok")
    df = df.assign(**{m: df[m].where(ok) for m in METRICS}, n=ok,
                   **{s: df["status"].eq(s) for s in FAILED})
    grouped = df.groupby(keys, dropna=False, sort=False)
    stats = grouped[list(METRICS)].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    out = grouped[["n", *FAILED]].sum().join(stats).reset_index()
    setting = [k for k in keys if k not in METHOD_KEYS]
    ce = out[out["loss"].eq("ce")].set_index(setting)["top1_mean"].rename("ce_top1")
    out["d_top1"] = out["top1_mean"] - out.join(ce, on=setting)["ce_top1"]
    out = out.sort_values("top1_mean", ascending=False, na_position="last", kind="stable")
    return out.reset_index(drop=True)


# ---------------------------------------------------------------- cell formatting

def fmt_mean_std(mean: float, std: float, n: int) -> str:
    if n == 0 or pd.isna(mean):
        return ""
    return f"{mean:.2f} ({n})" if n == 1 or pd.isna(std) else f"{mean:.2f} ± {std:.2f} ({n})"


def fmt_top1(row: pd.Series) -> str:
    """``mean ± std (n)``; failed seeds named; a group without an ok seed shows its status."""
    failed = ", ".join(f"{int(row[s])} {s}" for s in FAILED if row[s])
    if row["n"] == 0:
        return failed or "N/A"
    cell = fmt_mean_std(row["top1_mean"], row["top1_std"], int(row["n"]))
    return f"{cell}; {failed}" if failed else cell


def fmt_count(x: float) -> str:
    """Integers with thousands separators; large values in k/M/G."""
    if pd.isna(x):
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:,.0f}"


def fmt_num(x: float, digits: int = 2, sign: bool = False) -> str:
    return "" if pd.isna(x) else f"{x:{'+' if sign else ''}.{digits}f}"


def _fmt_T(t: float) -> str:
    return "" if pd.isna(t) else f"{t:g}"


def _labels_view(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return summary[keys].assign(T=summary["T"].map(_fmt_T))


def markdown(table: pd.DataFrame) -> str:
    """Render preformatted cells with tabulate: label columns left, value columns right."""
    align = ["left" if c in LABELS else "right" for c in table.columns]
    return table.to_markdown(index=False, disable_numparse=True, colalign=align)


# ---------------------------------------------------------------- provenance

PROVENANCE = (("kdbench", "env.kdbench_version"), ("git", "env.git_sha"), ("torch", "env.torch"),
              ("device", "env.device_name"), ("threads", "env.threads"), ("seeds", "seed"),
              ("epochs", "epochs"))


def provenance(frame: pd.DataFrame) -> dict[str, str]:
    """What produced the numbers: each value, or the distinct values joined, per field."""
    out = {}
    for label, col in PROVENANCE:
        values = frame[col].dropna().unique() if col in frame else []
        out[label] = ", ".join(str(v) for v in sorted(values, key=str)) or "?"
    counts = frame["status"].value_counts()
    out["records"] = f"{len(frame)} (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"
    return out


def provenance_line(frame: pd.DataFrame) -> str:
    return " · ".join(f"{k} {v}" for k, v in provenance(frame).items())


# ---------------------------------------------------------------- session leaderboard

def session_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, loss, T) over seeds, sorted by mean top-1 (the minimum leaderboard)."""
    s = summarize(frame)
    keys = label_columns(prepare(frame))
    return _labels_view(s, keys).assign(**{
        "top-1 %": s.apply(fmt_top1, axis=1),
        "Δ top-1 vs ce": s["d_top1"].map(lambda x: fmt_num(x, sign=True)),
        "agreement %": s["agreement_mean"].map(fmt_num),
        "student params": s["student_params_mean"].map(fmt_count),
        "FLOPs": s["student_flops_mean"].map(fmt_count),
        "train samples/s": s["train_throughput_mean"].map(fmt_count),
        "infer samples/s": s["infer_throughput_mean"].map(fmt_count),
    })


def session_report(frame: pd.DataFrame) -> str:
    """The Markdown leaderboard printed at the end of a pytest session."""
    if frame.empty:
        return "No kdbench records.\n"
    return f"{provenance_line(frame)}\n\n{markdown(session_table(frame))}\n"
