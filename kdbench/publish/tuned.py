"""What a profile's tuning (``kdbench.matrix.tuning``) did, in a report's words. Records of a
tuned profile carry their stage in ``spec.tune``, a setting ``summarize`` splits sections by;
each such section is titled by what its numbers are: the tuned cases "tuned on validation,
N trials per method" (N counted from the trial records), the paper settings as they are, and
the trials on their seed. In a leaderboard a tuned or paper-setting method is one row named by
its loss (a tuned cell names the setting chosen for its pair); trials keep their settings in
their names."""

from __future__ import annotations

import pandas as pd

from kdbench.losses import LOSSES
from kdbench.matrix import tuning
from kdbench.spec import pair_name

TUNE = "tune"  # the spec field
TUNED_WORDS = "tuned on validation"  # what a section of tuned cases is titled by
CHANGES_HEADING = (
    "## What tuning changed — each method's trial at its paper setting and the trial chosen "
    "on validation top-1, on the tuning seed"
)


def trials_per_method(summary: pd.DataFrame) -> str:
    """The number of trials each method had on each pair, in words: "4 trials per method"; the
    most common count and the exceptions where they differ ("4 trials per method, except rkd on
    cnn_t/cnn_s: 1"); "" when there are none."""
    trials = summary[summary[TUNE].eq("trial")] if TUNE in summary else summary.iloc[:0]
    counts = trials.groupby(["loss", "pair"]).size()
    if not len(counts):
        return ""
    freq = counts.value_counts()
    most = freq[freq.eq(freq.max())].index.max()
    fewer = [f"{loss} on {pair}: {n}" for (loss, pair), n in counts.items() if n != most]
    return f"{most} trials per method" + (f", except {'; '.join(fewer)}" if fewer else "")


def title(title: str, part: pd.DataFrame, summary: pd.DataFrame) -> str:
    """A section's ``title`` (``kdbench.publish.summary.sections``) with its tuning stage said in
    words; a title without one as it is."""
    if TUNE not in part or not len(part):
        return title
    stage = part[TUNE].iloc[0]
    if stage == "tuned":
        words = f"{TUNED_WORDS}, " + (
            trials_per_method(summary) or "the trials not in these records"
        )
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
    """`` alpha=0.5 nckd_weight=2`` after the cell of a tuned row with a teacher: its chosen
    setting, the weights where they are not the loss's own, then its options; "" for any other
    row (T is named apart)."""
    if row.get(TUNE) != "tuned" or row["loss"] == "ce":
        return ""
    ce_weight, alpha = LOSSES.get(row["loss"]).weights(None)
    words = [
        f"{k}={v:g}"
        for k, own in (("alpha", alpha), ("ce_weight", ce_weight))
        if isinstance(v := row.get(k), float) and v != own
    ]
    options = row.get("loss_options")
    words += options.split(",") if isinstance(options, str) and options else []
    return " " + " ".join(words) if words else ""


def _setting(row: pd.Series) -> dict[str, object]:
    options = row.get("loss_options")
    return {
        "T": row.get("temperature"),
        "alpha": row.get("alpha"),
        "ce_weight": row.get("ce_weight"),
        **(options if isinstance(options, dict) else {}),
    }


def _paper(loss: str) -> dict[str, object]:
    """A loss's own settings: its paper's temperature, weights and options."""
    cls = LOSSES.get(loss)
    ce_weight, alpha = cls.weights(None)
    t = cls.default_temperature if cls.uses_temperature else None
    return {"T": t, "alpha": alpha, "ce_weight": ce_weight, **cls.options}


def _words(setting: dict[str, object], keys: list[str]) -> str:
    return " ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in zip(keys, map(setting.get, keys))
    )


def changes(frame: pd.DataFrame) -> pd.DataFrame:
    """What tuning changed, from the trial records of ``frame`` (records_frame): per pair and
    method, its trial at the paper setting and the trial chosen on validation top-1, each with
    its validation and test top-1 on the tuning seed; the settings named by what the trials
    vary. Empty without trials."""
    if TUNE not in frame:
        return pd.DataFrame()
    trials = frame[frame[TUNE].eq("trial") & frame["status"].eq("ok")]
    rows = []
    for (teacher, student, loss), group in trials.groupby(["teacher", "student", "loss"]):
        settings = [_setting(r) for _, r in group.iterrows()]
        keys = [k for k in settings[0] if len({str(s.get(k)) for s in settings}) > 1]
        paper = _paper(loss)
        at_paper = [i for i, s in enumerate(settings) if all(s[k] == paper.get(k) for k in keys)]
        order = [
            (*tuning.rank(r[tuning.CRITERION], r), i) for i, (_, r) in enumerate(group.iterrows())
        ]
        best = min(order)[-1]
        chosen = group.iloc[best]
        row = {"pair": pair_name(teacher, student), "loss": loss}
        if at_paper:
            p = group.iloc[at_paper[0]]
            row |= {
                "paper setting": _words(settings[at_paper[0]], keys),
                "paper val": f"{p['val_top1']:.2f}",
                "paper test": f"{p['top1']:.2f}",
            }
        else:
            row |= {"paper setting": "not among the trials", "paper val": "", "paper test": ""}
        row |= {
            "chosen setting": _words(settings[best], keys),
            "chosen val": f"{chosen['val_top1']:.2f}",
            "chosen test": f"{chosen['top1']:.2f}",
        }
        rows.append(row)
    return pd.DataFrame(rows)


def change_findings(changes: pd.DataFrame) -> list[str]:
    """``changes`` in words, per pair: how many methods tuning moved off their paper setting,
    what that did to their test top-1 on the tuning seed (median, and the largest moves; one
    run each, so a move smaller than about twice the seed std of the tuned cases is noise)."""
    lines = []
    for pair, rows in changes[changes["paper test"].ne("")].groupby("pair", sort=True):
        moved = rows[rows["paper setting"].ne(rows["chosen setting"])]
        gain = moved["chosen test"].astype(float) - moved["paper test"].astype(float)
        line = (
            f"- **{pair}**: tuning kept the paper setting of {len(rows) - len(moved)} of "
            f"{len(rows)} methods"
        )
        if len(moved):
            top = moved.assign(gain=gain).sort_values("gain", key=abs, ascending=False).head(3)
            largest = "; ".join(
                f"`{r['loss']}` {r['paper setting']} → {r['chosen setting']} ({r['gain']:+.2f})"
                for _, r in top.iterrows()
            )
            line += (
                f"; it moved {len(moved)}, their test top-1 on the tuning seed by "
                f"{gain.median():+.2f} points (median); the largest moves: {largest}"
            )
        lines.append(line + ".")
    return lines


def best(summary: pd.DataFrame, pair: str, n: int, besides: tuple[str, ...] = ()) -> list[str]:
    """The ``n`` methods with the best mean validation top-1 of their tuned cases on ``pair``
    (``summarize`` rows; ties by name), ``besides`` left out: what the size sweep of a tuned
    profile runs besides ``ce`` and ``kd``. Test top-1 is never read."""
    if TUNE not in summary:
        return []
    rows = summary[
        summary[TUNE].eq("tuned") & summary["pair"].eq(pair) & ~summary["loss"].isin(besides)
    ].dropna(subset=["val_top1_mean"])
    ranked = rows.sort_values(["val_top1_mean", "loss"], ascending=[False, True])
    return list(ranked["loss"].head(n))
