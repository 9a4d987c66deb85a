"""Teacher taps too large for memory, kept on disk and memory-mapped.

A frozen teacher gives each training sample the same taps when the data are not augmented; for
feature taps of a whole training set (Fashion-MNIST's ``feats`` of fmnist_t: 4.5 GiB) that is more
than the memory budget of ``kdbench.run.teachers``. ``MappedCache`` writes them once, one raw
file per tensor (row i: training sample i), under ``<cache>/<kind>/<key>/`` with a ``meta.json``
of shapes, dtypes and SHA-256 sums, and maps the files read-only-in-effect (private mappings):
the operating system pages in the rows a batch reads, and processes of one machine (pytest-xdist
workers) share those pages. Entries are written in a temporary folder and renamed into place
under an inter-process lock, as ``kdbench.run.cache`` does; a truncated or corrupt entry is
reported and rebuilt; a read-only cache or a full disk gives no entry (the teacher then runs
online).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kdbench.run.cache import file_lock, sha256_file, writable

Taps = dict[str, Any]  # tap name → a tensor or a list of tensors
DISK_MARGIN = 1 << 30  # bytes left free on the disk after an entry is written


def _flat(taps: Taps) -> dict[str, torch.Tensor]:
    """``{"feats": [a, b], "logits": c}`` → ``{"feats.0": a, "feats.1": b, "logits": c}``."""
    out = {}
    for name, value in taps.items():
        if isinstance(value, list):
            out.update({f"{name}.{j}": t for j, t in enumerate(value)})
        else:
            out[name] = value
    return out


def _nested(flat: dict[str, torch.Tensor], layout: dict[str, int | None]) -> Taps:
    """The inverse of ``_flat``; ``layout``: tap name → list length (None: one tensor)."""
    return {
        name: flat[name] if n is None else [flat[f"{name}.{j}"] for j in range(n)]
        for name, n in layout.items()
    }


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


class MappedCache:
    """``key → taps`` of a whole training set, as memory-mapped CPU tensors."""

    def __init__(self, root: Path, kind: str) -> None:
        self.dir = Path(root) / kind
        self.kind = kind

    def fits(self, size: int) -> bool:
        """Whether an entry of ``size`` bytes can be written, the disk keeping ``DISK_MARGIN``."""
        if not writable(self.dir):
            return False
        existing = next(
            p for p in (self.dir.absolute(), *self.dir.absolute().parents) if p.exists()
        )
        return shutil.disk_usage(existing).free >= size + DISK_MARGIN

    def load(self, key: str) -> Taps | None:
        """The entry, mapped; None when it is missing; a corrupt one is reported and removed."""
        folder = self.dir / key
        if not (folder / "meta.json").exists():
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text())
            flat = {}
            for entry in meta["tensors"]:
                path = folder / entry["file"]
                if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
                    raise ValueError(f"{entry['file']}: size or checksum mismatch")
                flat[entry["name"]] = torch.from_file(
                    str(path),
                    shared=False,
                    size=math.prod(entry["shape"]),
                    dtype=_dtype(entry["dtype"]),
                ).view(entry["shape"])
            return _nested(flat, meta["layout"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        warnings.warn(
            f"corrupt {self.kind} cache entry {folder} ({reason}): rebuilding", stacklevel=2
        )
        shutil.rmtree(folder, ignore_errors=True)
        return None

    def get_or_build(
        self,
        key: str,
        rows: int,
        probe: Taps,
        fill: Callable[[Callable[[torch.Tensor, Taps], None]], None],
        meta: dict[str, Any],
    ) -> Taps:
        """The entry of ``key``, written first if missing (once across processes): ``rows``
        samples, each tensor shaped as ``probe``'s (one sample's taps) on its first dimension;
        ``fill(write)`` calls ``write(index, taps)`` for batches covering every row."""
        hit = self.load(key)
        if hit is not None:
            return hit
        with file_lock(self.dir / f"{key}.lock"):
            hit = self.load(key)
            if hit is not None:
                return hit
            tmp = self.dir / f".{key}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                self._write(tmp, rows, probe, fill, meta)
                shutil.rmtree(self.dir / key, ignore_errors=True)  # a folder without meta.json
                os.replace(tmp, self.dir / key)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        hit = self.load(key)
        if hit is None:
            raise RuntimeError(
                f"{self.kind} cache entry {self.dir / key} unreadable right after it was written"
            )
        return hit

    @staticmethod
    def _write(
        folder: Path,
        rows: int,
        probe: Taps,
        fill: Callable[[Callable[[torch.Tensor, Taps], None]], None],
        meta: dict[str, Any],
    ) -> None:
        entries, out = [], {}
        for i, (name, t) in enumerate(_flat(probe).items()):
            shape = [rows, *t.shape[1:]]
            path = folder / f"{i}.bin"
            nbytes = math.prod(shape) * t.element_size()
            with open(path, "wb") as fh:
                fh.truncate(nbytes)
            out[name] = torch.from_file(
                str(path), shared=True, size=math.prod(shape), dtype=t.dtype
            ).view(shape)
            entries.append(
                {
                    "name": name,
                    "file": path.name,
                    "shape": shape,
                    "dtype": str(t.dtype),
                    "bytes": nbytes,
                }
            )

        def write(index: torch.Tensor, taps: Taps) -> None:
            index = index.cpu()
            for name, t in _flat(taps).items():
                out[name][index] = t.cpu()

        fill(write)
        out.clear()  # unmapped: the rows are in the files
        for entry in entries:
            path = folder / entry["file"]
            with open(path, "rb+") as written:
                os.fsync(written.fileno())
            entry["sha256"] = sha256_file(path)
        layout = {name: len(v) if isinstance(v, list) else None for name, v in probe.items()}
        (folder / "meta.json").write_text(
            json.dumps({**meta, "rows": rows, "layout": layout, "tensors": entries}, indent=1)
        )
