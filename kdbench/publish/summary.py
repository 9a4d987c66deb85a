"""The selection model every report format shares: records → one row per case group
aggregated over seeds (``summarize``), the configuration chosen on **validation** top-1
(``chosen``), the sections a report is made of (one per setting that varies), provenance, and
the published reference numbers.

Nothing is chosen on the test set: where a table picks one configuration out of several (the
temperature of a loss for a pair) or marks a best method, it does so by mean validation top-1
(``val_top1``, the fixed split carved out of each training set) and then shows the chosen
configuration's test top-1.

``summarize(frame)`` gives one row per case group (every spec field but the seed), sorted by
mean test top-1: the label columns (``pair``, ``loss``, ``T`` and whichever other spec fields
vary; listed in ``.attrs["labels"]``), ``n`` (ok seeds), ``diverged``, ``error``, ``na``,
``note``, ``<metric>_mean`` / ``<metric>_std`` for every metric of ``kdbench.results.METRICS``,
``num_classes``, ``teacher_outputs`` and ``d_top1`` (Δ mean top-1 vs ``ce`` of the same pair and
setting). Metrics of diverged/error records never enter the means.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import fields

import pandas as pd

from kdbench.losses import LOSSES
from kdbench.publish import tuned
from kdbench.results import METRICS
from kdbench.run.measure import near_chance
from kdbench.spec import RunSpec, pair_name

# spec fields that describe the method of a case (the rest describe the setting it ran in)
METHOD_KEYS = ("loss", "T", "alpha", "ce_weight", "loss_options")


SETTING_KEYS = tuple(
    f.name
    for f in fields(RunSpec)
    if f.name
    not in (
        "seed",
        "teacher",
        "student",
        "temperature",
        "loss",
        "alpha",
        "ce_weight",
        "loss_options",
    )
)


FAILED = ("diverged", "error")
PER_PAIR = ("epochs", "channels_last")  # settings a profile gives per pair or student


LABELS = {
    *SETTING_KEYS,
    *METHOD_KEYS,
    "pair",
    "method",
    "case",
    "metric",
    "decision",
    "why",
    "note",
    "paper setting",
    "chosen setting",
    "epochs E",
    "converged",
}


SPEED = "train_throughput_online"  # the speed tables show and the history decides on
SELECTION = "validation top-1"  # what every choice of a table is made on


def _options_text(value: object) -> str:
    return (
        ",".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(value.items())
        )
        if isinstance(value, dict)
        else ""
    )


def _setting_options(loss: object, options: object) -> object:
    """A case's data options less those its loss trains on (MLKD's ``strong_view``): those are
    part of the method, so the method stays in its setting's table beside ``ce``."""
    if not isinstance(options, dict) or not isinstance(loss, str) or loss not in LOSSES:
        return options
    own = LOSSES.get(loss).dataset_options
    return {k: v for k, v in options.items() if own.get(k) != v}


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``pair`` and ``T`` (NaN for losses without one); dict options become text; the data
    options a loss trains on are the method's, not the setting's."""
    df = frame.copy()
    df["pair"] = [pair_name(t, s) for t, s in zip(df["teacher"], df["student"])]
    df["T"] = pd.to_numeric(df["temperature"], errors="coerce")
    if "dataset_options" in df:
        df["dataset_options"] = [
            _setting_options(loss, o) for loss, o in zip(df["loss"], df["dataset_options"])
        ]
    for col in ("loss_options", "dataset_options"):
        df[col] = df[col].map(_options_text) if col in df else ""
    for col in (*METRICS, "num_classes"):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else math.nan
    for col in ("teacher_outputs", "reason", "error"):
        if col not in df:
            df[col] = None
    return df


def label_columns(df: pd.DataFrame) -> list[str]:
    """pair, loss, T plus every setting that varies and every method knob varied within a loss
    (every knob where tuned cases chose them), so that the labels tell the case groups apart,
    and a tuned profile's stage even where it is one, so that its tables say what they hold; a
    setting a profile gives per pair (``PER_PAIR``) is told by the pair where it varies with
    the pair alone."""
    staged = "tune" in df and df["tune"].isin(["trial", "tuned"]).any()  # a tuned profile's
    settings = [
        c
        for c in SETTING_KEYS
        if c in df
        and (df[c].nunique(dropna=False) > 1 or (c == "tune" and staged))
        and not (c in PER_PAIR and df.groupby("pair")[c].nunique(dropna=False).max() == 1)
    ]
    tuned_cases = staged and df["tune"].eq("tuned").any()  # their cells name each knob
    knobs = [
        c
        for c in METHOD_KEYS[2:]
        if c in df and (tuned_cases or df.groupby("loss")[c].nunique(dropna=False).max() > 1)
    ]
    return [*settings, "pair", "loss", "T", *knobs]


def _first(values: pd.Series) -> object:
    values = values.dropna()
    return values.iloc[0] if len(values) else None


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    df = prepare(frame)
    keys = label_columns(df)
    ok = df["status"].eq("ok")
    df = df.assign(
        **{m: df[m].where(ok) for m in METRICS},
        n=ok,
        na=df["status"].eq("n/a"),
        **{s: df["status"].eq(s) for s in FAILED},
        note=df["reason"].where(df["reason"].notna(), df["error"]),
    )
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


PROVENANCE = (
    ("kdbench", "env.kdbench_version"),
    ("git", "env.git_sha"),
    ("torch", "env.torch"),
    ("device", "env.device_name"),
    ("threads", "env.threads"),
    ("seeds", "seed"),
    ("epochs", "epochs"),
    ("inference speed", "env.infer_measured"),
)
OPTIONAL_PROVENANCE = {"env.infer_measured"}  # shown only where the records have it (a speed file)


def _in_order(value: object) -> tuple[bool, object]:
    """Numbers by value (seed 2 before 100), then text."""
    return (True, str(value)) if isinstance(value, str) else (False, value)


def provenance(frame: pd.DataFrame) -> dict[str, str]:
    """What produced the numbers: each value, or the distinct values joined, per field."""
    out = {}
    for label, col in PROVENANCE:
        if col in OPTIONAL_PROVENANCE and col not in frame:
            continue
        values = frame[col].dropna().unique() if col in frame else []
        out[label] = ", ".join(str(v) for v in sorted(values, key=_in_order)) or "?"
    counts = frame["status"].value_counts()
    out["records"] = f"{len(frame)} (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"
    out["selection"] = f"temperatures and bold chosen on {SELECTION}; cells are test top-1"
    return out


def provenance_line(frame: pd.DataFrame) -> str:
    return " · ".join(f"{k} {v}" for k, v in provenance(frame).items())


PUBLISHED_DATASET = "cifar100"


PUBLISHED_METHOD = {"teacher": "teacher", "student": "ce"}  # reference name → row of ours


def method_names(summary: pd.DataFrame) -> pd.Series:
    """The loss, with the method knobs (α, options) that vary appended: a leaderboard's rows."""
    knobs = [c for c in METHOD_KEYS[2:] if c in summary]
    return summary["loss"].str.cat([c + "=" + summary[c].astype(str) for c in knobs], sep=" ")


