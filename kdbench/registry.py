"""Registries: a dict, a decorator and a lister (after timm's register_model / list_models)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class KdbenchError(Exception):
    """An error a user can fix; its message is one line naming the bad value and the choices."""


class UnknownNameError(KdbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"did you mean a, b? "`` with up to three close matches of ``name``; empty when none."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"did you mean {', '.join(close)}? " if close else ""


class Registry:
    """Names → factories (classes or functions) of one kind: datasets, models, losses."""

    def __init__(self, kind: str, singular: str | None = None) -> None:
        self.kind = kind  # plural, as in `kdbench list <kind>`
        self.singular = singular or kind.removesuffix("s")
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def add(obj: Any) -> Any:
            if name in self._entries:
                raise KdbenchError(f"{self.kind} name {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.singular} {name!r}: {did_you_mean(name, self._entries)}"
                f"valid: {', '.join(self.names())} (`kdbench list {self.kind}`)"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


DATASETS = Registry("datasets")
MODELS = Registry("models")
LOSSES = Registry("losses", "loss")
