"""Records: one JSON object per case per line; an append-safe store and the one checked loader.

Every consumer (reports in every format, compare, history, the plugin's baseline and resume)
reads records through ``read``, which holds them to one schema (``schema_problem``): a line
that is not JSON, or a JSON value that is not a record of a schema this kdbench reads (a key
missing, a value of the wrong type, an unknown schema version), is *unusable*: skipped, and
named with its file, line and why. Reports note it, the gate refuses the input.

One case (``case_id``) contributes one record to everything built from records: the newest
(by ``created_at``, then by position: a later file or line wins a tie). Older records of the
same case are *superseded* and counted, never pooled with it (a re-run must not count a seed
twice).
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kdbench.registry import KdbenchError

if TYPE_CHECKING:
    from kdbench.spec import RunSpec

SCHEMA = 2  # 2: validation split (val_top1), fidelity_kl, status "n/a", per-case memory
SCHEMAS_READ = (1, 2)  # the versions reports read (the gate compares one version only)
STATUSES = ("ok", "diverged", "error", "n/a")
FINAL = ("ok", "diverged", "n/a")  # what a rerun of the case would repeat: --kd-resume skips it
METRICS = (  # the numeric metrics reports aggregate over seeds
    "top1",
    "top5",
    "val_top1",
    "best_top1",
    "teacher_top1",
    "student_params",
    "teacher_params",
    "extra_params",
    "compression",
    "student_flops",
    "train_throughput",
    "train_throughput_online",
    "infer_throughput",
    "latency_ms",
    "peak_mem_mb",
    "agreement",
    "fidelity_kl",
    "train_s",
    "final_temperature",
)
NONE = type(None)
# the schema: key → the types its value may have; REQUIRED keys must be there, the others may
REQUIRED = {
    "schema": (int,),
    "case_id": (str,),
    "group_id": (str,),
    "status": (str,),
    "spec": (dict,),
    "metrics": (dict,),
    "created_at": (str,),
}
OPTIONAL = {"name": (str,), "env": (dict,), "reason": (str,), "error": (str,)}
SPEC_REQUIRED = {
    "dataset": (str,),
    "teacher": (str,),
    "student": (str,),
    "loss": (str,),
    "seed": (int,),
}
SPEC_OPTIONAL = {
    "temperature": (float, NONE),
    "alpha": (float,),
    "ce_weight": (float,),
    "teacher_seed": (int,),
    "device": (str,),
    "epochs": (int,),
    "teacher_epochs": (int,),
    "batch_size": (int,),
    "recipe": (str,),
    "precision": (str,),
    "compile": (bool,),
    "teacher_ckpt": (str, NONE),
    "loss_options": (dict,),
    "dataset_options": (dict,),
    "tune": (str, NONE),
    "channels_last": (bool,),
}
KINDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    NONE: "null",
}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def make_record(
    spec: RunSpec, status: str, metrics: dict[str, Any], env: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"invalid status {status!r}: valid: {', '.join(STATUSES)}")
    return {
        "schema": SCHEMA,
        "case_id": spec.case_id,
        "group_id": spec.group_id,
        "name": spec.name,
        "status": status,
        "spec": spec.to_dict(),
        "metrics": metrics,
        "env": env,
        "created_at": utc_now(),
        **extra,
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
            f"choose another with --kd-results"
        ) from None


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one whole line, under an exclusive lock (safe across xdist workers).
    The line goes in one ``write``; a write that fails or falls short (a full disk) is undone,
    the file cut back to its size before, so it never ends in part of a line."""
    line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)
                raise
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


@dataclass(frozen=True)
class Unusable:
    """A line ``read`` skipped: where it is and why it is no record."""

    file: Path
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} ({self.why})"


