"""How the processes of a run tell each other (and ``kdbench watch``) how far they are.

Every process that runs cases (the pytest process, or each pytest-xdist worker) appends events,
one JSON object per line, to its own file in the run's progress folder, beside the run's
records: ``<results>/runs/<run>.progress/<worker>.ndjson``. A file per writer needs no lock;
appends are whole lines; a reader keeps its offset and reads complete lines only, so it sees
every event once, from any process or machine that sees the folder (a SLURM array's shards on a
shared file system). The controller writes ``controller.json`` (its host and pid) when the
cases are known and ``end.json`` when the session finishes: the run's end, for ``kdbench
watch`` (a controller gone without it was killed). ``stop.json``, written by any of them on
SIGUSR1, asks every process to stop once its running case is recorded.

Events: ``plan`` (the cases this process collected), ``start`` / ``end`` of a case (its pytest
outcome), ``tick`` (a training stage's progress: epochs done, fractional; throttled, every epoch
end kept), ``finish`` (the process is done).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIX = ".progress"  # the progress folder: the run file's name with this suffix
EVENTS = ".ndjson"  # not .jsonl: record loaders read every *.jsonl under a results folder
END_FILE = "end.json"
CONTROLLER_FILE = "controller.json"  # the process that reports the run and writes its end
STOP_FILE = "stop.json"  # a stop was asked for: no process starts another case
TICK_INTERVAL = 1.0  # seconds between two mid-epoch ticks of one writer


def progress_dir(run_file: Path) -> Path:
    """The progress folder of the run whose records go to ``run_file``."""
    return run_file.with_suffix(SUFFIX)


class EventLog:
    """One writer's events: append-only, one line per event, throttled ticks."""

    def __init__(self, folder: Path, worker: str) -> None:
        self.path = folder / f"{worker}{EVENTS}"
        self._last_tick = 0.0

    def emit(self, event: str, **fields: Any) -> None:
        """Append one event; progress is best effort: a folder that cannot be written (the
        session then stops on its own check of the results folder) never fails a session."""
        line = json.dumps({"t": time.time(), "event": event, **fields}) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def plan(self, cases: list[tuple[str, str, str]]) -> None:
        """``cases``: (case_id, name, tuning key) of every case this process collected."""
        self.emit("plan", cases=cases, host=socket.gethostname(), pid=os.getpid())

    def tick(self, case_id: str, stage: str, epoch: float, epochs: int) -> None:
        """``epoch`` epochs of ``epochs`` done in ``stage``; mid-epoch ticks at most every
        ``TICK_INTERVAL`` seconds, epoch ends always."""
        now = time.monotonic()
        if epoch != int(epoch) and now - self._last_tick < TICK_INTERVAL:
            return
        self._last_tick = now
        self.emit("tick", case_id=case_id, stage=stage, epoch=round(epoch, 4), epochs=epochs)


def write_marker(folder: Path, name: str, **fields: Any) -> None:
    """``name`` (``CONTROLLER_FILE`` when the controller starts, ``END_FILE`` with the exit
    status when the session finishes), written whole."""
    tmp = folder / f".{name}.{os.getpid()}"
    tmp.write_text(
        json.dumps({"t": time.time(), "host": socket.gethostname(), "pid": os.getpid(), **fields})
    )
    os.replace(tmp, folder / name)


def read_marker(folder: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None


class Tail:
    """The new complete event lines of every writer of one progress folder, read incrementally."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}

    def read(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(worker, event) for every event appended since the last call."""
        for path in sorted(self.folder.glob(f"*{EVENTS}")):
            start = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    chunk = fh.read()
            except OSError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits
            self._offsets[path] = start + len(complete)
            worker = path.name[: -len(EVENTS)]
            for line in complete.splitlines():
                try:
                    yield worker, json.loads(line)
                except ValueError:
                    continue


def find_runs(folder: Path) -> list[Path]:
    """Every progress folder under ``folder`` (a results folder, a SLURM job's folder of shards,
    or one progress folder)."""
    if folder.name.endswith(SUFFIX):
        return [folder]
    return sorted(p for p in folder.rglob(f"*{SUFFIX}") if p.is_dir())


def alive(host: str | None, pid: int | None) -> bool | None:
    """Whether the process runs; None when it runs on another host (cannot tell from here)."""
    if host != socket.gethostname() or pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
