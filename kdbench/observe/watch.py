"""``kdbench watch RESULTS``: follow a run going on elsewhere (another terminal, a SLURM array
whose shards write under one folder) from the files it writes: its progress events and its
records. Cases done per shard, failures so far, ETA, the leaderboard as it stands; it ends when
the run has ended (every session wrote its end, or its processes are gone).

A shard is a folder with a ``runs/`` folder of its own (``<job>/shard-<i>/runs/``, see
``kdbench.scale.slurm``); a plain results folder is one shard. A shard's newest session counts
(a requeued SLURM task resumes in a new one). Next to a SLURM job's folder, ``shards.sbatch``
says how many shards to wait for.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from kdbench import results
from kdbench.observe.channel import find_runs
from kdbench.observe.eta import format_seconds, load_durations, remaining
from kdbench.observe.progress import HEARTBEAT_S, bars, headline
from kdbench.observe.state import RunState
from kdbench.registry import KdbenchError
from kdbench.scale.slurm import SHARDS_SCRIPT

ARRAY = re.compile(r"^#SBATCH --array=1-(\d+)$", re.MULTILINE)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "results",
        metavar="RESULTS",
        help="the run's results folder (--kd-results), or a SLURM job's folder of "
        "shards (<results>/<array job id>)",
    )
    p.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between two looks (2)"
    )
    p.add_argument("--once", action="store_true", help="show the run as it stands and exit")


class Watch:
    """The shards of a run under ``folder``: label → its newest session's state (None: not
    started)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.states: dict[Path, RunState] = {}
        self.known = load_durations([folder])
        self._records_seen: tuple = ()
        self._leaderboard = ""

    def expected(self) -> list[str]:
        """Shard labels a SLURM job of this folder will have (none outside such a job)."""
        script = self.folder.parent / SHARDS_SCRIPT
        found = ARRAY.search(script.read_text()) if script.is_file() else None
        return [f"shard-{i}" for i in range(1, int(found.group(1)) + 1)] if found else []

    def shards(self) -> dict[str, RunState | None]:
        newest: dict[str, Path] = {}
        for run in find_runs(self.folder):  # <shard>/runs/<session>.progress, sorted by time
            shard = run.parent.parent
            newest[
                shard.relative_to(self.folder).as_posix()
                if shard != self.folder
                else self.folder.name
            ] = run
        out: dict[str, RunState | None] = {label: None for label in self.expected()}
        for label, run in sorted(newest.items()):
            out[label] = self.states.setdefault(run, RunState(run)).update()
        return out

    def ended(self, shards: dict[str, RunState | None]) -> bool:
        """Every shard's session has ended (a folder of records without progress: a run from
        before kdbench kept progress, ended)."""
        return all(s is not None and s.ended for s in shards.values()) and (
            bool(shards) or bool(self.record_files())
        )

    def record_files(self) -> list[Path]:
        """The run's records: every shard's of a SLURM job (a requeued task's earlier sessions
        included), else the newest session's (a results folder keeps earlier runs too)."""
        if self.expected():
            return sorted(self.folder.rglob("*.jsonl"))
        runs = {run.parent: run for run in find_runs(self.folder)}  # the newest per folder
        files = [run.with_suffix(".jsonl") for run in runs.values()]
        return [f for f in files if f.is_file()] if files else sorted(self.folder.rglob("*.jsonl"))

    def leaderboard(self) -> str:
        """The leaderboard of the run's records so far (recomputed when they change)."""
        files = self.record_files()
        seen = tuple((f, f.stat().st_size) for f in files)
        if seen != self._records_seen:
            self._records_seen = seen
            from kdbench.publish.markdown import session_report

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                records = results.read(files).records if files else []
            self._leaderboard = session_report(results.records_frame(records)) if records else ""
        return self._leaderboard

    def summary(self, shards: dict[str, RunState | None], now: float) -> list[str]:
        """A line for the run, then a line per shard."""
        states = [s for s in shards.values() if s is not None]
        etas = [e for e in (remaining(s, self.known, now) for s in states) if e is not None]
        eta = max(etas) if states and len(etas) == len(states) == len(shards) else None
        done = sum(len(s.done()) for s in states)
        planned = sum(s.planned for s in states)
        failed = sum(len(s.failed()) for s in states)
        status = "ended" if self.ended(shards) else f"ETA {format_seconds(eta)}"
        lines = [f"{self.folder}: {done}/{planned} done · {failed} failed · {status}"]
        for label, state in shards.items():
            if state is None:
                lines.append(f"  {label}: not started")
                continue
            end = (
                ""
                if not state.ended
                else " · ended"
                if state.end is None
                else f" · ended (exit {state.end['exitstatus']})"
            )
            lines.append(f"  {label}: {headline(state, remaining(state, self.known, now))}{end}")
        return lines

    def render(self) -> RenderableType:
        now = time.time()
        shards = self.shards()
        parts: list[RenderableType] = [Text("\n".join(self.summary(shards, now)))]
        for label, state in shards.items():
            if state is not None and state.running():
                parts += [Text(f"{label}:", style="bold"), bars(state, now)]
        return Group(*parts, Text(self.leaderboard()))


def exit_code(shards: dict[str, RunState | None]) -> int:
    """0: every session ended with exit 0; 1: a session failed or was killed."""
    ends = [s.end for s in shards.values() if s is not None]
    return 0 if all(e is not None and e["exitstatus"] == 0 for e in ends) else 1


def main(args: argparse.Namespace) -> int:
    folder = Path(args.results)
    if args.interval <= 0:
        raise KdbenchError(f"invalid --interval {args.interval}: must be > 0")
    if not folder.is_dir() and args.once:
        raise KdbenchError(f"no results folder at {str(folder)!r}")
    if not folder.is_dir():  # a run not started yet (a SLURM job still pending)
        print(f"kdbench watch: waiting for {folder} to appear", file=sys.stderr, flush=True)
        while not folder.is_dir():
            time.sleep(args.interval)
    watch = Watch(folder)
    console = Console()
    if console.is_terminal and not args.once:
        with Live(
            get_renderable=watch.render, console=console, refresh_per_second=1, transient=True
        ):
            while not watch.ended(watch.shards()):
                time.sleep(args.interval)
    elif not args.once:  # a pipe or a log: when a count moves, else every HEARTBEAT_S
        last, beat = None, 0.0
        while not watch.ended(shards := watch.shards()):
            counts = [(len(s.done()), len(s.failed())) if s else None for s in shards.values()]
            if counts != last or time.monotonic() - beat >= HEARTBEAT_S:
                print("\n".join(watch.summary(shards, time.time())), flush=True)
                last, beat = counts, time.monotonic()
            time.sleep(args.interval)
    shards = watch.shards()
    print("\n".join(watch.summary(shards, time.time())))
    print(watch.leaderboard(), end="")
    sys.stdout.flush()
    return exit_code(shards) if watch.ended(shards) else 0
