"""What every benchmark script shares: the machine header, timing helpers, a bare hand-written
PyTorch training loop (the floor kdbench is compared to), and running ``pytest suites``.

The bare loop does the training kdbench does for a logit-only case: same data tensors
(``kdbench.data.load_dataset``), same model (``build_model``), same SGD recipe and schedule
(``RECIPES``), same seed, epochs, batch size and shuffling (a ``randperm`` per epoch from a CPU
generator seeded with the case's seed), the same loss mix ``ce_weight·CE + alpha·term`` with the
term written out here, and the same per-epoch evaluation (test-set logits at batch 1024, top-1,
the epoch's mean loss read once, validation and test logits at batch 1024 after every epoch, as
kdbench's loop). It has no hooks, records, caches, progress or measurements.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.data import load_dataset
from kdbench.matrix.profiles import PROFILES
from kdbench.models import build_model
from kdbench.recipes import RECIPES
from kdbench.run.engine import Engine
from kdbench.run.loop import EVAL_BATCH
from kdbench.run.measure import cpu_name
from kdbench.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
BARE_LOSSES = ("ce", "kd", "mse_logits")  # the losses the bare loop writes out by hand


# ----------------------------------------------------------------- header and timing
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, both sides (default 1: the digits models are tiny and "
        "a second thread only adds waits, badly so when others share the cores)",
    )
    return p


def header(args: argparse.Namespace) -> None:
    """Machine, software and command line; the load average shows whether others were busy."""
    torch.set_num_threads(args.threads)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads in this process), python {sys.version.split()[0]}"
    )
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {load()}")


def footer() -> None:
    print(f"load average at end: {load()} (> {os.cpu_count()} means others shared the cores)")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return (
        f"median {median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f}, "
        f"n={len(values)})"
    )


def quick_spec(
    student: str = "cnn_s",
    loss: str = "kd",
    temperature: float | None = 4.0,
    seed: int = 0,
    epochs: int | None = None,
) -> RunSpec:
    """One case of the quick profile on the CPU (the profile's own spec, not a lookalike)."""
    specs = PROFILES.get("quick").specs(("cpu",), seeds=seed + 1, epochs=epochs)
    return next(
        s
        for s in specs
        if s.student == student
        and s.loss == loss
        and s.temperature == temperature
        and s.seed == seed
    )


# ----------------------------------------------------------------- the bare loop
def kd_term(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """Hinton's T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean."""
    return (
        F.kl_div(
            F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean", log_target=True
        )
        * T
        * T
    )


TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor, RunSpec], torch.Tensor]] = {
    "kd": lambda s, t, spec: kd_term(s, t, spec.temperature),
    "mse_logits": lambda s, t, spec: (s - t).pow(2).sum(1).mean(),
}


