"""The pytest side of kdbench.observe: options, the events a process writes about its cases,
the controller's display, the run's end marker, and the trackers a record goes to.

kdbench's plugin adds the options (``add_options``), builds an ``Observer`` at configure time
(``Observer.from_config``), registers it as a plugin, passes ``Observer.tick`` to the engine's
training loop and hands every written record to ``Observer.record``.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pytest

from kdbench.matrix.tuning import tuning_key
from kdbench.observe import trackers
from kdbench.observe.channel import CONTROLLER_FILE, END_FILE, EventLog, progress_dir, write_marker
from kdbench.observe.eta import load_durations
from kdbench.observe.progress import MODES, Above, Display
from kdbench.observe.state import RunState
from kdbench.registry import KdbenchError


def add_options(group: Any) -> None:
    group.addoption(
        "--kd-progress",
        default="auto",
        choices=MODES,
        help="live progress of the cases (done / running / left, ETA, a bar per "
        "running case): live on a terminal, a bounded line log otherwise "
        "(auto, the default), or off",
    )
    group.addoption(
        "--kd-log",
        action="append",
        default=[],
        metavar="TRACKER",
        help="also log every case to mlflow, tensorboard and/or wandb (repeatable "
        "or comma separated; each an extra: pip install 'kdbench[mlflow]')",
    )


def _mode(requested: str, out: TextIO) -> str:
    if requested != "auto":
        return requested
    terminal = out.isatty() and os.environ.get("TERM") != "dumb"
    return "live" if terminal else "log"


def _terminal_out() -> TextIO:
    """The output the display writes to: a duplicate of stdout's descriptor (pytest's output
    capture redirects descriptor 1 while a case runs in this process), else stdout itself."""
    try:
        return os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.stdout


class Observer:
    """One per pytest process. A process that runs cases writes their events; the process that
    reports (the controller, or the only process) shows them and marks the run's end."""

    def __init__(
        self,
        config: pytest.Config,
        run_file: Path,
        case_of: Callable[[Any], Any],
        logs: trackers.Trackers | None,
        stop_at: float | None = None,
    ) -> None:
        self.config = config
        self.stop_at = stop_at  # --kd-stop-after's time.time(), for the headline
        self.folder = progress_dir(run_file)
        self.results_dir = run_file.parent
        self.case_of = case_of  # pytest item → its RunSpec, or None when it will not run
        self.trackers = logs
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.events: EventLog | None = None
        self.cases: dict[str, tuple[str, str, str]] = {}  # nodeid → (case_id, name, tuning key)
        self.current: str | None = None  # case_id running in this process
        self.display: Display | None = None
        self._started = False  # the controller has written its marker
        self._tw_file: Any = None  # pytest's terminal file while the live panel has it
        self._above: Above | None = None

    @classmethod
    def from_config(
        cls,
        config: pytest.Config,
        run_file: Path,
        profile: str,
        case_of: Callable[[Any], Any],
        stop_at: float | None = None,
    ) -> Observer:
        """Checks ``--kd-log`` (a ``KdbenchError`` names the extra to install); the controller
        opens the MLflow store once, before any training and before workers share it."""
        names = trackers.parse(config.getoption("kd_log"))
        logs = (
            trackers.Trackers(names, run_file.parent.parent, profile, run_file.stem)
            if names
            else None
        )
        if logs and "mlflow" in names and not hasattr(config, "workerinput"):
            try:
                logs.open("mlflow")
            except Exception as exc:  # a bad MLFLOW_TRACKING_URI, a server down
                first = (str(exc).strip().splitlines() or [""])[0]
                raise KdbenchError(
                    f"--kd-log mlflow: cannot open the tracking store "
                    f"({type(exc).__name__}: {first})"
                ) from None
        return cls(config, run_file, case_of, logs, stop_at)

    @property
    def is_controller(self) -> bool:
        return not hasattr(self.config, "workerinput")

    # -------------------------------------------------------------- a process running cases

    @pytest.hookimpl(tryfirst=True)  # the plan is on disk before xdist's worker reports
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if sys.exc_info()[0] is not None:  # pytest calls this in a `finally`: collection failed
            return  # (a usage error found before training): nothing of this run goes on disk
        for item in session.items:
            spec = self.case_of(item)
            if spec is not None and hasattr(spec, "case_id"):
                self.cases[item.nodeid] = (spec.case_id, spec.name, tuning_key(spec.to_dict()))
        if self.cases and not self.config.option.collectonly:
            self.events = EventLog(self.folder, self.worker)
            self.events.plan(list(dict.fromkeys(self.cases.values())))
        if self.is_controller:
            self._start()

    @pytest.hookimpl(tryfirst=True)  # the event is on disk before xdist tells the controller
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if self.events is not None and nodeid in self.cases:
            self.current, name, _ = self.cases[nodeid]
            self.events.emit("start", case_id=self.current, name=name)
        if self.display is not None:
            self.display.poll()

    def tick(self, stage: str, epoch: float, epochs: int) -> None:
        """The training loop's progress: ``epoch`` of ``epochs`` done (fractional)."""
        if self.events is not None and self.current is not None:
            self.events.tick(self.current, stage, epoch, epochs)

    def record(self, record: dict[str, Any]) -> None:
        """A record was written: log it to the trackers."""
        if self.trackers is not None:
            self.trackers.log(record)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if (
            self.events is not None
            and report.nodeid in self.cases
            and (report.when == "call" or (report.when == "setup" and not report.passed))
        ):
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            self.events.emit("end", case_id=self.cases[report.nodeid][0], outcome=outcome)
            self.current = None
        if self.display is not None:
            self.display.poll()

    # -------------------------------------------------------------- the controller

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._start()

    def _start(self) -> None:
        """The controller, once the cases are known: its marker, then its display."""
        if self._started or not RunState(self.folder).update().cases:
            return  # started, or no kdbench case in this session
        self._started = True
        write_marker(self.folder, CONTROLLER_FILE, stop_at=self.stop_at)
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        if reporter is None or self.config.getoption("kd_progress") == "off":
            return
        out = _terminal_out()
        mode = _mode(self.config.getoption("kd_progress"), out)

        writer = self.config.get_terminal_writer()

        def write_line(line: str) -> None:
            if writer.width_of_current_line:  # after pytest's progress dots
                writer.line()
            writer.line(line)

        self.display = Display(
            self.folder, mode, load_durations([self.results_dir]), out, write_line
        )
        if mode == "live" and writer.width_of_current_line:  # a status line pytest rewrites
            writer.write("\r" + " " * writer.width_of_current_line + "\r", flush=True)
        self.display.start()
        if self.display.live is not None:  # pytest's own lines go above the live panel
            self._tw_file = writer._file
            self._above = writer._file = Above(self.display.live.console, self._tw_file)

    @pytest.hookimpl(trylast=True)  # after kdbench's gate has set the session's exit status
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.events is not None:
            self.events.emit("finish")
        if not self.is_controller:
            return
        if self.display is not None:
            self.display.stop()
            if self._above is not None:
                self._tw_file.write(self._above.partial)
                self.config.get_terminal_writer()._file = self._tw_file
            if self.display.out is not sys.stdout:
                self.display.out.close()
        if self.folder.is_dir():
            write_marker(self.folder, END_FILE, exitstatus=int(session.exitstatus))
