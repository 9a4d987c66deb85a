"""The README and the docs pages stay true: their generated sections match what they describe,
and every case selection they show (`pytest suites … -k …` / `-m …`) selects at least one case."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from kdbench import cli

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def readme(script):
    return script("scripts/readme.py")


def test_the_generator_knows_every_page(readme):
    assert readme.PAGES == PAGES


def test_every_generator_has_its_section(readme):
    names = {m["name"] for page in PAGES for m in readme.SECTION.finditer(page.read_text("utf-8"))}
    assert names == set(readme.SECTIONS), "every generator has a section and vice versa"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_generated_sections_are_up_to_date(readme, page):
    text = page.read_text(encoding="utf-8")
    assert readme.render(text) == text, f"{page.name} is out of date: python scripts/readme.py"


def test_the_plots_the_pages_show_are_drawn_from_the_committed_records(readme):
    assert readme.stale_plots() == {}, "plots out of date: python scripts/readme.py"


def test_an_unknown_section_is_an_error(readme):
    with pytest.raises(SystemExit, match="'nope' has no generator"):
        readme.render("<!-- kdbench:nope -->\n<!-- /kdbench:nope -->")


def test_the_measurements_table_is_the_committed_file(readme):
    table = readme.measurements()
    rows = (REPO / "benchmarks" / "measurements.csv").read_text(encoding="utf-8").splitlines()
    assert len(table.splitlines()) == len(rows) + 1  # header, rule, one row per measurement
    dates = re.findall(r"^\| (\d{4}-\d\d-\d\d) ", table, re.M)
    assert dates == sorted(dates, reverse=True), "newest first"


def selections() -> list[list[str]]:
    """The arguments of every command `pytest suites …` that selects with -k or -m, on any page."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    commands = re.findall(r"^pytest suites (.*?)(?:\s+#.*)?$", text, re.M)
    unique = dict.fromkeys(c for c in commands if re.search(r"(^|\s)-[km][\s=]", c))
    return [shlex.split(c) for c in unique]


def test_the_pages_show_selections():
    assert len(selections()) >= 4


@pytest.mark.parametrize("args", selections(), ids=" ".join)
def test_every_shown_selection_selects_a_case(kd_suite, pytester, args):
    dropped = {"-n", "-s"}  # how it runs, not what it selects
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-n":
            skip = True
        elif arg not in dropped:
            kept.append(arg)
    result = kd_suite(*kept, "--collect-only", "-q", "--rootdir", str(pytester.path))
    selected = [line for line in result.outlines if "::test_case[" in line]
    assert result.ret == 0 and selected, f"{shlex.join(args)} selects nothing"


def test_the_tuned_leaderboards_tables_are_what_kdbench_report_prints(readme, capsys):
    tables = []
    for page, name in (
        ("README.md", "tuned-leaderboard"),
        ("docs/leaderboards.md", "tuned-changes"),
    ):
        text = (REPO / page).read_text(encoding="utf-8")
        section = re.search(rf"<!-- kdbench:{name} -->\n(.*?)<!-- /", text, re.S)
        tables += re.findall(r"(?:^\|.*\n)+", section[1], re.M)
    assert tables, "the sections show the report's tables"
    paths = readme._recorded(list(readme.TUNED.values()))
    assert cli.main(["report", *map(str, paths)]) == 0
    printed = capsys.readouterr().out
    for table in tables:
        assert table in printed
