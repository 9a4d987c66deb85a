"""The one registry of report formats: name → ``render(frame, published, notes) -> str``.

``kdbench report --format`` offers exactly these, and the tests render every one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from kdbench.publish import latex, page
from kdbench.publish.markdown import build_report

Renderer = Callable[[pd.DataFrame, "pd.DataFrame | None", Sequence[str]], str]


def _report(method: str) -> Renderer:
    def render(frame: pd.DataFrame, published: pd.DataFrame | None, notes: Sequence[str]) -> str:
        return getattr(build_report(frame, published, notes), method)()

    return render


FORMATS: dict[str, Renderer] = {
    "md": _report("to_markdown"),
    "csv": _report("to_csv"),
    "json": _report("to_json"),
    "latex": latex.render,
    "html": page.render,
}


def render(
    frame: pd.DataFrame,
    fmt: str = "md",
    published: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The report of ``frame`` in format ``fmt`` (a key of ``FORMATS``)."""
    return FORMATS[fmt](frame, published, notes)
