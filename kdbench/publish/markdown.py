"""Markdown, CSV and JSON reports: ``build_report(frame, published, notes) -> Report`` with
``to_markdown()``, ``to_csv()`` (the tidy ``summarize`` frame) and ``to_json()``;
``session_report(frame)`` is the leaderboard a pytest session prints and writes next to its
records.

Values that come from records are data, never markup (records come from anyone: a fork's CI,
a colleague's folder): in Markdown each is put on one line, with ``<`` and ``>`` as entities
(no raw HTML for the viewers that render it) and, in tables, ``|`` escaped; a CSV cell that
would start a spreadsheet formula (``=``, ``+``, ``-``, ``@``) gets a leading ``'``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from kdbench.publish import convergence, findings, tuned
from kdbench.publish.summary import (
    LABELS,
    PUBLISHED_DATASET,
    SELECTION,
    load_published,
    provenance,
    provenance_line,
    sections,
    summarize,
    teacher_warnings,
)
from kdbench.publish.tables import (
    COLUMNS_NOTE,
    LEADERBOARD_NOTE,
    MARKDOWN,
    CellStyle,
    detail_table,
    leaderboard,
    session_table,
    temperature_table,
)

FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as a formula's start


def md_text(text: object) -> str:
    """Text from a record as Markdown: one line, no raw HTML."""
    return " ".join(str(text).splitlines()).replace("<", "&lt;").replace(">", "&gt;")


def md_cell(value: object) -> object:
    """A table cell: text as ``md_text`` with ``|`` escaped (it would start a new column)."""
    return md_text(value).replace("|", "\\|") if isinstance(value, str) else value


def csv_cell(value: object) -> object:
    """A CSV cell: text on one line, never the start of a formula."""
    if not isinstance(value, str):
        return value
    text = " ".join(value.splitlines())
    return f"'{text}" if text.startswith(FORMULA) else text


def markdown(table: pd.DataFrame) -> str:
    """Render preformatted cells with tabulate: label columns left, value columns right."""
    align = ["left" if c in LABELS else "right" for c in table.columns]
    return (
        table.rename(columns=md_cell)
        .map(md_cell)
        .to_markdown(index=False, disable_numparse=True, colalign=align)
    )


def session_report(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """The Markdown leaderboard printed at the end of a pytest session: one row per case group,
    then the paper-style methods × pairs table(s), with published numbers where they exist."""
    if frame.empty:
        return "No kdbench records.\n"
    summary = summarize(frame)
    blocks = [*map(md_text, (provenance_line(frame), *notes)), markdown(session_table(summary))]
    for heading, table, warnings in leaderboards(frame, summary, load_published()):
        blocks += [
            md_text(f"#{heading} ({LEADERBOARD_NOTE})"),
            markdown(table),
            *map(md_text, warnings),
        ]
    blocks.append(COLUMNS_NOTE)
    return "\n\n".join(blocks) + "\n"


@dataclass
class Report:
    provenance: dict[str, str]
    summary: pd.DataFrame  # summarize(frame)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (heading, cells)
    notes: list[str] = field(default_factory=list)  # lines under the provenance
    findings: list[str] = field(default_factory=list)  # findings.lines(summary, published)

    def to_markdown(self) -> str:
        lines = [
            "# kdbench report",
            "",
            *(f"- **{k}**: {md_text(v)}" for k, v in self.provenance.items()),
            "",
        ]
        lines += [*(f"{md_text(note)}\n" for note in self.notes)]
        if self.findings:
            lines += ["## Findings", "", *map(md_text, self.findings)]
        for heading, table in self.tables:
            lines += [md_text(heading), "", markdown(table), ""]
        lines += [*(f"{md_text(w)}\n" for w in teacher_warnings(self.summary)), COLUMNS_NOTE]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        return self.summary.map(csv_cell).to_csv(index=False)

    def to_dict(self) -> dict:
        return {
            "provenance": self.provenance,
            "notes": self.notes,
            "groups": json.loads(self.summary.to_json(orient="records")),
            "tables": [
                {"title": h.lstrip("# "), "rows": t.to_dict(orient="records")}
                for h, t in self.tables
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def leaderboards(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    published: pd.DataFrame | None,
    style: CellStyle = MARKDOWN,
):
    """(heading, paper-style table, warnings) per setting, in the order of ``sections``;
    published numbers for CIFAR-100."""
    for title, part in sections(summary):
        suffix = f" ({title})" if title else ""
        datasets = set((part if "dataset" in part else frame)["dataset"])
        ref = published if datasets == {PUBLISHED_DATASET} else None
        yield f"## Leaderboard{suffix}", leaderboard(part, ref, style), teacher_warnings(part)


def build_report(
    frame: pd.DataFrame, published: pd.DataFrame | None = None, notes: Sequence[str] = ()
) -> Report:
    frame, converged = convergence.split(frame)
    summary = summarize(frame)
    report = Report(
        provenance=provenance(frame),
        summary=summary,
        notes=list(notes),
        findings=findings.lines(summary, published),
    )
    if not converged.empty:
        report.tables.append((convergence.heading(), converged))
    boards = leaderboards(frame, summary, published)
    for (title, part), (heading, board, _) in zip(sections(summary), boards):
        suffix = f" ({title})" if title else ""
        report.tables.append((f"{heading} — {LEADERBOARD_NOTE}", board))
        for pair, rows in part.groupby("pair", sort=True):
            report.tables.append((f"### {pair}{suffix}", detail_table(rows)))
        temps = temperature_table(part)
        if not temps.empty:
            report.tables.append(
                (f"## Temperature{suffix} — test top-1; ✓ chosen on {SELECTION}", temps)
            )
    changes = tuned.changes(frame)
    if not changes.empty:
        report.tables.append((tuned.CHANGES_HEADING, changes))
        report.findings += ["### What tuning changed", "", *tuned.change_findings(changes), ""]
    return report
