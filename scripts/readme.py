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

from kdbench.losses import LOSSES
from kdbench.profiles import PROFILES
from kdbench.report import (
    COLUMNS_NOTE, LEADERBOARD_NOTE, leaderboards, load_published, markdown, provenance_line,
    session_table, summarize,
)
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


SECTIONS: dict[str, Callable[[], str]] = {
    "profiles": profiles,
    "methods": methods,
    "method-count": method_count,
    "quick-leaderboard": leaderboard([REPO / "results" / "baseline.jsonl"]),
    "quick-cases": per_case([REPO / "results" / "baseline.jsonl"], 8),
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
