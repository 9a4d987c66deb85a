"""Regenerate the generated sections of README.md and of the pages in docs/ from the code, the
committed records and the committed measurements.

Each section sits between ``<!-- kdbench:NAME -->`` and ``<!-- /kdbench:NAME -->`` and is
rewritten from what it describes: the profile and method tables from the registries (a
method's paper, venue and year from its loss class's docstring), the leaderboards, findings and
selection notes from the committed records (``kdbench report``'s own tables and words), the gate's
measured power from ``benchmarks/gate_power.py``, the dated measurements from
``benchmarks/measurements.csv``. This script only places them. ``tests/test_readme.py`` fails
when a page and this script disagree, so the tables and counts stay true.

The plots the pages show are drawn from committed records too (``PLOTS``): each PNG carries
the digest of the values it draws, and a plot whose records moved is drawn again.

    python scripts/readme.py            # rewrite README.md, docs/*.md and the plots
    python scripts/readme.py --check    # exit 1 when a page or a plot is out of date
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from kdbench.gate.thresholds import Thresholds
from kdbench.losses import LOSSES
from kdbench.matrix import tuning
from kdbench.matrix.profiles import PROFILES
from kdbench.publish import convergence, latex, plots, tuned
from kdbench.publish import findings as words
from kdbench.publish.findings import citation
from kdbench.publish.markdown import Report, build_report, leaderboards, markdown
from kdbench.publish.summary import load_published, provenance_line, summarize
from kdbench.publish.tables import COLUMNS_NOTE, LEADERBOARD_NOTE, session_table
from kdbench.results import read, records_frame
from kdbench.run.speed import applied

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MEASUREMENTS = REPO / "benchmarks" / "measurements.csv"
TUNED = {  # the converged, tuned leaderboard's profiles and their committed records
    "fashion-tuned": REPO / "results" / "fashion-tuned",
    "fashion-tuned-2x": REPO / "results" / "fashion-tuned-2x",
}
PLOTS = {  # the plot folders the pages show → the records they are drawn from, and the stage
    REPO / "docs" / "fashion": ((REPO / "results" / "fashion",), None),
    REPO / "docs" / "fashion-tuned": (tuple(TUNED.values()), "tuned"),
}
SECTION = re.compile(
    r"(<!-- kdbench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /kdbench:(?P=name) -->)", re.S
)


def _pairs(pairs: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{t}→{s}" for t, s in pairs) if len(pairs) <= 3 else f"{len(pairs)} pairs"


def _epochs(profile) -> str:
    """The students' epochs: one number, or the range a profile gives per pair."""
    epochs = sorted({profile.pair_epochs.get(pair, profile.epochs) for pair in profile.pairs})
    return str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"


