"""``--kd-log mlflow|tensorboard|wandb``: every record, once written, also goes to the
experiment trackers a team looks at: one tracker run per case, its spec as parameters, its
per-epoch history as curves, its final metrics, its group and profile as tags.

Each tracker is an optional extra (``pip install 'kdbench[mlflow]'``); a missing one is a
one-line error at configure time. A tracker that fails to log is a warning: the record is on
disk before any tracker sees it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import warnings
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from kdbench.registry import KdbenchError

# tracker → the modules it needs (the extra of the same name installs them)
TRACKERS = {"mlflow": ("mlflow",), "tensorboard": ("tensorboard",), "wandb": ("wandb",)}
EXPERIMENT = "kdbench"  # MLflow experiment, wandb project
KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3's UI: runs and charts
HISTORY_PREFIX = "epoch/"  # per-epoch curves: epoch/loss, epoch/val_top1, epoch/top1


def parse(values: Iterable[str]) -> list[str]:
    """``--kd-log`` values (repeated, or comma lists) → tracker names, checked and installed."""
    names: list[str] = []
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            if name not in TRACKERS:
                raise KdbenchError(f"invalid --kd-log {name!r}: valid: {', '.join(TRACKERS)}")
            if name not in names:
                names.append(name)
    for name in names:
        missing = [m for m in TRACKERS[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise KdbenchError(
                f"--kd-log {name}: {', '.join(missing)} is not installed: "
                f"pip install 'kdbench[{name}]'"
            )
    return names


def params(record: dict[str, Any]) -> dict[str, str]:
    """The spec as flat string parameters (``loss_options.warmup``)."""
    flat: dict[str, str] = {}
    for key, value in record["spec"].items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": str(v) for k, v in value.items()})
        else:
            flat[key] = str(value)
    return flat


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numeric metrics."""
    return {
        k: float(v)
        for k, v in record["metrics"].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def history(record: dict[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """(epoch, {epoch/<metric>: value}) for every epoch the record's history holds."""
    return [
        (
            int(h["epoch"]),
            {
                HISTORY_PREFIX + k: float(v)
                for k, v in h.items()
                if k != "epoch" and isinstance(v, (int, float))
            },
        )
        for h in record.get("history") or ()
    ]


def tags(record: dict[str, Any], profile: str | None) -> dict[str, str]:
    out = {"case_id": record["case_id"], "group_id": record["group_id"], "status": record["status"]}
    return {**out, "profile": profile} if profile else out


def _millis(record: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(record["created_at"]).timestamp() * 1000)


class MLflowTracker:
    """One MLflow run per case in experiment ``kdbench``: a SQLite store under the results folder
    (``<results>/mlflow.db``), or ``MLFLOW_TRACKING_URI``."""

    def __init__(self, results_dir: Path, profile: str | None, run: str) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = (
            os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"
        )
        results_dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.profile = profile
        self.run = run
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        try:
            self.experiment_id: str = (
                experiment.experiment_id
                if experiment
                else self.client.create_experiment(EXPERIMENT, tags=KIND)
            )
        except MlflowException:  # another worker created it first
            self.experiment_id = self.client.get_experiment_by_name(  # type: ignore[union-attr]
                EXPERIMENT
            ).experiment_id

    def log(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        stamp = _millis(record)
        run = self.client.create_run(
            self.experiment_id,
            start_time=stamp,
            run_name=record["name"],
            tags={**tags(record, self.profile), "kdbench_run": self.run},
        )
        metrics = [
            Metric(k, v, stamp, epoch)
            for epoch, values in history(record)
            for k, v in values.items()
        ]
        last = history(record)[-1][0] if record.get("history") else 0
        metrics += [Metric(k, v, stamp, last) for k, v in final_metrics(record).items()]
        self.client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params(record).items()],
        )
        self.client.set_terminated(
            run.info.run_id, "FINISHED" if record["status"] == "ok" else "FAILED"
        )


class TensorBoardTracker:
    """Event files per case: ``<results>/tensorboard/<run>/<case name>/``."""

    def __init__(self, results_dir: Path, profile: str | None, run: str) -> None:
        self.root = results_dir / "tensorboard" / run
        self.profile = profile

    def log(self, record: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.root / re.sub(r"[^\w.=-]+", "_", record["name"])
        wall = _millis(record) / 1000
        with SummaryWriter(log_dir=str(folder)) as writer:
            writer.add_text("spec", json.dumps(record["spec"], sort_keys=True), walltime=wall)
            writer.add_text("tags", json.dumps(tags(record, self.profile)), walltime=wall)
            for epoch, values in history(record):
                for key, value in values.items():
                    writer.add_scalar(key, value, epoch, walltime=wall)
            last = history(record)[-1][0] if record.get("history") else 0
            for key, value in final_metrics(record).items():
                writer.add_scalar(f"final/{key}", value, last, walltime=wall)


class WandbTracker:
    """One wandb run per case in project ``kdbench``, offline (``<results>/wandb/``, for ``wandb
    sync``) unless ``WANDB_MODE`` says otherwise or an API key is set."""

    def __init__(self, results_dir: Path, profile: str | None, run: str) -> None:
        self.dir = results_dir
        self.profile = profile
        self.run = run
        self.mode: Literal["online", "offline"] | None = (  # None: wandb reads WANDB_MODE
            None
            if os.environ.get("WANDB_MODE")
            else "online"
            if os.environ.get("WANDB_API_KEY")
            else "offline"
        )

    def log(self, record: dict[str, Any]) -> None:
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "offline":  # process-wide too: else wandb's analytics post from a thread
            wandb.setup(wandb.Settings(mode="offline"))
        run = wandb.init(
            project=EXPERIMENT,
            name=record["name"],
            group=record["group_id"],
            config=params(record),
            tags=[f"{k}={v}" for k, v in tags(record, self.profile).items()],
            dir=str(self.dir),
            mode=self.mode,
            job_type=self.run,
            settings=wandb.Settings(silent=True),
        )
        try:
            for epoch, values in history(record):
                run.log({"epoch": epoch, **values}, step=epoch)
            run.summary.update(final_metrics(record))
        finally:
            run.finish(exit_code=0 if record["status"] == "ok" else 1)


CLASSES = {"mlflow": MLflowTracker, "tensorboard": TensorBoardTracker, "wandb": WandbTracker}


class Trackers:
    """The session's trackers, opened on first use in the process that logs."""

    def __init__(self, names: list[str], results_dir: Path, profile: str | None, run: str) -> None:
        self.names = names
        self.args = (results_dir, profile, run)
        self._open: dict[str, Any] = {}

    def open(self, name: str) -> Any:
        if name not in self._open:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # a tracker's dependencies'
                self._open[name] = CLASSES[name](*self.args)
        return self._open[name]

    def log(self, record: dict[str, Any]) -> None:
        """Log a record (already written) to every tracker; a failure is a warning."""
        for name in self.names:
            try:
                tracker = self.open(name)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    tracker.log(record)
            except Exception as exc:  # a tracker never costs a record or the session
                warnings.warn(
                    f"--kd-log {name}: {record['name']} not logged "
                    f"({type(exc).__name__}: {exc}); its record is written",
                    stacklevel=2,
                )
