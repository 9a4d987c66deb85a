"""kdbench's tables in a project's pyproject.toml (``[tool.kdbench.compare]``,
``[tool.kdbench.profiles]``): where the nearest one is and what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdbench.registry import KdbenchError


def read_table(path: Path, table: str) -> dict[str, Any]:
    """The table ``table`` (dotted, e.g. ``tool.kdbench.compare``) of a TOML file; empty when
    the file has none."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli, needed only when the table is there
        if f"[{table}" not in path.read_text(encoding="utf-8"):
            return {}
        try:
            import tomli as tomllib  # type: ignore[no-redef, unused-ignore]  # needed on 3.10 only
        except ModuleNotFoundError:
            raise KdbenchError(
                f"reading [{table}] of {str(path)!r} needs Python ≥ 3.11 or the tomli package"
            ) from None
    try:
        with open(path, "rb") as fh:
            value: Any = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise KdbenchError(f"cannot read {str(path)!r}: {exc}") from None
    keys = table.split(".")
    for depth, key in enumerate(keys, 1):
        value = value.get(key, {})
        if not isinstance(value, dict):
            raise KdbenchError(f"{path}: {'.'.join(keys[:depth])} must be a table, got {value!r}")
    return value


def find_pyproject(start: Path, table: str) -> Path | None:
    """The nearest pyproject.toml with the table ``table`` in it, from the folder ``start``
    upwards: the project root's, wherever inside the project a command runs."""
    for folder in (start.resolve(), *start.resolve().parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and read_table(candidate, table):
            return candidate
    return None


def find_first(table: str, *starts: Path) -> Path | None:
    """``find_pyproject`` from each of the folders ``starts`` in turn: the first found. (pytest's
    rootdir can sit above the project when an option's value is an existing folder, so the
    plugin also looks from where pytest was started.)"""
    return next(filter(None, (find_pyproject(start, table) for start in starts)), None)