def profiles() -> str:
    rows = []
    for name in PROFILES.names():
        p = PROFILES.get(name)
        rows.append(
            {
                "profile": f"`{name}`",
                "data": p.dataset,
                "pairs": _pairs(p.pairs),
                "recipe": p.recipe,
                "epochs": _epochs(p),
                "batch": p.batch_size,
                "seeds": p.seeds,
                "cases per device": len(p.specs(("cpu",))),
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def methods() -> str:
    """Every method with its paper, venue and year and the file that implements it."""
    rows = []
    for name in LOSSES.names():
        cls = LOSSES.get(name)
        source = f"kdbench/losses/{cls.__module__.rsplit('.', 1)[-1]}.py"
        rows.append(
            {"name": f"`{name}`", **citation(cls), "source": f"[{Path(source).name}]({source})"}
        )
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def method_settings() -> str:
    """Every method's default temperature and options, beside its paper."""
    rows = []
    for name in LOSSES.names():
        cls = LOSSES.get(name)
        c = citation(cls)
        rows.append(
            {
                "name": f"`{name}`",
                "paper": f"{c['paper']}, {c['venue']} {c['year']}" if c["year"] else c["paper"],
                "T": f"{cls.default_temperature:g}" if cls.uses_temperature else "",
                "defaults": ", ".join(f"{k}={v:g}" for k, v in cls.options.items()),
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def method_count() -> str:
    """How many methods besides ``ce``, and the years of their papers."""
    years = [int(y) for n in LOSSES.names() if (y := citation(LOSSES.get(n))["year"])]
    return (
        f"{len(LOSSES) - 1} distillation methods, papers of {min(years)}–{max(years)}, run on the "
        f"same loop, next to each other and to the `ce` baseline ([the list](#methods)).\n"
    )


def _frame(paths: list[Path]) -> pd.DataFrame:
    """The records of ``paths`` as ``kdbench report`` reads them (a speed file's included)."""
    return records_frame(applied(read(paths).records, paths))


def leaderboard(paths: list[Path]) -> Callable[[], str]:
    """The provenance line and the paper-style leaderboard(s) of committed records."""

    def render() -> str:
        frame = _frame(paths)
        summary = summarize(frame)
        blocks = [f"```\n{provenance_line(frame)}\n```"]
        for _heading, table, warnings in leaderboards(frame, summary, load_published()):
            blocks += [f"Leaderboard ({LEADERBOARD_NOTE}):", markdown(table), *warnings]
        return "\n\n".join(blocks) + "\n"

    return render


def per_case(paths: list[Path], rows: int) -> Callable[[], str]:
    """The first rows of the per-case table (one row per pair, loss and T over seeds)."""

    def render() -> str:
        table = session_table(summarize(_frame(paths)))
        return markdown(table.head(rows)) + "\n"

    return render


def latex_table(paths: list[Path]) -> Callable[[], str]:
    """``kdbench report --format latex`` of committed records, as the README shows it."""

    def render() -> str:
        frame = _frame(paths)
        return f"```latex\n{latex.render(frame, load_published())}```\n"

    return render


def findings(paths: list[Path]) -> Callable[[], str]:
    """``kdbench report``'s findings of committed records: per pair, in words, and their
    agreement with the published CIFAR-100 ranking."""

    def render() -> str:
        summary = summarize(_frame(paths))
        lines = words.findings(summary) + words.published_agreement(summary, load_published())
        return "\n".join(lines) + "\n"

    return render


def unmeasured(paths: list[Path]) -> Callable[[], str]:
    """The registered methods that committed records do not have (added since they were made)."""

    def render() -> str:
        measured = set(_frame(paths)["loss"])
        missing = [f"`{n}`" for n in LOSSES.names() if n not in measured]
        if not missing:
            return "Every registered method is in this table.\n"
        return f"Not in these records (registered since they were made): {', '.join(missing)}.\n"

    return render


def _recorded(paths: list[Path]) -> list[Path]:
    """The folders of ``paths`` that hold records: a profile run in parts has none at first."""
    return [p for p in paths if p.is_dir() and any(p.rglob("*.jsonl"))]


STAGE_WORDS = {"trial": "tuning trials", "tuned": "tuned cases", "": "cases"}


def _case(spec: dict, case_id: str) -> object:
    """What a case is: a tuned case's identity whatever setting it ran at, else its id."""
    return tuning.tuned_case(spec) or case_id


def progress(runs: dict[str, Path]) -> Callable[[], str]:
    """How many of each profile's CPU cases the committed records hold, per tuning stage (a
    tuned case is the same case at whatever setting its trials chose)."""

    def render() -> str:
        parts = []
        for name, path in runs.items():
            records = read(_recorded([path])).records
            done = {_case(r["spec"], r["case_id"]) for r in records}
            specs = PROFILES.get(name).specs(devices=("cpu",))
            stages = {
                stage: (sum(_case(s.to_dict(), s.case_id) in done for s in group), len(group))
                for stage in dict.fromkeys(s.tune for s in specs)
                if (group := [s for s in specs if s.tune == stage])
            }
            counts = "; ".join(
                f"{STAGE_WORDS[stage]} {n} of {total}" for stage, (n, total) in stages.items()
            )
            recorded = sum(n for n, _ in stages.values())
            parts.append(
                f"`{name}` {recorded} of {len(specs)} cases"
                + (f" ({counts})" if len(stages) > 1 else "")
            )
        table = _parts(tuple(runs.items()))
        return (
            f"Recorded so far: {', '.join(parts)}; {table['hours'].sum():.1f} hours of running "
            f"in {len(table)} parts.\n"
        )

    return render


@functools.cache
def _parts(runs: tuple[tuple[str, Path], ...]) -> pd.DataFrame:
    """One row per part of a run (a records file: ``<UTC start>_<git sha>_<pid>.jsonl``): its
    start, its last record, the hours between them and the cases it recorded."""
    rows = []
    for name, path in runs:
        for f in sorted(path.glob("runs/*.jsonl")):
            start = pd.Timestamp(f.name.split("_")[0])
            records = read([f]).records
            last = max(pd.Timestamp(r["created_at"]) for r in records)
            rows.append(
                {
                    "profile": f"`{name}`",
                    "part": f"`{f.name}`",
                    "started (UTC)": f"{start:%Y-%m-%d %H:%M}",
                    "last record": f"{last:%H:%M}",
                    "hours": round((last - start).total_seconds() / 3600, 2),
                    "records": len(records),
                }
            )
    return pd.DataFrame(
        rows, columns=["profile", "part", "started (UTC)", "last record", "hours", "records"]
    )


def parts(runs: dict[str, Path]) -> Callable[[], str]:
    """The parts of each run (``_parts``), then the committed teacher's training (its cache
    entry's metadata)."""

    def render() -> str:
        teachers = []
        for name, path in runs.items():
            for meta in sorted(path.glob("teacher/*.json")):
                t = json.loads(meta.read_text(encoding="utf-8"))
                teachers.append(
                    f"The teacher of `{name}` (`{t['key']['teacher']}`, {t['params']:,} "
                    f"parameters, {t['key']['epochs']} epochs): {t['train_s']:,.0f} s, finished "
                    f"{t['trained_at'][:16].replace('T', ' ')} UTC; {t['top1']:.2f} % test, "
                    f"{t['val_top1']:.2f} % validation top-1."
                )
        table = _parts(tuple(runs.items()))
        return (
            f"{table.to_markdown(index=False)}\n\nIn all: {table['hours'].sum():.2f} hours in "
            f"{len(table)} parts, {table['records'].sum()} records.\n"
            + "".join(f"\n{t}\n" for t in teachers)
        )

    return render


def _plotted(folder: Path) -> tuple[pd.DataFrame, plots.Keep]:
    """What the plots of ``folder`` are drawn from: its records' leaderboards, and which of
    their sections (the one of the tuning stage ``PLOTS`` names, else all)."""
    paths, stage = PLOTS[folder]
    summary = _report(paths)[1].summary
    return summary, lambda part: stage is None or bool(part["tune"].eq(stage).all())


def plot_row(folder: Path, plotted: dict[str, str]) -> Callable[[], str]:
    """The plots of ``folder`` whose file names end with a key of ``plotted`` (its value their
    title), side by side in a table (links relative to the repository root); a line saying
    they are to come while there are none."""

    def render() -> str:
        names = [n for n, _, _ in plots.figures(*_plotted(folder))]
        shown = [(n, title) for end, title in plotted.items() for n in names if n.endswith(end)]
        if not shown:
            return "The size and speed plots (a curve per method) come with the tuned cases.\n"
        row = " | ".join(f"![{title}]({folder.relative_to(REPO)}/{n})" for n, title in shown)
        titles = " | ".join(title for _, title in shown)
        return f"| {titles} |\n|{'---|' * len(shown)}\n| {row} |\n"

    return render


def stale_plots() -> dict[Path, list[str]]:
    """Plot folder → its plots that are missing or drawn from other records (``plots.stale``)."""
    out = {}
    for folder in PLOTS:
        summary, keep = _plotted(folder)
        if names := plots.stale(summary, folder, keep):
            out[folder] = names
    return out


@functools.cache
def _report(paths: tuple[Path, ...]) -> tuple[pd.DataFrame, Report]:
    """The records of ``paths`` and their ``kdbench report``: built once for every section."""
    frame = _frame(_recorded(list(paths)))
    return frame, build_report(frame, load_published())


def report_tables(paths: list[Path], *headings: str) -> Callable[[], str]:
    """The provenance line and the tables of ``kdbench report PATH...`` whose headings start
    with one of ``headings``, in the report's order, each under its heading in bold."""

    def render() -> str:
        frame, report = _report(tuple(paths))
        blocks = [f"```\n{provenance_line(frame)}\n```"]
        for heading, table in report.tables:
            if heading.startswith(headings):
                blocks += [f"**{heading.lstrip('# ')}**", markdown(table)]
        return "\n\n".join(blocks) + "\n"

    return render


def report_findings(paths: list[Path]) -> Callable[[], str]:
    """The findings of ``kdbench report PATH...``, its subheadings in bold."""

    def render() -> str:
        lines = _report(tuple(paths))[1].findings
        return "\n".join(re.sub(r"^#+ (.*)", r"**\1**", line) for line in lines) + "\n"

    return render


def gate_power() -> str:
    """``benchmarks/gate_power.py`` on the committed records of the nightly gate's profile."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    import gate_power as benchmark  # a script beside this one, not a package module

    gate = REPO / "results" / "gate"
    threads = (
        str(REPO / "results" / "baseline-fashion-gate.jsonl"),
        str(gate / "seeds-0-2-threads2.jsonl"),
    )
    lines = benchmark.report(
        [str(gate / "seeds-6-11.jsonl")], threads, Thresholds.load(gate / "gate.toml")
    )
    return "```\n" + "\n".join(lines) + "\n```\n"


def selection(paths: list[Path]) -> Callable[[], str]:
    """``kdbench report``'s note on where choosing on the test set would have chosen otherwise."""

    def render() -> str:
        return words.selection(summarize(_frame(paths))) + "\n"

    return render


def measurements() -> str:
    """The dated measurements, newest first: ``benchmarks/measurements.csv``."""
    table = pd.read_csv(MEASUREMENTS, dtype=str, keep_default_na=False)
    table = table.sort_values("date", ascending=False, kind="stable")
    table["command"] = table["command"].map(lambda c: f"`{c}`")
    return table.to_markdown(index=False) + "\n"


SECTIONS: dict[str, Callable[[], str]] = {
    "profiles": profiles,
    "methods": methods,
    "method-settings": method_settings,
    "method-count": method_count,
    "quick-leaderboard": leaderboard([REPO / "results" / "baseline.jsonl"]),
    "quick-cases": per_case([REPO / "results" / "baseline.jsonl"], 8),
    "quick-selection": selection([REPO / "results" / "baseline.jsonl"]),
    "fashion-leaderboard": leaderboard([REPO / "results" / "fashion"]),
    "fashion-selection": selection([REPO / "results" / "fashion"]),
    "fashion-latex": latex_table([REPO / "results" / "fashion"]),
    "fashion-findings": findings([REPO / "results" / "fashion"]),
    "fashion-unmeasured": unmeasured([REPO / "results" / "fashion"]),
    "tuned-progress": progress(TUNED),
    "tuned-parts": parts(TUNED),
    "tuned-leaderboard": report_tables(
        list(TUNED.values()), f"## Leaderboard ({tuned.TUNED_WORDS}", convergence.heading()
    ),
    "tuned-plots": plot_row(
        REPO / "docs" / "fashion-tuned",
        {
            "pareto-params.png": "top-1 vs student parameters",
            "pareto-throughput.png": "top-1 vs inference samples/s",
        },
    ),
    "tuned-changes": report_tables(list(TUNED.values()), tuned.CHANGES_HEADING),
    "tuned-findings": report_findings(list(TUNED.values())),
    "gate-power": gate_power,
    "columns-note": lambda: COLUMNS_NOTE + "\n",
    "measurements": measurements,
}


def render(text: str, sections: dict[str, Callable[[], str]] = SECTIONS) -> str:
    """``text`` with every generated section rewritten; an unknown section name is an error."""

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in sections:
            raise SystemExit(
                f"generated section {name!r} has no generator: known: {', '.join(sections)}"
            )
        return match.group(1) + sections[name]() + match.group(4)

    return SECTION.sub(replace, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a page is out of date")
    args = p.parse_args()
    stale = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(page.relative_to(REPO))
            if not args.check:
                page.write_text(new, encoding="utf-8")
    for folder, names in stale_plots().items():
        stale += [folder.relative_to(REPO) / n for n in names]
        if not args.check:
            for png in folder.glob("*.png"):
                png.unlink()
            summary, keep = _plotted(folder)
            plots.write_plots(summary, folder, keep)
    if args.check and stale:
        print(
            f"out of date: {', '.join(map(str, stale))}: run python scripts/readme.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
