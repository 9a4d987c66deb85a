"""Records → pandas tables → Markdown / CSV / JSON: the leaderboards of ``kdbench report``.

Nothing is chosen on the test set: where a table picks one configuration out of several (the
temperature of a loss for a pair) or marks a best method, it does so by mean **validation**
top-1 (``val_top1``, the fixed split carved out of each training set) and then shows the
chosen configuration's **test** top-1.

Public API (every function takes the frame of ``kdbench.results.records_frame``, one record
per case: the newest):

- ``summarize(frame) -> DataFrame``: one row per case group (every spec field but the seed),
  aggregated over seeds, sorted by mean test top-1: the label columns (``pair``, ``loss``, ``T``
  and whichever other spec fields vary; listed in ``.attrs["labels"]``), ``n`` (ok seeds),
  ``diverged``, ``error``, ``na`` (not applicable), ``note`` (the reason or error of a failed or
  N/A seed), ``<metric>_mean`` / ``<metric>_std`` for every metric of
  ``kdbench.results.METRICS``, ``num_classes``, ``teacher_outputs`` and ``d_top1`` (Δ mean
  top-1 vs ``ce`` of the same pair and setting). Metrics of diverged/error records never enter
  the means.
- ``session_report(frame) -> str``: the Markdown leaderboard a pytest session prints and writes
  next to its records.
- ``leaderboard(summary, published=None) -> DataFrame``: paper-style, methods × pairs, cells
  ``mean ± std (n)`` of test top-1 at the temperature chosen on validation (shown), the best
  method per pair on validation in bold, teacher and ``ce`` rows on top, ``N/A`` where a method
  does not apply to a pair, a "published" column next to a pair the reference lists; a teacher
  near chance is flagged. ``leaderboard(summary, published, style)``: a ``CellStyle`` writes
  the cells (Markdown by default; LaTeX for ``kdbench.latex``). ``leaderboards(frame, summary,
  published, style)`` yields one per section (``sections``), published numbers only for
  CIFAR-100; ``method_names(summary)`` are its rows.
- ``detail_table(summary)``, ``temperature_table(summary)``: the per-pair detail (every metric,
  Δ vs ``ce``, rank by test top-1, notes) and loss × temperature (test top-1, the validation
  choice marked).
- ``sections(summary)``: (title, part) per setting (data set, device, epochs, … where they
  vary); every table and plot is made per section, never across two.
- ``build_report(frame, published=None, notes=()) -> Report``: every table of the full report;
  ``Report`` has ``to_markdown()``, ``to_csv()`` (the tidy ``summarize`` frame) and
  ``to_json()``; ``render(frame, fmt)`` picks one. ``published`` is the frame of
  ``kdbench.reference.published()`` (columns method, teacher, student, top1, …) and is matched
  on data set ``cifar100``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Callable, Iterator, Sequence

import pandas as pd

from kdbench.measure import near_chance
from kdbench.results import METRICS
from kdbench.spec import RunSpec, pair_name

# spec fields that describe the method of a case (the rest describe the setting it ran in)
METHOD_KEYS = ("loss", "T", "alpha", "ce_weight", "loss_options")
SETTING_KEYS = tuple(f.name for f in fields(RunSpec)
                     if f.name not in ("seed", "teacher", "student", "temperature", "loss",
                                       "alpha", "ce_weight", "loss_options"))
FAILED = ("diverged", "error")
LABELS = {*SETTING_KEYS, *METHOD_KEYS, "pair", "method", "case", "metric", "decision", "why",
          "note"}
SELECTION = "validation top-1"  # what every choice of a table is made on


def _options_text(value: object) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in sorted(value.items())) if isinstance(value, dict) else ""


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``pair`` and ``T`` (NaN for losses without one); dict options become text."""
    df = frame.copy()
    df["pair"] = [pair_name(t, s) for t, s in zip(df["teacher"], df["student"])]
    df["T"] = pd.to_numeric(df["temperature"], errors="coerce")
    for col in ("loss_options", "dataset_options"):
        df[col] = df[col].map(_options_text) if col in df else ""
    for col in (*METRICS, "num_classes"):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else math.nan
    for col in ("teacher_outputs", "reason", "error"):
        if col not in df:
            df[col] = None
    return df


def label_columns(df: pd.DataFrame) -> list[str]:
    """pair, loss, T plus every setting that varies and every method knob varied within a loss,
    so that the labels tell the case groups apart."""
    settings = [c for c in SETTING_KEYS if c in df and df[c].nunique(dropna=False) > 1]
    knobs = [c for c in METHOD_KEYS[2:] if c in df
             and df.groupby("loss")[c].nunique(dropna=False).max() > 1]
    return settings + ["pair", "loss", "T"] + knobs


