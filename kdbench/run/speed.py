"""Inference speed measured apart from the run: ``kdbench speed FOLDER`` and the reports.

A case measures its student's inference samples/s and latency where it trains, beside the
other workers of its session, and a long run goes on in parts on whichever machine each part
gets. Those numbers say what the case saw, not what the student costs: on the committed
Fashion-MNIST records the same student measured 7,045 to 34,262 samples/s. What they depend on
is the architecture, the input, the device, the precision, the memory format, the compile mode
and the thread count, never the distillation method or the trained weights
(``kdbench.run.engine.Engine.speed``). So ``kdbench speed`` measures every such configuration
of a folder's ok records once more, one after the other in one process, on the machine it runs
on (ideally a quiet one: the load average is recorded), and writes them to ``speed.json`` in
the folder. ``applied`` gives the reports those numbers in place of the ones measured in the
run, and names where they come from (``env.infer_measured``); the records themselves, and so
the gate and ``--baseline``, keep what the run measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from kdbench.data import load_dataset
from kdbench.data.base import TEACHER_PREFIX, DataSource
from kdbench.data.views import STRONG_VIEW
from kdbench.models import build_model
from kdbench.registry import KdbenchError
from kdbench.results import read, utc_now
from kdbench.run import measure
from kdbench.run.accel import Accel
from kdbench.run.engine import student_speed

FILE = "speed.json"
KEY = (
    "dataset",
    "dataset_options",
    "student",
    "device",
    "precision",
    "compile",
    "channels_last",
    "threads",
    "compile_mode",
)
MEASURED = ("infer_throughput", "latency_ms")  # the metrics a speed file gives the reports
REPEATS = 3  # measurements per configuration; the file keeps their medians
AS_RUN = "as run"
TRAINING_ONLY = ("augment", STRONG_VIEW)  # data options that change training batches only
ENTRY = {  # what the reports read of an entry besides its configuration, and its type
    **{name: (int, float) for name in MEASURED},
    "device_name": (str,),
    "measured_at": (str,),
}


def _inference_options(options: dict[str, Any]) -> dict[str, Any]:
    """A data set's options less those that only change training: its augmentation, a strong
    view, the teacher's options (the input the student is timed on stays the same)."""
    return {
        k: v
        for k, v in options.items()
        if k not in TRAINING_ONLY and not k.startswith(TEACHER_PREFIX)
    }


