"""The tables every format renders, as pandas frames of preformatted cells: the paper-style
leaderboard (methods × pairs, the temperature and the bold best method chosen on validation,
teacher and ``ce`` on top, published numbers beside), the per-pair detail table, the
loss × temperature table and the session table; ``CellStyle`` lets a format (LaTeX) write its
own cells."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from kdbench.publish import tuned
from kdbench.publish.summary import (
    FAILED,
    SELECTION,
    chosen,
    method_names,
    published_cells,
    weak_teachers,
)


def fmt_mean_std(mean: float, std: float, n: int) -> str:
    if n == 0 or pd.isna(mean):
        return ""
    return f"{mean:.2f} ({n})" if n == 1 or pd.isna(std) else f"{mean:.2f} ± {std:.2f} ({n})"


def fmt_top1(row: pd.Series, metric: str = "top1") -> str:
    """``mean ± std (n)``; failed seeds named; a group without an ok seed shows its status."""
    failed = ", ".join(f"{int(row[s])} {s}" for s in FAILED if row[s])
    if row["n"] == 0:
        return failed or "N/A"
    cell = fmt_mean_std(row[f"{metric}_mean"], row[f"{metric}_std"], int(row["n"]))
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


def fmt_T(row: pd.Series) -> str:
    """The temperature of a group; a learned one as ``start→end`` (CTKD)."""
    t, learned = row["T"], row.get("final_temperature_mean", math.nan)
    if pd.isna(t):
        return ""
    return f"{t:g}" if pd.isna(learned) else f"{t:g}→{learned:.2f}"


def _labels_view(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return summary[keys].assign(T=summary.apply(fmt_T, axis=1) if len(summary) else "")


def session_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per case group over seeds, sorted by mean test top-1 (the minimum leaderboard)."""
    s = summary
    return _labels_view(s, s.attrs["labels"]).assign(
        **{
            "test top-1 %": s.apply(fmt_top1, axis=1),
            "val top-1 %": s["val_top1_mean"].map(fmt_num),
            "Δ top-1 vs ce": s["d_top1"].map(lambda x: fmt_num(x, sign=True)),
            "agreement %": s["agreement_mean"].map(fmt_num),
            "fidelity KL": s["fidelity_kl_mean"].map(lambda x: fmt_num(x, 3)),
            "student params": s["student_params_mean"].map(fmt_count),
            "FLOPs": s["student_flops_mean"].map(fmt_count),
            "train samples/s": s["train_throughput_online_mean"].map(fmt_count),
            "infer samples/s": s["infer_throughput_mean"].map(fmt_count),
        }
    )


NOT_RUN = "—"  # a leaderboard cell of a method the records do not run on the pair
LEADERBOARD_NOTE = f"test top-1; T and bold chosen on {SELECTION}"


COLUMNS_NOTE = (
    "Cells: mean ± std (n ok seeds) of **test** top-1 %. The temperature of each cell (T=) and "
    f"the **bold** best method per pair are chosen on {SELECTION}, never on test. "
    "diverged / error: seeds that failed (not counted as 0 %); N/A: the method does not apply "
    f"to the pair; {NOT_RUN}: the records hold no case of it on the pair. train samples/s: "
    "training steps with the teacher's forward pass included for "
    "every distillation method (measured where the teacher ran online; measured step time + "
    "the teacher's measured forward time where its outputs were cached)."
)


@dataclass(frozen=True)
class CellStyle:
    """How ``leaderboard`` writes a cell: Markdown by default; ``kdbench.publish.latex`` passes its
    own.
    ``top1``: a chosen configuration's test top-1 (a ``summarize`` row); ``temperature``: its
    ``fmt_T`` text; ``best``: the marked cell; ``near_chance``: after a weak teacher's top-1."""

    top1: Callable[[pd.Series], str] = fmt_top1
    temperature: Callable[[str], str] = " T={}".format
    best: Callable[[str], str] = "**{}**".format
    near_chance: str = " ⚠ near chance"


MARKDOWN = CellStyle()  # the cells of Markdown tables


