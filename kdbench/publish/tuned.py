"""What a profile's tuning (``kdbench.matrix.tuning``) did, in a report's words. Records of a
tuned profile carry their stage in ``spec.tune``, a setting ``summarize`` splits sections by;
each such section is titled by what its numbers are: the tuned cases "tuned on validation,
N trials per method" (N counted from the trial records), the paper settings as they are, and
the trials on their seed. In a leaderboard a tuned or paper-setting method is one row named by
its loss (a tuned cell names the setting chosen for its pair); trials keep their settings in
their names."""

from __future__ import annotations

import pandas as pd

TUNE = "tune"  # the spec field
SETTINGS = ("alpha", "ce_weight", "loss_options")  # a tuned cell names these (T is named apart)


def trials_per_method(summary: pd.DataFrame) -> str:
    """The number of trials each method had on each pair ("4"), or each count where they
    differ ("kd on cnn_t/cnn_s: 4; …")."""
    trials = summary[summary[TUNE].eq("trial")] if TUNE in summary else summary.iloc[:0]
    counts = trials.groupby(["loss", "pair"]).size()
    if counts.nunique() <= 1:
        return str(counts.iloc[0]) if len(counts) else "0"
    return "; ".join(f"{loss} on {pair}: {n}" for (loss, pair), n in counts.items())


def title(title: str, part: pd.DataFrame, summary: pd.DataFrame) -> str:
    """A section's ``title`` (``kdbench.publish.summary.sections``) with its tuning stage said in
    words; a title without one as it is."""
    if TUNE not in part or not len(part):
        return title
    stage = part[TUNE].iloc[0]
    if stage == "tuned":
        words = f"tuned on validation, {trials_per_method(summary)} trials per method"
    elif stage == "trial":
        words = "tuning trials on the tuning seed, chosen on validation top-1"
    else:
        words = "paper settings, untuned"
    return " · ".join([*(t for t in title.split(" · ") if not t.startswith(f"{TUNE} ")), words])


def methods(summary: pd.DataFrame, names: pd.Series) -> pd.Series:
    """A leaderboard's row names: ``names`` (the loss and its varying settings), the loss alone
    for the tuned and paper-setting rows of a tuned profile (one row per method, whatever each
    pair chose)."""
    if TUNE not in summary:
        return names
    return names.where(summary[TUNE].eq("trial"), summary["loss"])


def setting_text(row: pd.Series) -> str:
    """`` alpha=0.5 ce_weight=0.5`` after the cell of a tuned row with a teacher: its chosen
    setting; "" for any other row."""
    if row.get(TUNE) != "tuned" or row["loss"] == "ce":
        return ""
    words = [
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k in SETTINGS
        if isinstance(v := row.get(k), (float, str)) and v != ""
    ]
    return " " + " ".join(words) if words else ""
