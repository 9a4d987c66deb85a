"""A run's progress as its events tell it: cases planned, running (stage, epoch), done, failed;
the processes that run them; whether the run has ended."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.observe.channel import CONTROLLER_FILE, END_FILE, STOP_FILE, Tail, alive, read_marker


@dataclass
class CaseState:
    case_id: str
    name: str
    key: str | None = None  # its tuning key (kdbench.matrix.tuning), for its ETA
    worker: str | None = None
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None  # pytest's: passed, failed, skipped, xfailed
    stage: str = ""
    epoch: float = 0.0  # epochs of the stage done (fractional)
    epochs: int = 0
    stage_started: float | None = None
    ticks: int = 0  # progress events seen

    @property
    def fraction(self) -> float:
        return min(1.0, self.epoch / self.epochs) if self.epochs else 0.0

    @property
    def seconds(self) -> float | None:
        """Wall seconds from start to end (ended cases)."""
        return None if self.started is None or self.ended is None else self.ended - self.started


@dataclass
class Writer:
    """One process that runs cases (``main`` or an xdist worker ``gw<i>``)."""

    host: str | None = None
    pid: int | None = None
    current: str | None = None  # case_id
    finished: bool = False


@dataclass
class RunState:
    """What the events of one progress folder say; ``update()`` reads the new ones."""

    folder: Path
    cases: dict[str, CaseState] = field(default_factory=dict)
    writers: dict[str, Writer] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    controller: dict[str, Any] | None = None
    stopping: bool = False  # a stop was asked for (SIGUSR1): no case starts after the running

    def __post_init__(self) -> None:
        self._tail = Tail(self.folder)

    def update(self) -> RunState:
        for worker, event in self._tail.read():
            self.apply(worker, event)
        self.end = read_marker(self.folder, END_FILE)
        self.stopping = (self.folder / STOP_FILE).exists()
        self.controller = self.controller or read_marker(self.folder, CONTROLLER_FILE)
        return self

    def apply(self, worker: str, event: dict[str, Any]) -> None:
        kind, t = event.get("event"), event.get("t", time.time())
        writer = self.writers.setdefault(worker, Writer())
        if kind == "plan":
            writer.host, writer.pid = event.get("host"), event.get("pid")
            for case_id, name, *key in event.get("cases", ()):  # no key: an older kdbench's
                self.cases.setdefault(case_id, CaseState(case_id, name, *key))
            return
        if kind == "finish":
            writer.finished, writer.current = True, None
            return
        if "case_id" not in event:
            return
        case = self.cases.setdefault(
            event["case_id"], CaseState(event["case_id"], event.get("name", "?"))
        )
        if kind == "start":
            case.worker, case.started, writer.current = worker, t, case.case_id
            case.ended = case.outcome = None
        elif kind == "tick":
            if event.get("stage") != case.stage or case.stage_started is None:
                case.stage, case.stage_started = event.get("stage", ""), t
            case.epoch, case.epochs = float(event.get("epoch", 0)), int(event.get("epochs", 0))
            case.ticks += 1
        elif kind == "end":
            case.worker = case.worker or worker
            case.ended, case.outcome = t, event.get("outcome")
            if writer.current == case.case_id:
                writer.current = None

    @property
    def planned(self) -> int:
        return len(self.cases)

    def done(self) -> list[CaseState]:
        return sorted(
            (c for c in self.cases.values() if c.ended is not None), key=lambda c: c.ended or 0.0
        )

    def running(self) -> list[CaseState]:
        return sorted(
            (c for c in self.cases.values() if c.started is not None and c.ended is None),
            key=lambda c: c.worker or "",
        )

    def failed(self) -> list[CaseState]:
        return [c for c in self.done() if c.outcome == "failed"]

    def left(self) -> int:
        return sum(c.started is None for c in self.cases.values())

    @property
    def ended(self) -> bool:
        """The session wrote its end, or its controller is gone without (killed; known on the
        controller's host only)."""
        if self.end is not None:
            return True
        return (
            self.controller is not None
            and alive(self.controller.get("host"), self.controller.get("pid")) is False
        )

    def workers(self) -> int:
        """Processes that still run cases."""
        return max(1, sum(not w.finished for w in self.writers.values()))
