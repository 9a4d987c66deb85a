"""Regenerate the README's generated sections from the code and the committed records.

Each section sits between ``<!-- kdbench:NAME -->`` and ``<!-- /kdbench:NAME -->`` and is
rewritten from what it describes: the profile and method tables from the registries, the
leaderboards from the committed records (``kdbench report``'s own tables), the count of
methods from the loss registry. ``tests/test_readme.py`` fails when the README and this script
disagree, so the README's tables and counts stay true.

    python scripts/readme.py            # rewrite README.md
    python scripts/readme.py --check    # exit 1 when README.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from kdbench.gate.thresholds import Thresholds
from kdbench.losses import LOSSES
from kdbench.matrix.profiles import PROFILES
from kdbench.publish import latex
from kdbench.publish.markdown import leaderboards, markdown
from kdbench.publish.summary import chosen, load_published, provenance_line, summarize
from kdbench.publish.tables import COLUMNS_NOTE, LEADERBOARD_NOTE, session_table
from kdbench.results import read, records_frame

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECTION = re.compile(r"(<!-- kdbench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /kdbench:(?P=name) -->)",
                     re.S)


def _pairs(pairs: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{t}→{s}" for t, s in pairs) if len(pairs) <= 3 else f"{len(pairs)} pairs"


def profiles() -> str:
    rows = []
    for name in PROFILES.names():
        p = PROFILES.get(name)
        rows.append({"profile": f"`{name}`", "data": p.dataset, "pairs": _pairs(p.pairs),
                     "recipe": p.recipe, "epochs": p.epochs, "batch": p.batch_size,
                     "seeds": p.seeds, "cases per device": len(p.specs(("cpu",)))})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def methods() -> str:
    rows = []
    for name in LOSSES.names():
        cls = LOSSES.get(name)
        defaults = ", ".join(f"{k}={v:g}" for k, v in cls.options.items())
        rows.append({"name": f"`{name}`", "paper": cls.paper(),
                     "T": f"{cls.default_temperature:g}" if cls.uses_temperature else "",
                     "defaults": defaults})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def method_count() -> str:
    return f"{len(LOSSES) - 1} distillation methods\n"


def leaderboard(paths: list[Path]) -> Callable[[], str]:
    """The provenance line and the paper-style leaderboard(s) of committed records."""

    def render() -> str:
        frame = records_frame(read(paths).records)
        summary = summarize(frame)
        blocks = [f"```\n{provenance_line(frame)}\n```"]
        for heading, table, warnings in leaderboards(frame, summary, load_published()):
            blocks += [f"Leaderboard ({LEADERBOARD_NOTE}):", markdown(table), *warnings]
        return "\n\n".join(blocks) + "\n"

    return render


def per_case(paths: list[Path], rows: int) -> Callable[[], str]:
    """The first rows of the per-case table (one row per pair, loss and T over seeds)."""

    def render() -> str:
        table = session_table(summarize(records_frame(read(paths).records)))
        return markdown(table.head(rows)) + "\n"

    return render


def latex_table(paths: list[Path]) -> Callable[[], str]:
    """``kdbench report --format latex`` of committed records, as the README shows it."""

    def render() -> str:
        frame = records_frame(read(paths).records)
        return f"```latex\n{latex.render(frame, load_published())}```\n"

    return render


def findings(paths: list[Path]) -> Callable[[], str]:
    """Per pair, in words: the teacher, ce, the best method chosen on validation, and how many
    methods beat or fall below ce by more than twice ce's seed std (their chosen T each)."""

    def render() -> str:
        s = summarize(records_frame(read(paths).records))
        s = s[s["n"].gt(0)]
        lines = []
        for pair, rows in s.groupby("pair"):
            ce = rows[rows["loss"].eq("ce")].iloc[0]
            methods = chosen(rows[rows["loss"].ne("ce")], ["loss"])
            best = chosen(methods, ["pair"]).iloc[0]
            margin = 2 * ce["top1_std"]
            delta = methods["top1_mean"] - ce["top1_mean"]
            above = sorted(methods.loc[delta > margin, "loss"])
            below = sorted(methods.loc[delta < -margin, "loss"])
            lines.append(
                f"- **{pair}**: teacher {ce['teacher_top1_mean']:.2f} %, `ce` "
                f"{ce['top1_mean']:.2f} ± {ce['top1_std']:.2f} %; best on validation: "
                f"`{best['loss']}` at {best['top1_mean']:.2f} % test "
                f"({best['top1_mean'] - ce['top1_mean']:+.2f} points). "
                f"{len(above)} of {len(methods)} methods beat `ce` by more than twice its seed "
                f"std ({', '.join(above) or 'none'}); {len(below)} fall below it by as much "
                f"({', '.join(below) or 'none'}).")
        return "\n".join(lines) + "\n"

    return render