@dataclass
class Loaded:
    """Records as read: the newest of every case, and what was left out."""

    records: list[dict[str, Any]]
    superseded: int = 0  # older records of a case that has a newer one
    unusable: list[Unusable] = field(default_factory=list)  # lines skipped, each with why
    files: list[Path] = field(default_factory=list)

    @property
    def bad_lines(self) -> int:
        return len(self.unusable)

    def skipped(self, shown: int = 3) -> str:
        """The unusable lines in one line: how many, and the first ``shown`` with why."""
        named = "; ".join(map(str, self.unusable[:shown]))
        more = len(self.unusable) - shown
        return f"{self.bad_lines} corrupt or torn record line(s): {named}" + (
            f"; and {more} more" if more > 0 else ""
        )


def _show(value: Any) -> str:
    text = repr(value)  # one line: repr escapes newlines
    return text if len(text) <= 40 else f"{text[:37]}…"


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    """Whether ``value`` is of one of ``kinds``, where true/false is no integer and an integer
    is a number (``float``)."""
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds + ((int,) if float in kinds else ()))


def _keys_problem(table: dict, required: dict, optional: dict, prefix: str = "") -> str | None:
    for key, kinds in (*required.items(), *optional.items()):
        if key not in table:
            if key in required:
                return f"{prefix}{key} missing"
        elif not _is(table[key], kinds):
            return (
                f"{prefix}{key} is {_show(table[key])}, not {' or '.join(KINDS[k] for k in kinds)}"
            )
    return None


def schema_problem(rec: Any) -> str | None:
    """Why ``rec`` (a parsed JSON line) is not a record of a schema this kdbench reads, in a
    few words on one line; None when it is one."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    problem = _keys_problem(rec, REQUIRED, OPTIONAL)
    if problem:
        return problem
    if rec["schema"] not in SCHEMAS_READ:
        return (
            f"schema mismatch: schema {rec['schema']}, this kdbench reads schema "
            f"{', '.join(map(str, SCHEMAS_READ))}"
        )
    if rec["status"] not in STATUSES:
        return f"status {_show(rec['status'])} is not one of {', '.join(STATUSES)}"
    return _keys_problem(rec["spec"], SPEC_REQUIRED, SPEC_OPTIONAL, "spec.") or _keys_problem(
        rec["metrics"], {}, {m: (float,) for m in METRICS}, "metrics."
    )


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
    """Read record files/folders: lines that are no record (``schema_problem``) are skipped and
    named; the same record seen twice (same case_id and created_at, e.g. a run file copied into
    two shard folders) counts once; of several records of a case the newest is kept and the
    others counted as superseded."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    unusable: list[Unusable] = []
    files = _record_files(paths)
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    unusable.append(Unusable(f, number, "not JSON: torn or corrupt"))
                    continue
                problem = schema_problem(rec)
                if problem:
                    unusable.append(Unusable(f, number, problem))
                    continue
                key = (rec["case_id"], rec["created_at"])
                seen.pop(key, None)  # a duplicate takes the later position
                seen[key] = rec
    records, superseded = newest(seen.values())
    return Loaded(records, superseded, unusable, files)


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
    if loaded.unusable:
        out.append(f"skipped {loaded.skipped()}")
    if loaded.superseded:
        out.append(
            f"{loaded.superseded} older record(s) superseded by a newer record of the "
            f"same case (one value per case: the newest)"
        )
    return out


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Flatten records: spec fields and metrics become columns (env as ``env.*``)."""
    rows = []
    for r in records:
        row = {
            "case_id": r["case_id"],
            "group_id": r["group_id"],
            "status": r["status"],
            "name": r.get("name"),
            "created_at": r["created_at"],
            "schema": r.get("schema"),
            "reason": r.get("reason"),
            "error": r.get("error"),
        }
        row.update(r["spec"])
        row.update(r["metrics"])
        row.update({f"env.{k}": v for k, v in r.get("env", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_frame(paths: Iterable[Path | str]) -> pd.DataFrame:
    return records_frame(load_records(paths))
