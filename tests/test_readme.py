"""The README stays true: its generated sections match what they describe, and every case
selection it shows (`pytest suites … -k …` / `-m …`) selects at least one case."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_generated_sections_are_up_to_date(script):
    script = script("scripts/readme.py")
    names = {m["name"] for m in script.SECTION.finditer(README)}
    assert names == set(script.SECTIONS), "every generator has its section and vice versa"
    assert script.render(README) == README, "README.md is out of date: python scripts/readme.py"


def selections() -> list[list[str]]:
    """The arguments of every README command `pytest suites …` that selects with -k or -m."""
    commands = re.findall(r"^pytest suites (.*?)(?:\s+#.*)?$", README, re.M)
    return [shlex.split(c) for c in commands if re.search(r"(^|\s)-[km][\s=]", c)]


def test_the_readme_shows_selections():
    assert len(selections()) >= 4


@pytest.mark.parametrize("args", selections(), ids=" ".join)
def test_every_readme_selection_selects_a_case(kd_suite, pytester, args):
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
