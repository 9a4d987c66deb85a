"""Records: one JSON object per case per line; an append-safe store and a tolerant loader."""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from kdbench.registry import KdbenchError

SCHEMA = 1
STATUSES = ("ok", "diverged", "error")
METRICS = (
    "top1", "top5", "best_top1", "teacher_top1", "student_params", "teacher_params",
    "extra_params", "compression", "student_flops", "train_throughput", "infer_throughput",
    "latency_ms", "peak_mem_mb", "agreement", "train_s",
)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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


def load_records(paths: Iterable[Path | str], *, warn: bool = True) -> list[dict[str, Any]]:
    """Read record files/folders. Torn or corrupt lines are skipped and counted in one warning;
    a record seen twice (same case_id and created_at) counts once."""
    records: dict[tuple[str, str], dict[str, Any]] = {}
    bad = 0
    for f in _record_files(paths):
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
                records.setdefault(key, rec)
    if bad and warn:
        warnings.warn(f"skipped {bad} corrupt or torn record line(s)", stacklevel=2)
    return list(records.values())


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Flatten records: spec fields and metrics become columns (env as ``env.*``)."""
    rows = []
    for r in records:
        row = {"case_id": r["case_id"], "group_id": r["group_id"], "status": r["status"],
               "name": r.get("name"), "created_at": r["created_at"], "schema": r.get("schema")}
        row.update(r["spec"])
        row.update(r["metrics"])
        row.update({f"env.{k}": v for k, v in r.get("env", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_frame(paths: Iterable[Path | str]) -> pd.DataFrame:
    return records_frame(load_records(paths))