@dataclass
class Bare:
    """The data and the trained teacher a bare loop needs, loaded once."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    held_out: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (validation, test)
    num_classes: int
    teacher: nn.Module
    teacher_logits: torch.Tensor  # (N, classes), train set, precomputed once
    precompute_s: float  # what precomputing them took

    @classmethod
    def load(cls, spec: RunSpec, engine: Engine) -> Bare:
        """The spec's data as plain tensors and the teacher kdbench trained (its cache)."""
        data = load_dataset(spec.dataset)
        teacher, _ = engine.teachers.get(spec)
        with torch.inference_mode():
            seconds, logits = timed(lambda: teacher(data.x_train))
        evaluation = ((data.x_val, data.y_val), (data.x_test, data.y_test))
        return cls(
            data.x_train,
            data.y_train,
            evaluation,
            data.num_classes,
            teacher,
            logits.clone(),
            seconds,
        )

    def train(self, spec: RunSpec, teacher: str = "cached") -> tuple[float, float]:
        """Train the spec's student; ``teacher`` is "cached" (precomputed logits) or "online"
        (the teacher's forward in every step). Returns (seconds, final top-1 %); the seconds
        start after the model is built, as kdbench's ``train_s``."""
        torch.manual_seed(spec.seed)
        model = build_model(spec.student, self.num_classes, tuple(self.x_train.shape[1:]))
        start = time.perf_counter()
        top1 = train_loop(
            model,
            spec,
            self.x_train,
            self.y_train,
            self.held_out,
            self._teacher_logits(spec, teacher),
        )
        return time.perf_counter() - start, top1

    def _teacher_logits(self, spec: RunSpec, teacher: str):
        if spec.loss == "ce":
            return None
        if teacher == "online":

            def online(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return self.teacher(x)

            return online
        return lambda x, index: self.teacher_logits[index]


def train_loop(
    model: nn.Module,
    spec: RunSpec,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    held_out: tuple[tuple[torch.Tensor, torch.Tensor], ...],
    teacher_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> float:
    """A plain PyTorch loop; evaluates every held-out split after each epoch and returns the
    last epoch's top-1 (%) on the last of them (the test split)."""
    recipe = RECIPES.get(spec.recipe)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr_for(spec.student),
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    scheduler = recipe.scheduler(optimizer, spec.epochs)
    generator = torch.Generator().manual_seed(spec.seed)
    term = TERMS.get(spec.loss)
    n = len(y_train)
    top1 = 0.0
    for _ in range(spec.epochs):
        model.train()
        total = torch.zeros(())
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, spec.batch_size):
            index = order[start : start + spec.batch_size]
            x, y = x_train[index], y_train[index]
            logits = model(x)
            loss = spec.ce_weight * F.cross_entropy(logits, y)
            if teacher_logits is not None:
                loss = loss + spec.alpha * term(logits, teacher_logits(x, index), spec)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(y)
        scheduler.step()
        epoch_loss = (total / n).item()
        if not math.isfinite(epoch_loss):
            raise RuntimeError(f"bare loop diverged: {spec.name}")
        model.eval()
        for x_eval, y_eval in held_out:
            with torch.inference_mode():
                logits = torch.cat(
                    [model(x_eval[i : i + EVAL_BATCH]) for i in range(0, len(y_eval), EVAL_BATCH)]
                )
            top1 = 100.0 * (logits.argmax(1) == y_eval).sum().item() / len(y_eval)
    return top1


def bare_teacher_seconds(spec: RunSpec, bare: Bare) -> float:
    """The bare loop training the spec's teacher (cross-entropy, its epochs and seed)."""
    teacher_spec = RunSpec(
        dataset=spec.dataset,
        teacher=spec.teacher,
        student=spec.teacher,
        loss="ce",
        seed=spec.teacher_seed,
        epochs=spec.teacher_epochs,
        batch_size=spec.batch_size,
        recipe=spec.recipe,
    )
    seconds, _ = bare.train(teacher_spec)
    return seconds


# ----------------------------------------------------------------- kdbench side
def kdbench_case(engine: Engine, spec: RunSpec) -> tuple[float, float, float]:
    """(wall s of ``Engine.distill``, its ``train_s`` metric, top-1 %)."""
    wall, outcome = timed(lambda: engine.distill(spec))
    return wall, outcome.metrics["train_s"], outcome.metrics["top1"]


PAIR_ROWS = ("kdbench kd", "kdbench ce", "bare kd cached", "bare kd online", "bare ce")


def measure_pair(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """The quick case ``cnn_t>cnn_s`` kd T=4 and its ce baseline, through kdbench and the bare
    loop (teacher logits precomputed, and the teacher run online), interleaved ``args.repeats``
    times so that a busy spell hits every row alike. Teacher, its train-set outputs and the
    bare loop's precomputed logits are built before timing. Returns row → {"train", "wall",
    "top1"} lists; for bare rows wall = train."""
    kd = quick_spec("cnn_s", "kd", 4.0, epochs=args.epochs)
    ce = quick_spec("cnn_s", "ce", None, epochs=args.epochs)
    engine = Engine(cache_dir=args.cache or scratch("cache"))
    for spec in (kd, ce):  # untimed warm-up: teacher, teacher outputs, first-call costs
        engine.distill(spec)
    bare = Bare.load(kd, engine)
    runs: dict[str, Callable[[], tuple[float, float, float]]] = {
        "kdbench kd": lambda: kdbench_case(engine, kd),
        "kdbench ce": lambda: kdbench_case(engine, ce),
        "bare kd cached": lambda: _bare_row(bare, kd, "cached"),
        "bare kd online": lambda: _bare_row(bare, kd, "online"),
        "bare ce": lambda: _bare_row(bare, ce, "cached"),
    }
    rows = {name: {"wall": [], "train": [], "top1": []} for name in PAIR_ROWS}
    for _ in range(args.repeats):
        for name in PAIR_ROWS:
            wall, train, top1 = runs[name]()
            for key, value in (("wall", wall), ("train", train), ("top1", top1)):
                rows[name][key].append(value)
    for name in PAIR_ROWS:
        print(
            f"  {name:15s} train {spread(rows[name]['train'])}; "
            f"wall median {median(rows[name]['wall']):.3f} s; "
            f"top-1 {rows[name]['top1'][-1]:.2f} %"
        )
    return rows


def pair_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--repeats", type=int, default=7, help="interleaved repetitions (default 7)")
    p.add_argument("--epochs", type=int, default=None, help="student epochs (default: quick's 15)")
    p.add_argument("--cache", default=None, help="teacher cache dir (default: a fresh temp dir)")
    return p


def _bare_row(bare: Bare, spec: RunSpec, teacher: str) -> tuple[float, float, float]:
    seconds, top1 = bare.train(spec, teacher)
    return seconds, seconds, top1


# ----------------------------------------------------------------- pytest suites
@dataclass
class SuiteRun:
    wall_s: float
    results: Path
    test_seconds: dict[str, float]  # junit test name → setup+call+teardown seconds
    outcome: str  # pytest's last summary line


def run_suites(args: list[str], results: Path, cache: Path) -> SuiteRun:
    """``pytest suites --kd-device cpu`` in a subprocess with fresh results; wall time."""
    junit = results / "junit.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "suites",
        "-q",
        "-p",
        "no:cacheprovider",
        "--kd-device",
        "cpu",
        "--kd-results",
        str(results),
        "--kd-cache",
        str(cache),
        f"--junitxml={junit}",
        *args,
    ]
    wall, proc = timed(lambda: subprocess.run(command, cwd=REPO, capture_output=True, text=True))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode not in (0, 1):  # 1: some case failed its sanity check, still timed
        print("\n".join(lines[-30:]), proc.stderr[-3000:], sep="\n")
        raise SystemExit(f"pytest failed ({proc.returncode}): {shlex.join(command)}")
    for line in lines:
        if line.startswith("FAILED "):
            print(f"  (pytest: {line})")
    outcome = next(
        (ln.strip("= ") for ln in reversed(lines) if " in " in ln and "passed" in ln), lines[-1]
    )
    tests = {
        case.get("name"): float(case.get("time", 0.0))
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    return SuiteRun(wall, results, tests, outcome)


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"kdbench-{prefix}-"))
