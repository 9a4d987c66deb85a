"""On-disk caches keyed by hash: teacher checkpoints and teacher outputs.

Writes are atomic (temporary file + ``os.replace``); each entry has a metadata file with the
SHA-256 of its payload, so a truncated or corrupt entry is detected and rebuilt. Payloads are
loaded with ``weights_only``: an entry that pickles anything but tensors and plain containers is
never unpickled, and is a corrupt entry too, checksum or not. An inter-process file lock makes
concurrent pytest-xdist workers build an entry once while the others wait. A read-only cache
(a shared or mounted one) is read: an entry it lacks is built for the session, not saved.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def writable(folder: Path) -> bool:
    """Whether ``folder`` can be written in, or made: its nearest existing folder is writable."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return existing.is_dir() and os.access(existing, os.W_OK)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class TensorCache:
    """``key → (payload, meta)`` where the payload is anything ``torch.save`` takes."""

    def __init__(self, root: Path, kind: str) -> None:
        self.dir = Path(root) / kind
        self.kind = kind

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.pt", self.dir / f"{key}.json"

    def load(self, key: str, map_location: Any = "cpu") -> tuple[Any, dict] | None:
        """The entry, or None when it is missing; a corrupt entry is reported and removed."""
        payload_path, meta_path = self.paths(key)
        if not (payload_path.exists() and meta_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if sha256_file(payload_path) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            payload = torch.load(payload_path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:  # weights_only met an object it does not load
            reason = "it pickles not only tensors; not unpickled"
        except (OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        else:
            return payload, meta
        warnings.warn(
            f"corrupt {self.kind} cache entry {payload_path} ({reason}): rebuilding", stacklevel=2
        )
        with contextlib.suppress(OSError):  # a read-only cache keeps it; it is rebuilt anyway
            for p in (payload_path, meta_path):
                p.unlink(missing_ok=True)
        return None

    def save(self, key: str, payload: Any, meta: dict) -> None:
        payload_path, meta_path = self.paths(key)
        _atomic_write(payload_path, lambda tmp: torch.save(payload, tmp))
        meta = {**meta, "sha256": sha256_file(payload_path)}
        _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))

    def get_or_build(
        self, key: str, build: Callable[[], tuple[Any, dict]], map_location: Any = "cpu"
    ) -> tuple[Any, dict, bool]:
        """(payload, meta, built): built once across processes; others wait on the lock. The
        payload's tensors are on ``map_location`` whether it was loaded or just built. A
        read-only cache builds an entry it lacks without saving it."""
        hit = self.load(key, map_location)
        if hit is not None:
            return (*hit, False)
        if not writable(self.dir):
            warnings.warn(
                f"{self.kind} cache {self.dir} is read-only: entry {key} built for "
                f"this session only",
                stacklevel=2,
            )
            payload, meta = build()
            return _to(payload, map_location), meta, True
        with file_lock(self.dir / f"{key}.lock"):
            hit = self.load(key, map_location)
            if hit is not None:
                return (*hit, False)
            payload, meta = build()
            self.save(key, payload, meta)
            return _to(payload, map_location), meta, True


def _to(payload: Any, location: Any) -> Any:
    """``payload`` (tensors in dicts, lists and tuples) with every tensor moved to ``location``."""
    if isinstance(payload, torch.Tensor):
        return payload.to(location)
    if isinstance(payload, dict):
        return {k: _to(v, location) for k, v in payload.items()}
    if isinstance(payload, (list, tuple)):
        return type(payload)(_to(v, location) for v in payload)
    return payload
