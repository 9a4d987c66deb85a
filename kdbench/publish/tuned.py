"""What a profile's tuning (``kdbench.matrix.tuning``) did, in a report's words. Records of a
tuned profile carry their stage in ``spec.tune``, a setting ``summarize`` splits sections by;
each such section is titled by what its numbers are: the tuned cases "tuned on validation,
N trials per method" (N counted from the trial records), the paper settings as they are, and
the trials on their seed."""

from __future__ import annotations

import pandas as pd

TUNE = "tune"  # the spec field


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
