"""Records: one JSON object per case per line; an append-safe store and a tolerant loader.

One case (``case_id``) contributes one record to everything built from records: the newest
(by ``created_at``, then by position: a later file or line wins a tie). Older records of the
same case are *superseded* and counted, never pooled with it (a re-run must not count a seed
twice).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from kdbench.registry import KdbenchError

SCHEMA = 2  # 2: validation split (val_top1), fidelity_kl, status "n/a", per-case memory
STATUSES = ("ok", "diverged", "error", "n/a")
METRICS = (  # the numeric metrics reports aggregate over seeds
    "top1", "top5", "val_top1", "best_top1", "teacher_top1", "student_params", "teacher_params",
    "extra_params", "compression", "student_flops", "train_throughput", "train_throughput_online",
    "infer_throughput", "latency_ms", "peak_mem_mb", "agreement", "fidelity_kl", "train_s",
    "final_temperature",
)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def make_record(spec: Any, status: str, metrics: dict[str, Any], env: dict[str, Any],
                **extra: Any) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"invalid status {status!r}: valid: {', '.join(STATUSES)}")
    return {
        "schema": SCHEMA, "case_id": spec.case_id, "group_id": spec.group_id, "name": spec.name,
        "status": status, "spec": spec.to_dict(), "metrics": metrics, "env": env,
        "created_at": utc_now(), **extra,
    }


def check_writable(directory: Path) -> None:
    """Fail before any training if records could not be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".kdbench-write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise KdbenchError(
            f"results directory {str(directory)!r} is not writable ({exc.strerror}): "
            f"choose another with --kd-results") from None


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one whole line, under an exclusive lock (safe across xdist workers)."""
    line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _record_files(paths: Iterable[Path | str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            raise KdbenchError(f"no record file or folder at {str(p)!r}")
    return files


@dataclass
class Loaded:
    """Records as read: the newest of every case, and what was left out."""

    records: list[dict[str, Any]]
    superseded: int = 0  # older records of a case that has a newer one
    bad_lines: int = 0  # torn or corrupt lines skipped
    files: list[Path] = field(default_factory=list)


def newest(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(the newest record of every case, how many older ones were superseded). Ties of
    ``created_at`` go to the record that comes later in ``records``."""
    best: dict[str, tuple[str, int, dict[str, Any]]] = {}
    count = 0
    for position, rec in enumerate(records):
        count += 1
        key = (rec["created_at"], position)
        if rec["case_id"] not in best or key > best[rec["case_id"]][:2]:
            best[rec["case_id"]] = (*key, rec)
    return [entry[2] for entry in best.values()], count - len(best)


def read(paths: Iterable[Path | str]) -> Loaded:
    """Read record files/folders: torn or corrupt lines are skipped and counted; the same record
    seen twice (same case_id and created_at, e.g. a run file copied into two shard folders)
    counts once; of several records of a case the newest is kept and the others counted as
    superseded."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    bad = 0
    files = _record_files(paths)
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    key = (rec["case_id"], rec["created_at"])
                    if not isinstance(rec["spec"], dict) or not isinstance(rec["metrics"], dict):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                seen.pop(key, None)  # a duplicate takes the later position
                seen[key] = rec
    records, superseded = newest(seen.values())
    return Loaded(records, superseded, bad, files)


def load_records(paths: Iterable[Path | str], *, warn: bool = True) -> list[dict[str, Any]]:
    """``read(paths).records``; skipped lines and superseded records in one warning each."""
    loaded = read(paths)
    if warn:
        for message in notes(loaded):
            warnings.warn(message, stacklevel=2)
    return loaded.records


def notes(loaded: Loaded) -> list[str]:
    """What ``read`` left out, in words."""
    out = []
    if loaded.bad_lines:
        out.append(f"skipped {loaded.bad_lines} corrupt or torn record line(s)")
    if loaded.superseded:
        out.append(f"{loaded.superseded} older record(s) superseded by a newer record of the "
                   f"same case (one value per case: the newest)")
    return out


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Flatten records: spec fields and metrics become columns (env as ``env.*``)."""
    rows = []
    for r in records:
        row = {"case_id": r["case_id"], "group_id": r["group_id"], "status": r["status"],
               "name": r.get("name"), "created_at": r["created_at"], "schema": r.get("schema"),
               "reason": r.get("reason"), "error": r.get("error")}
        row.update(r["spec"])
        row.update(r["metrics"])
        row.update({f"env.{k}": v for k, v in r.get("env", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_frame(paths: Iterable[Path | str]) -> pd.DataFrame:
    return records_frame(load_records(paths))
