"""The README is short and its links work on GitHub; the docs build as a MkDocs site with
``--strict``; every method names its paper, venue and year."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.cli import main
from kdbench.losses import LOSSES
from kdbench.publish.findings import citation
from kdbench.session.options import add_options

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_short_and_keeps_the_quickstart():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "make bench" in text and "make test" in text


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page: lower case, punctuation dropped, spaces → -."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_of_the_readme_resolves():
    links = [
        link
        for link in LINK.findall(README.read_text(encoding="utf-8"))
        if not re.match(r"[a-z]+:", link)
    ]
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        path, _, anchor = link.partition("#")
        target = REPO / path if path else README
        assert target.is_file(), f"README links {link}: no such file"
        if anchor:
            assert anchor in anchors(target), f"README links {link}: no such heading"


def test_every_docs_page_is_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    pages = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")} - {"docs/index.md"}
    assert pages <= {link.partition("#")[0] for link in LINK.findall(text)}


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed: pip install -e '.[docs]'",
)
def test_the_options_table_names_every_kd_option():
    names: list[str] = []

    class Parser:  # what add_options calls of pytest's parser
        def getgroup(self, *args):
            return self

        def addoption(self, *opts, **kwargs):
            names.extend(opts)

    add_options(Parser())
    page = (REPO / "docs" / "profiles.md").read_text(encoding="utf-8")
    assert sorted(re.findall(r"^\| `(--kd-[\w-]+)", page, re.M)) == sorted(names)


def test_the_docs_build_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "methods" / "index.html").is_file()


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if n != "ce"])
def test_every_method_names_its_paper_venue_and_year(name):
    c = citation(LOSSES.get(name))
    assert c["venue"] and re.fullmatch(r"(19|20)\d\d", c["year"]), (
        f'{name}: the docstring\'s first line must read Authors, "Title", Venue Year[: variant].'
    )
    assert c["paper"].count('"') == 2


def test_list_losses_shows_paper_venue_and_year(capsys):
    assert main(["list", "losses"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| ttm "))
    assert "Transformed Teacher Matching" in row and "ICLR" in row and "2024" in row
    assert re.search(r"\| venue +\| +year +\|", out)