def configuration(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a record its student's inference speed depends on (``KEY``)."""
    spec, env = record["spec"], record.get("env", {})
    return {
        "dataset": spec["dataset"],
        "dataset_options": _inference_options(dict(spec.get("dataset_options", {}))),
        "student": spec["student"],
        "device": spec["device"],
        "precision": spec["precision"],
        "compile": bool(spec["compile"]),
        "channels_last": bool(spec.get("channels_last", False)),
        "threads": env.get("threads"),
        "compile_mode": env.get("compile_mode") if spec["compile"] else None,
    }


def _key(fields: dict[str, Any]) -> str:
    return json.dumps([fields[k] for k in KEY], sort_keys=True)


def configurations(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct configurations of the ok records, in the order first seen."""
    seen: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["status"] == "ok":
            seen.setdefault(_key(configuration(rec)), configuration(rec))
    return list(seen.values())


def measure_one(config: dict[str, Any], data: DataSource) -> dict[str, float]:
    """Inference samples/s at the evaluation batch and latency at batch 1 of the untrained
    student of ``config`` on ``data`` (its data set), timed as its cases ran it: medians of
    ``REPEATS`` measurements."""
    device = torch.device(config["device"])
    accel = Accel.for_spec(config["precision"], device, config["channels_last"])
    threads = torch.get_num_threads()
    torch.set_num_threads(config["threads"] or threads)
    try:
        torch.manual_seed(0)
        student = accel.prepare(
            build_model(config["student"], data.num_classes, data.input_shape).to(device)
        )
        runs = [student_speed(student, data, accel, config["compile_mode"]) for _ in range(REPEATS)]
    finally:
        torch.set_num_threads(threads)
    return {name: statistics.median(run[i] for run in runs) for i, name in enumerate(MEASURED)}


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    """A speed file's entries by configuration key; a one-line error where it is none."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
        problem = next(
            (
                f"entry {n}: {name} missing or not {kinds[-1].__name__}"
                for n, entry in enumerate(entries, 1)
                for name, kinds in ENTRY.items()
                if isinstance(entry.get(name), bool) or not isinstance(entry.get(name), kinds)
            ),
            None,
        )
        keyed = {} if problem else {_key(entry): entry for entry in entries}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        raise KdbenchError(
            f"{path} is no speed file ({problem}): delete it or measure again with kdbench speed"
        )
    return keyed


def folder_records(folder: Path | str) -> list[dict[str, Any]]:
    """The records of a run's results folder; a one-line error where it is none."""
    if not Path(folder).is_dir():
        raise KdbenchError(f"no results folder at {str(folder)!r}: give the folder of a run")
    return read([folder]).records


def measure_folder(
    folder: Path | str, records: list[dict[str, Any]], data_root: Path | str | None = None
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Measure every configuration of the folder's ok ``records`` and write them to its
    ``speed.json`` (entries of configurations not measured now are kept): yields each
    configuration with its entry, None where its device is not here (a CUDA one without a
    GPU)."""
    folder = Path(folder)
    configs = configurations(records)
    if not configs:
        raise KdbenchError(f"no ok records in {folder}: nothing to measure")
    path = folder / FILE
    entries = _read_file(path) if path.exists() else {}
    load = os.getloadavg()[0]
    data: dict[str, DataSource] = {}
    for config in configs:
        if config["device"] == "cuda" and not torch.cuda.is_available():
            yield config, None
            continue
        device = torch.device(config["device"])
        name = json.dumps([config["dataset"], config["dataset_options"]], sort_keys=True)
        if name not in data:
            data[name] = load_dataset(
                config["dataset"], data_root, False, **config["dataset_options"]
            )
        entry = {
            **config,
            **measure_one(config, data[name]),
            "device_name": measure.environment(device)["device_name"],
            "torch": torch.__version__,
            "load_1m": load,
            "measured_at": utc_now(),
        }
        entries[_key(config)] = entry
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"entries": list(entries.values())}, indent=1) + "\n")
        tmp.replace(path)
        yield config, entry


def _speed_files(paths: Iterable[Path | str]) -> list[Path]:
    """The speed files in (or under) the folders of ``paths``, as records are found there."""
    return [f for p in map(Path, paths) if p.is_dir() for f in sorted(p.rglob(FILE))]


def applied(records: list[dict[str, Any]], paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """``records`` (read from ``paths``) for the reports: where a folder of ``paths`` holds a
    speed file (or one under it), every ok record of a configuration it measured takes its
    inference speed, and every ok record says where its speed comes from in
    ``env.infer_measured`` ("kdbench speed on <device>, <date>" or "as run"). Without a speed
    file the records are returned as they are."""
    entries: dict[str, dict[str, Any]] = {}
    for path in _speed_files(paths):
        entries.update(_read_file(path))
    if not entries:
        return records
    out = []
    for rec in records:
        if rec["status"] != "ok":  # no speed measured
            out.append(rec)
            continue
        entry = entries.get(_key(configuration(rec)))
        source = (
            f"kdbench speed on {entry['device_name']}, {entry['measured_at'][:10]}"
            if entry
            else AS_RUN
        )
        metrics = {**rec["metrics"], **{m: entry[m] for m in MEASURED}} if entry else rec["metrics"]
        out.append(
            {**rec, "metrics": metrics, "env": {**rec.get("env", {}), "infer_measured": source}}
        )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="a run's results folder")
    p.add_argument("--data-root", metavar="DIR", help="where the data sets are (as --kd-data-root)")


def as_run(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Configuration key → the range of inference samples/s its ok records measured in the
    run (``min–max``): how far apart the cases' own numbers are."""
    seen: dict[str, list[float]] = {}
    for rec in records:
        value = rec["metrics"].get("infer_throughput")
        if rec["status"] == "ok" and isinstance(value, (int, float)):
            seen.setdefault(_key(configuration(rec)), []).append(value)
    return {key: f"{min(v):,.0f}–{max(v):,.0f}" for key, v in seen.items()}


def _row(config: dict[str, Any], entry: dict[str, Any] | None, ran: dict[str, str]) -> dict:
    return {
        **{k: config[k] for k in ("student", "dataset", "device", "precision", "channels_last")},
        "threads": config["threads"],
        "infer samples/s": entry["infer_throughput"] if entry else None,
        "latency ms": entry["latency_ms"] if entry else None,
        "as run samples/s": ran.get(_key(config), ""),
        "note": "" if entry else "no CUDA GPU here: left as run",
    }


def main(args: argparse.Namespace) -> int:
    """``kdbench speed FOLDER...``: measure, write each folder's speed file, print a table."""
    load = os.getloadavg()[0]
    if load >= 1.0:
        print(
            f"kdbench: note: load average {load:.2f}: other processes share the CPU and slow "
            "what is measured now; measure on a quiet machine",
            file=sys.stderr,
        )
    for folder in args.folders:
        records = folder_records(folder)
        ran = as_run(records)
        rows = [_row(*m, ran) for m in measure_folder(folder, records, args.data_root)]
        print(f"kdbench: wrote {Path(folder) / FILE}", file=sys.stderr)
        print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=",.3f"))
    return 0
