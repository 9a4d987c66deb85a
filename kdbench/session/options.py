"""The ``--kd-*`` options and their checks: every value a user can get wrong is checked here,
at configure time, before any training (one line naming the bad value and the valid choices);
the profile's cases follow from them (``specs_of``)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from kdbench import results
from kdbench.matrix.profiles import MAX_CASES, size_check
from kdbench.matrix.user_profiles import find_profiles, project_profiles
from kdbench.observe import hooks as observe
from kdbench.registry import KdbenchError
from kdbench.run.cache import writable
from kdbench.run.engine import COMPILE_MODES
from kdbench.scale.gpu_share import check_cases_per_gpu
from kdbench.scale.time_limit import limit_seconds
from kdbench.spec import DEVICES, PRECISIONS, RunSpec

DEVICE_CHOICES = (*DEVICES, "all")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("kdbench", "kdbench: knowledge-distillation benchmark")
    group.addoption(
        "--kd-profile",
        default="quick",
        metavar="NAME",
        help="matrix of cases to run (`kdbench list profiles`); default: quick",
    )
    group.addoption(
        "--kd-device",
        default="all",
        choices=DEVICE_CHOICES,
        help="devices to run cases on; CUDA cases skip without a GPU; default: all",
    )
    group.addoption(
        "--kd-seeds",
        type=int,
        default=None,
        metavar="N",
        help="seeds per case (0 … N−1); default: the profile's (3 for quick)",
    )
    group.addoption(
        "--kd-first-seed",
        type=int,
        default=0,
        metavar="S",
        help="seeds S … S+N−1 instead of 0 … N−1: the same configurations on fresh "
        "seeds (a second run for the gate's false-alarm rate); default 0",
    )
    group.addoption(
        "--kd-max-cases",
        type=int,
        default=MAX_CASES,
        metavar="N",
        help=f"refuse a profile of more than N cases (counted before they are "
        f"made); default {MAX_CASES:,}",
    )
    group.addoption(
        "--kd-epochs",
        type=int,
        default=None,
        metavar="N",
        help="student epochs per case; default: the profile's",
    )
    group.addoption(
        "--kd-results",
        default="results",
        metavar="DIR",
        help="runs/<run>.jsonl (records) and runs/<run>.md (leaderboard) go here; default: results",
    )
    group.addoption(
        "--kd-cache",
        default=os.environ.get("KDBENCH_CACHE", ".kdbench_cache"),
        metavar="DIR",
        help="teacher cache (env KDBENCH_CACHE); default: .kdbench_cache",
    )
    group.addoption(
        "--kd-data-root",
        default=os.environ.get("KDBENCH_DATA"),
        metavar="DIR",
        help="where torchvision data sets live (env KDBENCH_DATA)",
    )
    group.addoption(
        "--kd-download",
        action="store_true",
        help="allow downloading torchvision data sets into --kd-data-root",
    )
    group.addoption(
        "--kd-threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per process; default 1 (use the cores with -n: a second "
        "thread was up to 5× slower on a shared machine)",
    )
    group.addoption(
        "--kd-precision",
        default="auto",
        choices=("auto", *PRECISIONS),
        help="auto: AMP (bf16, else fp16 + grad scaler) on CUDA, fp32 on CPU",
    )
    group.addoption(
        "--kd-compile",
        action="store_true",
        help="torch.compile the student; compile time is reported apart "
        "(compile_s) and left out of train_throughput",
    )
    group.addoption(
        "--kd-compile-mode",
        default="default",
        choices=COMPILE_MODES,
        help="torch.compile mode with --kd-compile (recorded in each record's "
        "env); reduce-overhead uses CUDA graphs; default: default",
    )
    group.addoption(
        "--kd-cases-per-gpu",
        type=int,
        default=None,
        metavar="K",
        help="K xdist workers share each GPU (run with -n K×GPUs or -n auto), each "
        "capped at 1/K of its memory; default: one worker per GPU, round robin",
    )
    group.addoption(
        "--kd-teacher-ckpt",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="use this checkpoint for teacher NAME instead of training it (repeatable)",
    )
    group.addoption(
        "--kd-resume",
        action="store_true",
        help="skip cases that already have a record under --kd-results that a rerun would "
        "repeat (ok, diverged, n/a); an error is run again",
    )
    group.addoption(
        "--kd-stop-after",
        default=None,
        metavar="TIME",
        help="start no case once TIME has passed since the session began (sbatch --time's "
        "forms: minutes, hours:minutes:seconds, …); the running cases are recorded, the "
        "session exits 2 and --kd-resume goes on: a run in parts that fit a time window",
    )
    group.addoption(
        "--kd-baseline",
        default=None,
        metavar="PATH",
        help="compare this run to a baseline (records file or folder) and fail on "
        "a regression or on baseline cases this run lacks",
    )
    group.addoption(
        "--kd-allow-missing",
        action="store_true",
        help="with --kd-baseline: decide only on the cases that ran (a -k or shard "
        "subset); baseline cases not run are listed, not failed",
    )
    observe.add_options(group)  # --kd-progress, --kd-log


def xdist_workers(config: pytest.Config) -> int:
    """xdist workers of this session (0 without xdist), as the controller sees them."""
    if config.getoption("dist", "no") == "no":
        return 0
    return len(config.getoption("tx", None) or [])


def check_gpu_options(config: pytest.Config) -> None:
    per_gpu = config.getoption("kd_cases_per_gpu")
    if per_gpu is not None and not hasattr(config, "workerinput"):
        check_cases_per_gpu(per_gpu, xdist_workers(config), torch.cuda.device_count())
    mode = config.getoption("kd_compile_mode")
    if mode != "default" and not config.getoption("kd_compile"):
        raise KdbenchError(
            f"--kd-compile-mode {mode} applies to compiled students: add --kd-compile"
        )


def stop_at_of(config: pytest.Config) -> float | None:
    """When (``time.time()``) ``--kd-stop-after`` stops the session: the controller's deadline,
    which xdist workers receive; None without the option."""
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        return worker.get("kd_stop_at")
    after = config.getoption("kd_stop_after")
    return None if after is None else time.time() + limit_seconds(after, "--kd-stop-after")


def threads_of(config: pytest.Config) -> int:
    """One torch thread per process unless asked (use the cores with ``-n``): a second
    intra-op thread was several times slower on a shared 2-core machine and gained nothing on
    the digits models when idle (benchmarks/xdist.py; the numbers in docs/performance.md)."""
    requested = config.getoption("kd_threads")
    if requested is not None and requested < 1:
        raise KdbenchError(f"invalid --kd-threads {requested}: must be an integer ≥ 1")
    return requested or 1


def project_folders(config: pytest.Config) -> tuple[Path, Path]:
    """Where the project's pyproject.toml is looked for: from pytest's rootdir, then from the
    folder pytest ran in (an existing folder given as an option value, ``--kd-cache DIR``, can
    move the rootdir above the project: plugin options are unknown when pytest sets it)."""
    return config.rootpath, config.invocation_params.dir


def specs_of(config: pytest.Config) -> list[RunSpec]:
    pyproject = find_profiles(*project_folders(config))  # the shipped ones and the project's
    profile = project_profiles(pyproject).get(config.getoption("kd_profile"))
    device = config.getoption("kd_device")
    devices = DEVICES if device == "all" else (device,)
    epochs = config.getoption("kd_epochs")
    if epochs is not None and epochs < 1:
        raise KdbenchError(f"invalid --kd-epochs {epochs}: must be an integer ≥ 1")
    seeds = config.getoption("kd_seeds")
    if seeds is not None and seeds < 1:
        raise KdbenchError(f"invalid --kd-seeds {seeds}: must be an integer ≥ 1")
    first_seed = config.getoption("kd_first_seed")
    if first_seed < 0:
        raise KdbenchError(f"invalid --kd-first-seed {first_seed}: must be an integer ≥ 0")
    if device == "cuda" and not torch.cuda.is_available():
        raise KdbenchError(
            "--kd-device cuda, but no CUDA GPU is available: "
            "use --kd-device cpu or all (CUDA cases then skip)"
        )
    max_cases = config.getoption("kd_max_cases")
    if max_cases < 1:
        raise KdbenchError(f"invalid --kd-max-cases {max_cases}: must be an integer ≥ 1")
    expand = {
        "epochs": epochs,
        "precision": config.getoption("kd_precision"),
        "compile": config.getoption("kd_compile"),
        "teacher_ckpts": _teacher_ckpts(config.getoption("kd_teacher_ckpt"), profile),
    }
    size = size_check(
        profile,
        devices,
        seeds,
        _recorded(Path(config.getoption("kd_results"))),
        max_cases,
        **expand,
    )
    if size and not hasattr(config, "workerinput"):  # said once, by the controller
        print(f"kdbench: warning: {size}", file=sys.stderr, flush=True)
    return profile.specs(devices, seeds=seeds, first_seed=first_seed, **expand)


def _recorded(results_dir: Path) -> Iterator[dict[str, Any]]:
    """The records of earlier runs under ``--kd-results``, read when first asked for."""
    if (results_dir / "runs").is_dir():
        yield from results.read([results_dir / "runs"]).records


def _teacher_ckpts(items: list[str], profile: Any) -> dict[str, str]:
    teachers = sorted({t for t, _ in profile.pairs})
    ckpts = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in teachers:
            raise KdbenchError(
                f"invalid --kd-teacher-ckpt {item!r}: use NAME=PATH with NAME one "
                f"of the profile's teachers: {', '.join(teachers)}"
            )
        if not Path(path).is_file():
            raise KdbenchError(f"--kd-teacher-ckpt {item!r}: no file at {path!r}")
        ckpts[name] = str(Path(path).resolve())
    return ckpts


def check_cache(path: str) -> None:
    """The cache must be a folder or creatable as one (nothing is created here). A folder that
    is there but read-only is read: an entry it lacks is built for the session only."""
    folder = Path(path).absolute()
    if folder.is_dir() or writable(folder):
        return
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    raise KdbenchError(
        f"--kd-cache {path!r}: {existing} is "
        f"{'not writable' if existing.is_dir() else 'a file'}: choose a "
        f"writable folder with --kd-cache or KDBENCH_CACHE (it holds teacher "
        f"checkpoints and teacher outputs)"
    )


def load_baseline(path: str) -> list[dict[str, Any]]:
    """The baseline's records, checked before any training: a file or folder of records, none
    corrupt, the current schema."""
    try:
        loaded = results.read([path])
    except KdbenchError:
        raise KdbenchError(f"--kd-baseline {path!r}: no such file or folder") from None
    except OSError as exc:
        raise KdbenchError(f"--kd-baseline {path!r}: cannot read it ({exc.strerror})") from None
    if loaded.bad_lines:
        raise KdbenchError(
            f"--kd-baseline {path!r}: {loaded.skipped()}: the gate cannot decide "
            f"on a damaged baseline"
        )
    if not loaded.records:
        raise KdbenchError(f"--kd-baseline {path!r}: no records in it")
    schemas = sorted({r.get("schema") for r in loaded.records}, key=str)
    if schemas != [results.SCHEMA]:
        raise KdbenchError(
            f"--kd-baseline {path!r}: records of schema {schemas}, this kdbench "
            f"writes schema {results.SCHEMA}: refresh the baseline"
        )
    return loaded.records
