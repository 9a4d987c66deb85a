"""The package's layers: every import of a kdbench module (module level or inside a function)
runs to its own layer or one below, and the module-level imports have no cycle. The layers,
lowest first, are the layout of ../shared/DESIGN.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kdbench"
LAYERS = [  # lowest first
    ("kdbench._autoload", "kdbench.registry"),
    ("kdbench.data", "kdbench.models", "kdbench.losses", "kdbench.recipes", "kdbench.reference"),
    ("kdbench.spec",),
    ("kdbench.results",),
    ("kdbench.run",),
    ("kdbench.matrix",),
    ("kdbench.publish",),
    ("kdbench.gate",),
    ("kdbench.scale", "kdbench.observe"),
    ("kdbench.session",),
    ("kdbench.plugin", "kdbench.cli"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(module: str) -> int:
    if module == "kdbench":  # the package's __init__: its version only
        return 0
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to DESIGN.md)")


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            found |= {
                f"{base}.{a.name}"
                if (ROOT.parent / base.replace(".", "/") / a.name).with_suffix(".py").exists()
                else base
                for a in node.names
            }
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m == "kdbench" or m.startswith("kdbench.")}


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_downwards(module):
    own = layer_of(module)
    upwards = sorted(m for m in imports(MODULES[module]) if m != "kdbench" and layer_of(m) > own)
    assert not upwards, f"{module} (layer {own}) imports from a higher layer: {upwards}"


def test_no_import_cycle():
    graph = {
        m: {i for i in imports(p, top_level_only=True) if i in MODULES and i != m}
        for m, p in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, f"import cycle: {' → '.join([*trail, m, n])}"
            if n not in state:
                visit(n, [*trail, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_top_level_holds_at_most_eight_modules():
    modules = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(modules) <= 8, modules


def test_no_module_is_over_350_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 350}
    assert not long, f"split these modules (lines): {long}"
