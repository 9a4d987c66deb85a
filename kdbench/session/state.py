"""The state of one pytest process's benchmark run (``config.stash[SESSION]``): its cases, where
its records go, the engine, the baseline and what the gate decided, the records a write failed
for."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from kdbench import results
from kdbench.gate.comparison import Comparison
from kdbench.matrix import tuning
from kdbench.observe.hooks import Observer
from kdbench.registry import KdbenchError
from kdbench.run import measure
from kdbench.run.engine import Engine
from kdbench.spec import RunSpec


@dataclass
class KdSession:
    """What one pytest process knows about the benchmark run."""

    config: pytest.Config
    specs: list[RunSpec]
    results_dir: Path
    run_file: Path
    baseline: list[dict[str, Any]] | None = None
    engine: Engine | None = None
    # the gate's decision, or why it could not decide
    comparison: Comparison | KdbenchError | None = None
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # --kd-resume: ok records
    workers: int = 1  # processes running cases at once (xdist workers)
    gpu_share: dict[str, Any] | None = None  # an xdist worker's GPU (kdbench.scale.gpu_share)
    unsaved: list[dict[str, Any]] = field(default_factory=list)  # records a write failed for
    write_error: str | None = None
    observer: Observer | None = None  # progress events and trackers (kdbench.observe)
    selected: set[str] = field(default_factory=set)  # case ids left by -k / -m
    stop_at: float | None = None  # --kd-stop-after: no case starts after this time.time()

    def resolve(self, spec: RunSpec) -> tuple[RunSpec, dict[str, Any] | None]:
        """A tuned case at the setting its trials chose (``kdbench.matrix.tuning``) and the
        choice its record keeps; any other case as it is, with None."""
        if spec.tune != "tuned":
            return spec, None
        trials = tuning.trials_of(spec, self.specs)
        pending = {t.case_id for t in trials} & self.selected
        return tuning.resolve(spec, trials, self._recorded, pending, wait=self.workers > 1)

    def _recorded(self) -> dict[str, dict[str, Any]]:
        """case id → the newest record under the results folder, this session's included."""
        runs = self.results_dir / "runs"
        saved = results.read([runs]).records if runs.is_dir() else []
        return {r["case_id"]: r for r in results.newest([*saved, *self.unsaved])[0]}

    def get_engine(self) -> Engine:
        if self.engine is None:
            opt = self.config.getoption
            echo = self.config.getoption("capture") == "no"
            self.engine = Engine(
                cache_dir=opt("kd_cache"),
                data_root=opt("kd_data_root"),
                download=opt("kd_download"),
                compile_mode=opt("kd_compile_mode"),
                progress=(lambda message: print(f"[kdbench] {message}", flush=True))
                if echo
                else None,
                tick=self.observer.tick if self.observer else None,
            )
        return self.engine

    def share(self, device: str) -> dict[str, Any]:
        """The hardware share a case on ``device`` had, for its record's env."""
        if device != "cuda":
            return {"workers": self.workers}
        return {
            "workers": self.workers,
            **(
                self.gpu_share
                or {
                    "gpu_index": torch.cuda.current_device(),
                    "workers_per_gpu": 1,
                    "gpu_memory_fraction": None,
                }
            ),
        }

    def store(self, record: dict[str, Any]) -> None:
        """Append the record; if the write fails (disk full, folder removed), keep it in memory,
        report it at the end of the session and fail the session instead of losing the case."""
        try:
            results.append_record(self.run_file, record)
        except OSError as exc:
            self.unsaved.append(record)
            self.write_error = f"{self.run_file}: {exc.strerror or exc}"
        if self.observer is not None:
            self.observer.record(record)  # to the trackers, once the record is written

    def records(self) -> tuple[list[dict[str, Any]], int]:
        """This session's records (all workers), the unsaved ones and the resumed ones: the
        newest of each case; and how many older records they superseded."""
        saved = results.read([self.run_file]).records if self.run_file.exists() else []
        wanted = {s.case_id for s in self.specs}
        tuned = {tuning.tuned_case(s.to_dict()) for s in self.specs if s.tune == "tuned"}
        resumed = [
            r
            for cid, r in self.done.items()
            if cid in wanted or tuning.tuned_case(r["spec"]) in tuned
        ]
        return results.newest([*resumed, *saved, *self.unsaved])

    @property
    def leaderboard_file(self) -> Path:
        return self.run_file.with_suffix(".md")


SESSION = pytest.StashKey[KdSession]()


def run_file_name() -> str:
    """``<UTC time>_<git sha>_<pid>.jsonl``; the time to the microsecond, so that two sessions of
    one process (pytester runs in-process) started within a second get files of their own."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}_{measure.git_sha()}_{os.getpid()}.jsonl"