def leaderboard(
    summary: pd.DataFrame, published: pd.DataFrame | None = None, style: CellStyle = MARKDOWN
) -> pd.DataFrame:
    """Methods × pairs of one setting (see the module docstring)."""
    s = summary.assign(method=tuned.methods(summary, method_names(summary)))
    best = chosen(s, ["pair", "method"])
    cells = (
        best.apply(style.top1, axis=1)
        + best.apply(lambda r: style.temperature(fmt_T(r)) if fmt_T(r) else "", axis=1)
        + best.apply(tuned.setting_text, axis=1)
    )
    weak = weak_teachers(s)
    contenders = best[best["loss"].ne("ce") & best["n"].gt(0) & ~best["pair"].isin(weak)]
    winners = chosen(contenders.dropna(subset=["val_top1_mean"]), ["pair"])
    cells[winners.index] = cells[winners.index].map(style.best)
    table = best.assign(cell=cells).pivot(index="method", columns="pair", values="cell")
    teacher = s.dropna(subset=["teacher_top1_mean"]).groupby("pair")["teacher_top1_mean"].first()
    table.loc["teacher"] = [
        fmt_num(teacher.get(p)) + (style.near_chance if p in weak else "") for p in table.columns
    ]
    order = ["teacher", "ce", *sorted(m for m in table.index if m not in ("teacher", "ce"))]
    table = table.reindex([m for m in order if m in table.index])
    pairs = sorted(table.columns)
    ref = published_cells(published, pairs)
    columns = {}
    for pair in pairs:
        columns[pair] = table[pair].fillna(NOT_RUN)
        if pair in ref:
            columns[f"{pair} published"] = ref[pair].reindex(table.index).fillna("")
    return pd.DataFrame(columns).rename_axis("method").reset_index()


DETAIL = (
    ("val top-1 %", "val_top1_mean", fmt_num),
    ("Δ top-1 vs ce", "d_top1", lambda x: fmt_num(x, sign=True)),
    ("agreement %", "agreement_mean", fmt_num),
    ("fidelity KL", "fidelity_kl_mean", lambda x: fmt_num(x, 3)),
    ("student params", "student_params_mean", fmt_count),
    ("extra params", "extra_params_mean", fmt_count),
    ("compression", "compression_mean", lambda x: fmt_num(x, 1)),
    ("FLOPs", "student_flops_mean", fmt_count),
    ("train samples/s", "train_throughput_online_mean", fmt_count),
    ("train samples/s as run", "train_throughput_mean", fmt_count),
    ("infer samples/s", "infer_throughput_mean", fmt_count),
    ("latency ms", "latency_ms_mean", lambda x: fmt_num(x, 3)),
    ("peak mem MB", "peak_mem_mb_mean", lambda x: fmt_num(x, 1)),
    ("train s", "train_s_mean", lambda x: fmt_num(x, 1)),
)


def detail_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One pair: loss × T with every metric, Δ vs ce, the rank by mean test top-1 and notes
    (teacher outputs cached or online; why a seed failed or the method is N/A)."""
    s = summary.assign(method=method_names(summary))
    rank = s["top1_mean"].rank(ascending=False, method="min")
    return pd.DataFrame(
        {
            "rank": rank.map(lambda r: "" if pd.isna(r) else f"{r:.0f}"),
            "method": s["method"],
            "T": s.apply(fmt_T, axis=1) if len(s) else "",
            "test top-1 %": s.apply(fmt_top1, axis=1) if len(s) else "",
            **{label: s[col].map(fmt) for label, col, fmt in DETAIL},
            "note": [
                ", ".join(str(v) for v in (o, n) if isinstance(v, str) and v)
                for o, n in zip(
                    s["teacher_outputs"].map(
                        lambda o: f"teacher {o}" if isinstance(o, str) else ""
                    ),
                    s["note"],
                )
            ],
        }
    )


def temperature_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Loss × temperature (columns) per pair, for the losses that use a temperature: test top-1,
    the temperature chosen on validation marked ✓."""
    s = summary[summary["T"].notna()]
    if s.empty:
        return pd.DataFrame()
    s = s.assign(method=method_names(s))
    picked = chosen(s, ["pair", "method"]).index
    s = s.assign(
        cell=s.apply(fmt_top1, axis=1).where(
            ~s.index.isin(picked), s.apply(fmt_top1, axis=1) + " ✓"
        ),
        T=s["T"].map(lambda t: f"T={t:g}"),
    )
    table = s.pivot_table(index=["pair", "method"], columns="T", values="cell", aggfunc="first")
    table = table[sorted(table.columns, key=lambda c: float(c[2:]))]
    return table.fillna("N/A").reset_index().rename_axis(columns=None)