def published_rows(published: pd.DataFrame) -> pd.DataFrame:
    """The published rows with their ``pair`` named as kdbench names pairs and ``method`` as the
    row of ours each one is (the reference's student is our ``ce``)."""
    return published.assign(
        pair=[pair_name(t, s) for t, s in zip(published["teacher"], published["student"])],
        method=published["method"].replace(PUBLISHED_METHOD),
    )


def published_cells(published: pd.DataFrame | None, pairs: list[str]) -> pd.DataFrame:
    """(method, pair) → the published top-1 values, joined over sources."""
    if published is None or published.empty:
        return pd.DataFrame()
    ref = published_rows(published)
    ref = ref.assign(top1=ref["top1"].map(lambda v: "N/A" if pd.isna(v) else str(v)))
    ref = ref[ref["pair"].isin(pairs)]
    return (
        ref.groupby(["method", "pair"])["top1"]
        .agg(lambda v: " / ".join(dict.fromkeys(v)))
        .unstack("pair")
    )


def weak_teachers(summary: pd.DataFrame) -> dict[str, float]:
    """pair → its teacher's test top-1, for teachers that score near chance."""
    rows = summary.dropna(subset=["teacher_top1_mean", "num_classes"]).drop_duplicates("pair")
    return {
        r.pair: r.teacher_top1_mean
        for r in rows.itertuples()
        if near_chance(r.teacher_top1_mean, int(r.num_classes))
    }


def teacher_warnings(summary: pd.DataFrame) -> list[str]:
    return [
        f"⚠ The teacher of {pair} scores {top1:.2f} % test top-1, near chance: its students' "
        f"numbers say nothing about distillation, and no method of it is marked best."
        for pair, top1 in sorted(weak_teachers(summary).items())
    ]


def sections(summary: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(title, rows) per setting that varies (data set, device, epochs, …); "" when none."""
    settings = [k for k in summary.attrs["labels"] if k in SETTING_KEYS]
    if not settings:
        yield "", summary
        return
    for values, part in summary.groupby(settings, sort=True, dropna=False):
        part.attrs = summary.attrs
        yield (
            tuned.title(" · ".join(f"{k} {v}" for k, v in zip(settings, values)), part, summary),
            part,
        )


def load_published() -> pd.DataFrame | None:
    """The shipped published CIFAR-100 numbers, when the reference module is installed."""
    try:
        from kdbench.reference import published
    except ImportError:
        return None
    return published()
