"""Showing a run's progress: a live rich panel on a terminal (the session's counts and ETA, a
bar per running case), or a bounded line log when the output is not a terminal (CI)."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from rich.ansi import AnsiDecoder
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kdbench.observe.eta import Durations, format_seconds, remaining
from kdbench.observe.state import CaseState, RunState

MODES = ("auto", "live", "log", "off")
REFRESH_PER_SECOND = 4
LOG_LINES = 50  # a log line per case up to this many cases, else one per 1/LOG_LINES of them
HEARTBEAT_S = 60.0  # the log's "still running" lines, at most this often


def headline(state: RunState, eta: float | None) -> str:
    failed = len(state.failed())
    return (
        f"{len(state.done())}/{state.planned} done · {len(state.running())} running · "
        f"{state.left()} left · {failed} failed · ETA {format_seconds(eta)}{stop_note(state)}"
    )


def stop_note(state: RunState) -> str:
    """The headline's end: a stop asked for, else ``--kd-stop-after``'s time, else nothing."""
    if state.stopping:
        return " · stopping: no case starts after the running ones"
    stop_at = (state.controller or {}).get("stop_at")
    if stop_at is None:
        return ""
    clock = time.strftime("%H:%M", time.localtime(stop_at))
    return f" · no case starts after {clock} (--kd-stop-after)"


def where(case: CaseState) -> str:
    """The case's training progress in words: ``teacher cnn_t epoch 3.5/10``."""
    if not case.epochs:
        return "starting"
    stage = "" if case.stage == case.name else f"{case.stage} "
    return f"{stage}epoch {case.epoch:.4g}/{case.epochs}"


def bars(state: RunState, now: float) -> Table:
    """A row per running case: worker, case, stage, bar, epoch, elapsed time."""
    table = Table.grid(padding=(0, 1))
    for case in state.running():
        stage = "" if case.stage in ("", case.name) else case.stage
        table.add_row(
            Text(case.worker or "", style="cyan"),
            Text(case.name),
            Text(stage),
            ProgressBar(total=case.epochs or None, completed=case.epoch, width=24),
            f"epoch {case.epoch:.1f}/{case.epochs}" if case.epochs else "starting",
            format_seconds(now - case.started if case.started is not None else None),
        )
    return table


def panel(state: RunState, known: Durations, now: float | None = None) -> RenderableType:
    """The session's counts and ETA, then a bar per running case."""
    now = time.time() if now is None else now
    head = Text.assemble(("kdbench ", "bold"), headline(state, remaining(state, known, now)))
    return Group(head, bars(state, now)) if state.running() else head


class LineLog:
    """A line per finished case (per ``1/LOG_LINES`` of the cases for large runs) and, while
    cases run, a line per running case at most every ``heartbeat`` seconds: the output grows
    with the run's length, never with its step count."""

    def __init__(self, write: Callable[[str], None], heartbeat: float = HEARTBEAT_S) -> None:
        self.write = write
        self.heartbeat = heartbeat
        self._reported: set[str] = set()
        self._last_beat = time.monotonic()

    def update(self, state: RunState, known: Durations) -> None:
        step = max(1, math.ceil(state.planned / LOG_LINES))
        for case in state.done():
            if case.case_id in self._reported:
                continue
            self._reported.add(case.case_id)
            count = len(self._reported)
            if count % step == 0 or count == state.planned:
                self.write(
                    f"[kdbench] {headline(state, remaining(state, known))} · "
                    f"{case.worker} {case.name} {case.outcome} after {where(case)} in "
                    f"{format_seconds(case.seconds)}"
                )

    def beat(self, state: RunState, known: Durations, write: Callable[[str], None]) -> None:
        if time.monotonic() - self._last_beat < self.heartbeat:
            return
        self._last_beat = time.monotonic()
        for case in state.running():
            write(
                f"[kdbench] {headline(state, remaining(state, known))} · running: "
                f"{case.worker} {case.name} {where(case)}"
            )


class Above:
    """A file whose text goes above a live panel a whole line at a time: a partial line (pytest's
    progress dots) waits for its end, a carriage return keeps what follows it, colours stay."""

    def __init__(self, console: Console, file: TextIO) -> None:
        self.console = console
        self.file = file
        self.partial = ""
        self._decoder = AnsiDecoder()

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        if lines:
            self.console.print(
                Text("\n").join(self._decoder.decode_line(line.rsplit("\r")[-1]) for line in lines)
            )
        return len(text)

    def flush(self) -> None:
        """Nothing: a line is printed when it ends."""

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)


class Display:
    """The controller's view of its own run: ``poll()`` from pytest's hooks (main thread); a
    live panel refreshes itself on ``out``; a log writes its lines with ``write_line`` (pytest's
    terminal, from the main thread) and beats on ``out`` from a thread while cases run."""

    def __init__(
        self,
        folder: Path,
        mode: str,
        known: Durations,
        out: TextIO,
        write_line: Callable[[str], None],
    ) -> None:
        self.state = RunState(folder)
        self.known = known
        self.mode = mode
        self.out = out
        self.write_line = write_line
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.live: Live | None = None
        self.log: LineLog | None = None
        self._beats: threading.Thread | None = None

    def start(self) -> None:
        if self.mode == "live":
            console = Console(file=self.out, force_terminal=True)
            self.live = Live(
                get_renderable=self._render,
                console=console,
                refresh_per_second=REFRESH_PER_SECOND,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.live.start()
        else:
            self.log = LineLog(self.write_line)
            self._beats = threading.Thread(
                target=self._beat, args=(self.log,), name="kdbench-progress", daemon=True
            )
            self._beats.start()

    def poll(self) -> None:
        """Read the new events; a log writes its lines, a panel redraws (every case's start and
        end shows, however short the case)."""
        with self._lock:
            self.state.update()
            if self.log is not None:
                self.log.update(self.state, self.known)
        if self.live is not None:
            self.live.refresh()

    def stop(self) -> None:
        self.poll()
        self._stop.set()
        if self.live is not None:
            self.live.stop()
        if self._beats is not None:
            self._beats.join()

    def _render(self) -> RenderableType:
        with self._lock:
            self.state.update()
            return panel(self.state, self.known)

    def _beat(self, log: LineLog) -> None:
        def write(line: str) -> None:
            sys.stdout.flush()  # pytest's lines first where both share a pipe
            self.out.write(line + "\n")
            self.out.flush()

        while not self._stop.wait(1.0):
            with self._lock:
                log.beat(self.state.update(), self.known, write)