def gate_power() -> str:
    """``benchmarks/gate_power.py`` on the committed records of the nightly gate's profile."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    import gate_power as benchmark  # a script beside this one, not a package module

    gate = REPO / "results" / "gate"
    runs = [str(REPO / "results" / "baseline-fashion-gate.jsonl"), str(gate / "seeds-3-5.jsonl")]
    lines = benchmark.report(runs, str(gate / "seeds-0-2-threads2.jsonl"),
                             Thresholds.load(gate / "gate.toml"))
    return "```\n" + "\n".join(lines) + "\n```\n"


def selection(paths: list[Path]) -> Callable[[], str]:
    """Where choosing on the test set would have chosen otherwise: temperatures and bold."""

    def render() -> str:
        s = summarize(records_frame(read(paths).records))
        s = s.assign(method=s["loss"])
        lines = []
        by_test = s.assign(val_top1_mean=s["top1_mean"])
        for (pair, method), rows in s[s["T"].notna()].groupby(["pair", "method"]):
            val_t = chosen(rows, ["pair", "method"])["T"].iloc[0]
            test_t = chosen(by_test.loc[rows.index], ["pair", "method"])["T"].iloc[0]
            if val_t != test_t:
                lines.append(f"{method} on {pair}: T={val_t:g} on validation, T={test_t:g} "
                             f"on test")
        contenders = s[s["loss"].ne("ce") & s["n"].gt(0)]
        for pair, rows in contenders.groupby("pair"):
            val_best = chosen(rows, ["pair"])["method"].iloc[0]
            test_best = chosen(by_test.loc[rows.index], ["pair"])["method"].iloc[0]
            if val_best != test_best:
                lines.append(f"the best method on {pair}: {val_best} on validation, "
                             f"{test_best} on test")
        if not lines:
            return "Here validation and test happen to choose alike.\n"
        return ("Where the test set would have chosen otherwise here: " + "; ".join(lines)
                + ". The tables show the validation choice.\n")

    return render


SECTIONS: dict[str, Callable[[], str]] = {
    "profiles": profiles,
    "methods": methods,
    "method-count": method_count,
    "quick-leaderboard": leaderboard([REPO / "results" / "baseline.jsonl"]),
    "quick-cases": per_case([REPO / "results" / "baseline.jsonl"], 8),
    "quick-selection": selection([REPO / "results" / "baseline.jsonl"]),
    "fashion-leaderboard": leaderboard([REPO / "results" / "fashion"]),
    "fashion-selection": selection([REPO / "results" / "fashion"]),
    "fashion-latex": latex_table([REPO / "results" / "fashion"]),
    "fashion-findings": findings([REPO / "results" / "fashion"]),
    "gate-power": gate_power,
    "columns-note": lambda: COLUMNS_NOTE + "\n",
}


def render(text: str, sections: dict[str, Callable[[], str]] = SECTIONS) -> str:
    """``text`` with every generated section rewritten; an unknown section name is an error."""

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in sections:
            raise SystemExit(f"README section {name!r} has no generator: known: "
                             f"{', '.join(sections)}")
        return match.group(1) + sections[name]() + match.group(4)

    return SECTION.sub(replace, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when README.md is out of date")
    args = p.parse_args()
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print("README.md is out of date: run python scripts/readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