def _first(values: pd.Series) -> object:
    values = values.dropna()
    return values.iloc[0] if len(values) else None


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    df = prepare(frame)
    keys = label_columns(df)
    ok = df["status"].eq("ok")
    df = df.assign(**{m: df[m].where(ok) for m in METRICS}, n=ok, na=df["status"].eq("n/a"),
                   **{s: df["status"].eq(s) for s in FAILED},
                   note=df["reason"].where(df["reason"].notna(), df["error"]))
    grouped = df.groupby(keys, dropna=False, sort=False)
    stats = grouped[list(METRICS)].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    firsts = grouped[["num_classes", "teacher_outputs", "note"]].agg(_first)
    out = grouped[["n", "na", *FAILED]].sum().join(stats).join(firsts).reset_index()
    setting = [k for k in keys if k not in METHOD_KEYS]
    ce = out[out["loss"].eq("ce")].set_index(setting)["top1_mean"].rename("ce_top1")
    out["d_top1"] = out["top1_mean"] - out.join(ce, on=setting)["ce_top1"]
    out = out.sort_values("top1_mean", ascending=False, na_position="last", kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["labels"] = keys
    return out


def chosen(summary: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The row of each ``by`` group with the best mean validation top-1 (ties: the lower T, then
    the order of ``summary``); groups without validation numbers keep their first row."""
    order = summary.assign(_val=summary["val_top1_mean"].fillna(-math.inf))
    order = order.sort_values(["_val", "T"], ascending=[False, True], kind="stable")
    return order.drop_duplicates(list(by)).drop(columns="_val")


# ---------------------------------------------------------------- cell formatting

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
    out["selection"] = f"temperatures and bold chosen on {SELECTION}; cells are test top-1"
    return out


def provenance_line(frame: pd.DataFrame) -> str:
    return " · ".join(f"{k} {v}" for k, v in provenance(frame).items())


# ---------------------------------------------------------------- session leaderboard

def session_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per case group over seeds, sorted by mean test top-1 (the minimum leaderboard)."""
    s = summary
    return _labels_view(s, s.attrs["labels"]).assign(**{
        "test top-1 %": s.apply(fmt_top1, axis=1),
        "val top-1 %": s["val_top1_mean"].map(fmt_num),
        "Δ top-1 vs ce": s["d_top1"].map(lambda x: fmt_num(x, sign=True)),
        "agreement %": s["agreement_mean"].map(fmt_num),
        "fidelity KL": s["fidelity_kl_mean"].map(lambda x: fmt_num(x, 3)),
        "student params": s["student_params_mean"].map(fmt_count),
        "FLOPs": s["student_flops_mean"].map(fmt_count),
        "train samples/s": s["train_throughput_online_mean"].map(fmt_count),
        "infer samples/s": s["infer_throughput_mean"].map(fmt_count),
    })


def session_report(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """The Markdown leaderboard printed at the end of a pytest session: one row per case group,
    then the paper-style methods × pairs table(s), with published numbers where they exist."""
    if frame.empty:
        return "No kdbench records.\n"
    summary = summarize(frame)
    blocks = [provenance_line(frame), *notes, markdown(session_table(summary))]
    for heading, table, warnings in leaderboards(frame, summary, load_published()):
        blocks += [f"#{heading} ({LEADERBOARD_NOTE})", markdown(table), *warnings]
    blocks.append(COLUMNS_NOTE)
    return "\n\n".join(blocks) + "\n"


# ---------------------------------------------------------------- full report

PUBLISHED_DATASET = "cifar100"
PUBLISHED_METHOD = {"teacher": "teacher", "student": "ce"}  # reference name → row of ours
LEADERBOARD_NOTE = f"test top-1; T and bold chosen on {SELECTION}"
COLUMNS_NOTE = (
    "Cells: mean ± std (n ok seeds) of **test** top-1 %. The temperature of each cell (T=) and "
    f"the **bold** best method per pair are chosen on {SELECTION}, never on test. "
    "diverged / error: seeds that failed (not counted as 0 %); N/A: the method does not apply "
    "to the pair. train samples/s: training steps with the teacher's forward pass included for "
    "every distillation method (measured where the teacher ran online; measured step time + "
    "the teacher's measured forward time where its outputs were cached).")


def method_names(summary: pd.DataFrame) -> pd.Series:
    """The loss, with the method knobs (α, options) that vary appended: a leaderboard's rows."""
    knobs = [c for c in METHOD_KEYS[2:] if c in summary]
    return summary["loss"].str.cat([c + "=" + summary[c].astype(str) for c in knobs], sep=" ")


def _published_cells(published: pd.DataFrame | None, pairs: list[str]) -> pd.DataFrame:
    """(method, pair) → the published top-1 values, joined over sources."""
    if published is None or published.empty:
        return pd.DataFrame()
    ref = published.assign(pair=[pair_name(t, s) for t, s in
                                 zip(published["teacher"], published["student"])],
                           method=published["method"].replace(PUBLISHED_METHOD),
                           top1=published["top1"].map(lambda v: "N/A" if pd.isna(v) else str(v)))
    ref = ref[ref["pair"].isin(pairs)]
    return ref.groupby(["method", "pair"])["top1"].agg(
        lambda v: " / ".join(dict.fromkeys(v))).unstack("pair")


def weak_teachers(summary: pd.DataFrame) -> dict[str, float]:
    """pair → its teacher's test top-1, for teachers that score near chance."""
    rows = summary.dropna(subset=["teacher_top1_mean", "num_classes"]).drop_duplicates("pair")
    return {r.pair: r.teacher_top1_mean for r in rows.itertuples()
            if near_chance(r.teacher_top1_mean, int(r.num_classes))}


@dataclass(frozen=True)
class CellStyle:
    """How ``leaderboard`` writes a cell: Markdown by default; ``kdbench.latex`` passes its own.
    ``top1``: a chosen configuration's test top-1 (a ``summarize`` row); ``temperature``: its
    ``fmt_T`` text; ``best``: the marked cell; ``near_chance``: after a weak teacher's top-1."""

    top1: Callable[[pd.Series], str] = fmt_top1
    temperature: Callable[[str], str] = " T={}".format
    best: Callable[[str], str] = "**{}**".format
    near_chance: str = " ⚠ near chance"


def leaderboard(summary: pd.DataFrame, published: pd.DataFrame | None = None,
                style: CellStyle = CellStyle()) -> pd.DataFrame:
    """Methods × pairs of one setting (see the module docstring)."""
    s = summary.assign(method=method_names(summary))
    best = chosen(s, ["pair", "method"])
    cells = best.apply(style.top1, axis=1) + best.apply(
        lambda r: style.temperature(fmt_T(r)) if fmt_T(r) else "", axis=1)
    weak = weak_teachers(s)
    contenders = best[best["loss"].ne("ce") & best["n"].gt(0) & ~best["pair"].isin(weak)]
    winners = chosen(contenders.dropna(subset=["val_top1_mean"]), ["pair"])
    cells[winners.index] = cells[winners.index].map(style.best)
    table = best.assign(cell=cells).pivot(index="method", columns="pair", values="cell")
    teacher = s.dropna(subset=["teacher_top1_mean"]).groupby("pair")["teacher_top1_mean"].first()
    table.loc["teacher"] = [fmt_num(teacher.get(p)) + (style.near_chance if p in weak else "")
                            for p in table.columns]
    order = ["teacher", "ce"] + sorted(m for m in table.index if m not in ("teacher", "ce"))
    table = table.reindex([m for m in order if m in table.index])
    pairs = sorted(table.columns)
    ref = _published_cells(published, pairs)
    columns = {}
    for pair in pairs:
        columns[pair] = table[pair].fillna("N/A")
        if pair in ref:
            columns[f"{pair} published"] = ref[pair].reindex(table.index).fillna("")
    return pd.DataFrame(columns).rename_axis("method").reset_index()


def teacher_warnings(summary: pd.DataFrame) -> list[str]:
    return [f"⚠ The teacher of {pair} scores {top1:.2f} % test top-1, near chance: its students' "
            f"numbers say nothing about distillation, and no method of it is marked best."
            for pair, top1 in sorted(weak_teachers(summary).items())]


DETAIL = (("val top-1 %", "val_top1_mean", fmt_num),
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
          ("train s", "train_s_mean", lambda x: fmt_num(x, 1)))


def detail_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One pair: loss × T with every metric, Δ vs ce, the rank by mean test top-1 and notes
    (teacher outputs cached or online; why a seed failed or the method is N/A)."""
    s = summary.assign(method=method_names(summary))
    rank = s["top1_mean"].rank(ascending=False, method="min")
    return pd.DataFrame({
        "rank": rank.map(lambda r: "" if pd.isna(r) else f"{r:.0f}"),
        "method": s["method"], "T": s.apply(fmt_T, axis=1) if len(s) else "",
        "test top-1 %": s.apply(fmt_top1, axis=1) if len(s) else "",
        **{label: s[col].map(fmt) for label, col, fmt in DETAIL},
        "note": [", ".join(str(v) for v in (o, n) if isinstance(v, str) and v)
                 for o, n in zip(s["teacher_outputs"].map(
                     lambda o: f"teacher {o}" if isinstance(o, str) else ""), s["note"])]})


def temperature_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Loss × temperature (columns) per pair, for the losses that use a temperature: test top-1,
    the temperature chosen on validation marked ✓."""
    s = summary[summary["T"].notna()]
    if s.empty:
        return pd.DataFrame()
    s = s.assign(method=method_names(s))
    picked = chosen(s, ["pair", "method"]).index
    s = s.assign(cell=s.apply(fmt_top1, axis=1).where(~s.index.isin(picked),
                                                      s.apply(fmt_top1, axis=1) + " ✓"),
                 T=s["T"].map(lambda t: f"T={t:g}"))
    table = s.pivot_table(index=["pair", "method"], columns="T", values="cell",
                          aggfunc="first")
    table = table[sorted(table.columns, key=lambda c: float(c[2:]))]
    return table.fillna("N/A").reset_index().rename_axis(columns=None)


def sections(summary: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(title, rows) per setting that varies (data set, device, epochs, …); "" when none."""
    settings = [k for k in summary.attrs["labels"] if k in SETTING_KEYS]
    if not settings:
        yield "", summary
        return
    for values, part in summary.groupby(settings, sort=True, dropna=False):
        part.attrs = summary.attrs
        yield " · ".join(f"{k} {v}" for k, v in zip(settings, values)), part


@dataclass
class Report:
    provenance: dict[str, str]
    summary: pd.DataFrame  # summarize(frame)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (heading, cells)
    notes: list[str] = field(default_factory=list)  # lines under the provenance

    def to_markdown(self) -> str:
        lines = ["# kdbench report", "",
                 *(f"- **{k}**: {v}" for k, v in self.provenance.items()), ""]
        lines += [*(f"{note}\n" for note in self.notes)]
        for heading, table in self.tables:
            lines += [heading, "", markdown(table), ""]
        lines += [*(f"{w}\n" for w in teacher_warnings(self.summary)), COLUMNS_NOTE]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        return self.summary.to_csv(index=False)

    def to_dict(self) -> dict:
        return {"provenance": self.provenance, "notes": self.notes,
                "groups": json.loads(self.summary.to_json(orient="records")),
                "tables": [{"title": h.lstrip("# "), "rows": t.to_dict(orient="records")}
                           for h, t in self.tables]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def leaderboards(frame: pd.DataFrame, summary: pd.DataFrame, published: pd.DataFrame | None,
                 style: CellStyle = CellStyle()):
    """(heading, paper-style table, warnings) per setting, in the order of ``sections``;
    published numbers for CIFAR-100."""
    for title, part in sections(summary):
        suffix = f" ({title})" if title else ""
        datasets = set((part if "dataset" in part else frame)["dataset"])
        ref = published if datasets == {PUBLISHED_DATASET} else None
        yield f"## Leaderboard{suffix}", leaderboard(part, ref, style), teacher_warnings(part)


def build_report(frame: pd.DataFrame, published: pd.DataFrame | None = None,
                 notes: Sequence[str] = ()) -> Report:
    summary = summarize(frame)
    report = Report(provenance=provenance(frame), summary=summary, notes=list(notes))
    boards = leaderboards(frame, summary, published)
    for (title, part), (heading, board, _) in zip(sections(summary), boards):
        suffix = f" ({title})" if title else ""
        report.tables.append((f"{heading} — {LEADERBOARD_NOTE}", board))
        for pair, rows in part.groupby("pair", sort=True):
            report.tables.append((f"### {pair}{suffix}", detail_table(rows)))
        temps = temperature_table(part)
        if not temps.empty:
            report.tables.append((f"## Temperature{suffix} — test top-1; ✓ chosen on "
                                  f"{SELECTION}", temps))
    return report


def load_published() -> pd.DataFrame | None:
    """The shipped published CIFAR-100 numbers, when the reference module is installed."""
    try:
        from kdbench.reference import published
    except ImportError:
        return None
    return published()


FORMATS = ("md", "csv", "json")


def render(frame: pd.DataFrame, fmt: str = "md", published: pd.DataFrame | None = None) -> str:
    report = build_report(frame, published)
    return {"md": report.to_markdown, "csv": report.to_csv, "json": report.to_json}[fmt]()
