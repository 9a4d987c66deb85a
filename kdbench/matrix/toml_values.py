"""Checked values of a TOML table: where a value sits (``Key``: the file and the dotted key
TOML would write) and checks of its kind, each failing with a one-line ``KdbenchError`` that
names the file, the key and what was expected (``kdbench.matrix.user_profiles`` reads profiles
with them)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.registry import KdbenchError, did_you_mean

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML keys written without quotes
KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Key:
    """Where a value sits: the file and the dotted key path TOML would write."""

    path: Path
    keys: tuple[str | int, ...]

    def __truediv__(self, key: str | int) -> Key:
        return Key(self.path, (*self.keys, key))

    def __str__(self) -> str:
        return "".join(
            f"[{k}]"
            if isinstance(k, int)
            else ("." if i else "") + (k if BARE_KEY.fullmatch(k) else json.dumps(k))
            for i, k in enumerate(self.keys)
        )

    def error(self, message: str) -> KdbenchError:
        return KdbenchError(f"{self.path}: {self}: {message}")


def check_keys(at: Key, table: dict, valid: Iterable[str], problem: str) -> None:
    """Every key of ``table`` is one of ``valid``; ``problem`` says what another one is."""
    valid = list(valid)
    for key in table:
        if key not in valid:
            raise at.error(
                f"{problem.format(repr(key))}: {did_you_mean(key, valid)}valid: "
                f"{', '.join(valid) or 'none'}"
            )


def as_registered(at: Key, lookup: Callable[[str], Any], name: Any) -> str:
    """``name`` when it is a string ``lookup`` (a registry's ``get``) knows; its one-line
    error otherwise."""
    name = as_kind(at, name, "")
    try:
        lookup(name)
    except KdbenchError as exc:
        raise at.error(str(exc)) from None
    return name


def as_kind(at: Key, value: Any, default: Any) -> Any:
    """``value`` as the kind of ``default`` (a float for a float, given an int or a float); any
    scalar where the default is none of ``KINDS`` (``None``)."""
    kind = type(default)
    if kind not in KINDS:
        if isinstance(value, (dict, list)):
            raise at.error(f"must be a string, a number or true/false, got {value!r}")
        return value
    if isinstance(value, bool) != (kind is bool) or not isinstance(
        value, (int, float) if kind is float else kind
    ):
        raise at.error(f"must be {KINDS[kind]}, got {value!r}")
    return float(value) if kind is float else value


def as_count(at: Key, value: Any) -> int:
    if as_kind(at, value, 0) < 1:
        raise at.error(f"must be an integer ≥ 1, got {value!r}")
    return value


def as_table(at: Key, value: Any) -> dict:
    if not isinstance(value, dict):
        raise at.error(f"must be a table, got {value!r}")
    return value


def as_list(at: Key, value: Any, empty: bool = False) -> list:
    if not isinstance(value, list) or not (value or empty):
        raise at.error(f"must be a {'' if empty else 'non-empty '}list, got {value!r}")
    return value
