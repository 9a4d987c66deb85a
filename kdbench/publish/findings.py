"""What a record set says in words, beside its tables: per pair, the teacher, ``ce``, the best
method chosen on validation and how many methods beat or fall below ``ce`` beyond seed noise
(``findings``); where choosing on the test set would have chosen otherwise (``selection``); how
its ranking of the methods agrees with the published CIFAR-100 one (``published_agreement``).
They read a ``summarize`` frame of one setting (``sections``); ``lines`` gives them for every
setting, as the Markdown report prints them. ``citation`` reads the paper of a method from its
loss class's docstring, for the tables that name methods (``kdbench list losses``, the docs)."""

from __future__ import annotations

import math
import re

import pandas as pd
from scipy import stats

from kdbench.publish.summary import chosen, published_rows, sections
from kdbench.spec import PAIR_SEP, pair_name

# The published pair with the most methods (CRD, DKD, logit standardization, DIST, the 2023–25
# papers all report it): the reference ranking for pairs that were not published themselves.
REFERENCE_PAIR = pair_name("resnet32x4", "resnet8x4")
MIN_SHARED = 5  # fewer methods in both tables give no rank correlation worth a sentence
AGREEMENT_CAVEAT = (
    "Caveats: different data, models, epochs and per-method settings; each published number "
    "comes from its own paper's recipe (often tuned on CIFAR-100 itself, one run or a mean of "
    "a few), and the published top methods lie within about a point of each other, so their "
    "order there is partly noise."
)

# A loss docstring's first line: Authors, "Title", Venue Year[: which variant].
CITATION = re.compile(
    r'^(?P<authors>[^"]+), "(?P<title>[^"]+)", (?P<venue>.+?) '
    r"(?P<year>(?:19|20)\d\d)(?:: (?P<note>.+?))?\.?$"
)


def citation(loss: type) -> dict[str, str]:
    """paper (authors, title and the variant), venue and year of a loss class; a docstring
    that names no paper (``ce``) is the paper column as it is, venue and year empty."""
    first = ((loss.__doc__ or "").strip().splitlines() or [""])[0]
    m = CITATION.match(first)
    if not m:
        return {"paper": first, "venue": "", "year": ""}
    note = f" ({m['note']})" if m["note"] else ""
    return {
        "paper": f'{m["authors"]}, "{m["title"]}"{note}',
        "venue": m["venue"],
        "year": m["year"],
    }


def findings(summary: pd.DataFrame) -> list[str]:
    """One line per pair that has ``ce`` and at least one method with ok seeds. "Beyond seed
    noise" is more than twice ``ce``'s seed std; with one ``ce`` seed there is no std and the
    line says so instead of counting."""
    s = summary[summary["n"].gt(0)]
    lines = []
    for pair, rows in s.groupby("pair"):
        ce_rows = rows[rows["loss"].eq("ce")]
        methods = chosen(rows[rows["loss"].ne("ce")], ["loss"])
        if ce_rows.empty or methods.empty:
            continue
        ce = ce_rows.iloc[0]
        best = chosen(methods, ["pair"]).iloc[0]
        teacher = ce["teacher_top1_mean"]
        margin = 2 * ce["top1_std"]
        spread = f" ± {ce['top1_std']:.2f}" if math.isfinite(margin) else ""
        line = (
            f"- **{pair}**: teacher "
            f"{'?' if pd.isna(teacher) else f'{teacher:.2f}'} %, `ce` "
            f"{ce['top1_mean']:.2f}{spread} %; best on validation: "
            f"`{best['loss']}` at {best['top1_mean']:.2f} % test "
            f"({best['top1_mean'] - ce['top1_mean']:+.2f} points). "
        )
        if not math.isfinite(margin):
            lines.append(line + "`ce` has one seed: no seed std to tell a gain from noise.")
            continue
        delta = methods["top1_mean"] - ce["top1_mean"]
        above = sorted(methods.loc[delta > margin, "loss"])
        below = sorted(methods.loc[delta < -margin, "loss"])
        lines.append(
            line + f"{len(above)} of {len(methods)} methods beat `ce` by more than twice its "
            f"seed std ({', '.join(above) or 'none'}); {len(below)} fall below it by as much "
            f"({', '.join(below) or 'none'})."
        )
    return lines


def selection(summary: pd.DataFrame) -> str:
    """Where choosing on test top-1 would have picked another temperature or best method."""
    s = summary.assign(method=summary["loss"])
    lines = []
    by_test = s.assign(val_top1_mean=s["top1_mean"])
    for (pair, method), rows in s[s["T"].notna()].groupby(["pair", "method"]):
        val_t = chosen(rows, ["pair", "method"])["T"].iloc[0]
        test_t = chosen(by_test.loc[rows.index], ["pair", "method"])["T"].iloc[0]
        if val_t != test_t:
            lines.append(f"{method} on {pair}: T={val_t:g} on validation, T={test_t:g} on test")
    contenders = s[s["loss"].ne("ce") & s["n"].gt(0)]
    for pair, rows in contenders.groupby("pair"):
        val_best = chosen(rows, ["pair"])["method"].iloc[0]
        test_best = chosen(by_test.loc[rows.index], ["pair"])["method"].iloc[0]
        if val_best != test_best:
            lines.append(
                f"the best method on {pair}: {val_best} on validation, {test_best} on test"
            )
    if not lines:
        return "Here validation and test happen to choose alike."
    return (
        "Where the test set would have chosen otherwise here: "
        + "; ".join(lines)
        + ". The tables show the validation choice."
    )


def published_agreement(summary: pd.DataFrame, published: pd.DataFrame | None) -> list[str]:
    """Per pair, Spearman's rank correlation between its methods' test top-1 (each at the
    setting chosen on validation; ``ce`` left out) and the published CIFAR-100 top-1 of the
    same methods, on the same pair where it was published, else on ``REFERENCE_PAIR`` (a
    method published by several sources: their mean). Pairs sharing fewer than ``MIN_SHARED``
    methods with it are left out; the caveat follows the lines."""
    if published is None:
        return []
    paper = published_rows(published).dropna(subset=["top1"])  # its teacher, ce: none of ours
    methods = summary[summary["n"].gt(0) & summary["loss"].ne("ce")]
    out = []
    for pair, rows in methods.groupby("pair"):
        ref = pair if pair in set(paper["pair"]) else REFERENCE_PAIR
        theirs = paper[paper["pair"].eq(ref)].groupby("method")["top1"].mean()
        ours = chosen(rows, ["loss"]).set_index("loss")["top1_mean"]
        shared = sorted(set(ours.index) & set(theirs.index))
        if len(shared) < MIN_SHARED:
            continue
        rho, p = stats.spearmanr(ours[shared], theirs[shared])
        out.append(
            f"- **{pair}** against the published CIFAR-100 {ref.replace(PAIR_SEP, ' → ')} table, "
            f"{len(shared)} methods in both: Spearman ρ = {rho:+.2f} (p = {p:.2g})."
        )
    return [*out, "", AGREEMENT_CAVEAT] if out else []


def lines(summary: pd.DataFrame, published: pd.DataFrame | None = None) -> list[str]:
    """Findings, the selection note and the agreement with the published CIFAR-100 ranking of
    every setting, a setting's title above its own."""
    out: list[str] = []
    for title, part in sections(summary):
        if title:
            out += [f"### {title}", ""]
        found = findings(part)
        out += [*found, ""] if found else []
        out += [selection(part), ""]
        agreement = published_agreement(part, published)
        if agreement:
            out += [*agreement, ""]
    return out
