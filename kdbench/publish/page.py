"""The leaderboard as one self-contained web page (``kdbench report --format html``).

One HTML file that needs nothing at view time (no network: CSS and JavaScript inline, plots as
base64 PNG data URIs when matplotlib is installed): the provenance header, the selection rule
(every choice — the temperature of a cell, the bold best method — made on **validation**
top-1; cells show **test** top-1), a table of contents, and per setting
(``kdbench.publish.summary.sections``) the leaderboard, each pair's detail table and the temperature
table, then the plots. A leaderboard's pair header links to that pair's detail table, and each
detail table back to its leaderboard. Clicking a column header sorts its table (again: the
other way); a cell sorts by its leading number ("96.50 ± 0.71 (3) T=4" by 96.50, "1.50M" by
1.5e6), cells without one last.

``render(frame, published=None, notes=(), plots=True) -> str``; the page is a jinja2 template,
``kdbench/publish/templates/report.html``.
"""

from __future__ import annotations

import base64
import html
import re
import tempfile
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import pandas as pd

from kdbench.publish.convergence import leaderboard_summary
from kdbench.publish.markdown import leaderboards
from kdbench.publish.summary import SELECTION, provenance, sections
from kdbench.publish.tables import (
    COLUMNS_NOTE,
    LEADERBOARD_NOTE,
    detail_table,
    temperature_table,
)
from kdbench.registry import KdbenchError

TEMPLATE = "report.html"
BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline(text: object) -> str:
    """A report's cell or note → HTML: escaped, Markdown bold (the best method) as <strong>."""
    return BOLD.sub(r"<strong>\1</strong>", html.escape(str(text), quote=False))


def anchor(text: str) -> str:
    """An id for a heading: letters, digits, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-").lower()


def table_html(table: pd.DataFrame, table_id: str, links: dict[str, str] | None = None) -> str:
    """A sortable table; ``links``: column → id of the block its header links to."""
    links = links or {}
    headers = [
        inline(c) + (f' <a class="detail" href="#{links[c]}">detail</a>' if c in links else "")
        for c in table.columns
    ]
    cells = table.apply(lambda column: column.map(inline)).set_axis(headers, axis=1)
    return cells.to_html(
        escape=False, index=False, border=0, table_id=table_id, classes="sortable", justify="left"
    )


def _blocks(part: pd.DataFrame, prefix: str, suffix: str) -> list[dict[str, str]]:
    """Each pair's detail table, then the temperature table, of one section."""
    blocks = []
    for pair, rows in part.groupby("pair", sort=True):
        block_id = f"{prefix}pair-{anchor(pair)}"
        blocks.append(
            {
                "id": block_id,
                "pair": pair,
                "heading": f"{pair}{suffix}",
                "table": table_html(detail_table(rows), f"{block_id}-table"),
            }
        )
    temps = temperature_table(part)
    if not temps.empty:
        blocks.append(
            {
                "id": f"{prefix}temperature",
                "pair": "",
                "heading": f"Temperature{suffix} — test top-1; ✓ chosen on {SELECTION}",
                "table": table_html(temps, f"{prefix}temperature-table"),
            }
        )
    return blocks


def _plots(summary: pd.DataFrame) -> tuple[list[tuple[str, str]], str]:
    """(name, base64 PNG) of every plot of ``kdbench.publish.plots``; or why there are none."""
    from kdbench.publish.plots import write_plots

    with tempfile.TemporaryDirectory() as tmp:
        try:
            paths = write_plots(summary, tmp)
        except KdbenchError as exc:
            return [], str(exc)
        return [
            (Path(p).stem, base64.b64encode(Path(p).read_bytes()).decode("ascii")) for p in paths
        ], ""


def render(
    frame: pd.DataFrame,
    published: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    plots: bool = True,
) -> str:
    from jinja2 import Environment
    from markupsafe import Markup

    summary = leaderboard_summary(frame)
    page_sections = []
    boards = leaderboards(frame, summary, published)
    for (title, part), (heading, board, warnings) in zip(sections(summary), boards):
        prefix = f"{anchor(title)}-" if title else ""
        suffix = f" ({title})" if title else ""
        blocks = _blocks(part, prefix, suffix)
        links = {b["pair"]: b["id"] for b in blocks if b["pair"]}
        section_id = f"{prefix}leaderboard"
        page_sections.append(
            {
                "id": section_id,
                "heading": f"{heading.lstrip('# ')} — {LEADERBOARD_NOTE}",
                "table": Markup(table_html(board, f"{section_id}-table", links)),
                "warnings": warnings,
                "blocks": [{**b, "table": Markup(b["table"])} for b in blocks],
            }
        )
    images, plots_note = _plots(summary) if plots else ([], "")
    datasets = ", ".join(sorted(map(str, frame["dataset"].unique())))
    template = (files("kdbench.publish") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    return (
        Environment(autoescape=True)
        .from_string(template)
        .render(
            title=f"kdbench leaderboard: {datasets}",
            provenance=provenance(frame),
            rule=Markup(inline(COLUMNS_NOTE)),
            notes=list(notes),
            sections=page_sections,
            plots=images,
            plots_note=plots_note,
        )
    )
