"""The conductor: ``Engine.distill(spec)`` = get the teacher (``kdbench.run.teachers``) → build
the student and its loss → fit (``kdbench.run.loop``) → measure (``kdbench.run.measure``).
Which status a case ends with is decided by ``kdbench.run.case``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.data import load_dataset
from kdbench.data.base import DataSource
from kdbench.losses import LOSSES, DistillLoss, LossContext
from kdbench.models import build_model
from kdbench.registry import KdbenchError
from kdbench.run import measure
from kdbench.run.accel import Accel
from kdbench.run.loop import (
    EVAL_BATCH,
    FitStats,
    Objective,
    Progress,
    Stage,
    TeacherFn,
    Tick,
    evaluate,
    fit,
    no_teacher,
)
from kdbench.run.taps import Tapper, shapes
from kdbench.run.teachers import TeacherStore
from kdbench.spec import RunSpec, teacher_options

# torch.compile modes for compiled cases (``--kd-compile-mode``); "reduce-overhead" adds CUDA
# graphs, which replay a step's kernels with one launch where a small batch is launch-bound
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass
class Outcome:
    """What ``distill`` returns: metrics and extra fields for the record (the status is decided
    by ``kdbench.run.case``)."""

    metrics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Holds a session's caches: data sets, the teacher store, speed measurements. Students of
    compiled specs are compiled in ``compile_mode`` (one of ``COMPILE_MODES``), recorded with
    each case's env: the mode changes speed, not what the student computes (up to the rounding
    of the kernels it picks), so it is not part of the spec and its case id."""

    def __init__(
        self,
        cache_dir: Path | str = ".kdbench_cache",
        data_root: Path | str | None = None,
        download: bool = False,
        progress: Progress | None = None,
        compile_mode: str = "default",
        tick: Tick | None = None,
    ) -> None:
        if compile_mode not in COMPILE_MODES:
            raise KdbenchError(
                f"invalid compile mode {compile_mode!r}: valid: {', '.join(COMPILE_MODES)}"
            )
        self.compile_mode = compile_mode
        self.data_root = data_root
        self.download = download
        self.progress = progress or (lambda message: None)
        self.tick = tick
        self.teachers = TeacherStore(Path(cache_dir), self.teacher_data, self.progress, tick)
        self._data: dict[tuple, DataSource] = {}
        self._speed: dict[tuple, dict[str, float]] = {}
        self._checked: set[tuple] = set()  # (teacher, student, data set) class counts that match

    @property
    def teachers_trained(self) -> int:
        return self.teachers.trained

    def host_data(self, dataset: str, options: tuple) -> DataSource:
        """The data set as loaded (on the CPU), once per session."""
        key = (dataset, options, "cpu")
        if key not in self._data:
            self._data[key] = load_dataset(dataset, self.data_root, self.download, **dict(options))
        return self._data[key]

    def data(self, spec: RunSpec) -> DataSource:
        """The case's data set on the case's device."""
        key = (spec.dataset, spec.dataset_options, spec.device)
        if key not in self._data:
            self._data[key] = self.host_data(spec.dataset, spec.dataset_options).to(spec.device)
        return self._data[key]

    def teacher_data(self, spec: RunSpec) -> DataSource:
        """The data the teacher trains and is evaluated on: the case's, without training views."""
        key = (spec.dataset, teacher_options(spec.dataset_options), spec.device)
        if key not in self._data:
            self._data[key] = self.host_data(*key[:2]).to(spec.device)
        return self._data[key]

    def speed(self, spec: RunSpec, model: nn.Module, data: DataSource) -> dict[str, float]:
        """FLOPs per sample, inference samples/s and latency of the student architecture, timed
        as the case runs it. They depend on the architecture, input, device, precision, compile
        mode and threads, not on the trained weights: measured once per session for those."""
        key = (
            spec.student,
            data.input_shape,
            spec.device,
            spec.precision,
            spec.compile,
            spec.channels_last,
            torch.get_num_threads(),
        )
        if key not in self._speed:
            accel = Accel.for_spec(spec.precision, torch.device(spec.device), spec.channels_last)
            infer, latency = student_speed(model, data, accel, self.compile_mode_for(spec))
            self._speed[key] = {
                "student_flops": measure.flops_per_sample(model, data.input_shape, accel.device),
                "infer_throughput": infer,
                "latency_ms": latency,
            }
        return self._speed[key]

    def distill(self, spec: RunSpec) -> Outcome:
        """Train the student of ``spec`` under its loss; measure accuracy, size and speed."""
        if spec.device == "cuda" and not torch.cuda.is_available():
            raise KdbenchError("device 'cuda' requested but no CUDA GPU is available: use cpu")
        device = torch.device(spec.device)
        data = self.data(spec)
        key = (spec.teacher, spec.student, spec.dataset, spec.dataset_options)
        if key not in self._checked:  # before any training, the teacher's included
            _check_classes(spec, data)
            self._checked.add(key)
        teacher, teacher_meta = self.teachers.get(spec)
        teacher_logits = self.teachers.test_logits(spec)
        loss: DistillLoss = LOSSES.get(spec.loss)(
            temperature=spec.temperature, **dict(spec.loss_options)
        )
        teacher_fn, teacher_outputs = (
            self.teachers.outputs(spec, tuple(t for t in loss.taps if t != "index"), data)
            if loss.needs_teacher
            else (no_teacher, None)
        )
        accel = Accel.for_spec(spec.precision, device, spec.channels_last)
        with measure.MemoryProbe(device) as memory:  # what the case adds to the session's data
            torch.manual_seed(spec.seed)
            student = accel.prepare(
                build_model(spec.student, data.num_classes, data.input_shape).to(device)
            )
            with Tapper(student, loss.taps, self.compile_mode_for(spec)) as tapper:
                _setup(loss, tapper, teacher_fn, teacher, data, spec)
                start = time.perf_counter()
                pre = loss.pretrain_epochs(spec.epochs)
                if pre:
                    fit(
                        Stage(
                            tapper,
                            loss.pretrain_loss,
                            spec.student,
                            pre,
                            spec.seed,
                            f"{spec.name} (init stage)",
                            loss.trainable(),
                            teacher_fn,
                            channels_last=spec.channels_last,
                        ),
                        spec,
                        data,
                        self.progress,
                        self.tick,
                    )
                stats = fit(
                    Stage(
                        tapper,
                        _objective(spec, loss),
                        spec.student,
                        spec.epochs,
                        spec.seed,
                        spec.name,
                        loss.trainable(),
                        teacher_fn,
                        loss.set_progress,
                        spec.channels_last,
                    ),
                    spec,
                    data,
                    self.progress,
                    self.tick,
                )
                train_s = time.perf_counter() - start
            val_logits, logits = evaluate(student, data)
        metrics = {
            **measure.accuracy(logits, data.test_targets(), teacher_logits),
            "val_top1": measure.topk_accuracy(val_logits, data.val_targets(), 1),
            "best_top1": stats.best_top1,
            "teacher_top1": measure.topk_accuracy(teacher_logits, data.test_targets(), 1),
            **measure.sizes(student, teacher, loss),
            **self.speed(spec, student, data),
            **self._training_speed(spec, stats, teacher_outputs),
            "peak_mem_mb": memory.peak_mb,
            "train_s": train_s,
            "final_loss": stats.last_loss,
            "num_classes": data.num_classes,
            **loss.metrics(),
        }
        if spec.compile:
            metrics["compile_s"] = stats.compile_seconds()
        info = {
            "history": stats.history,
            "accel": accel.describe(),
            "memory_scope": memory.scope,
            "teacher_train_s": teacher_meta.get("train_s"),
        }
        if measure.near_chance(metrics["teacher_top1"], data.num_classes):
            info["warnings"] = [
                f"teacher near chance: {metrics['teacher_top1']:.2f} % test "
                f"top-1 ({100 / data.num_classes:.2f} % is chance)"
            ]
        return Outcome(metrics, info)

    def compile_mode_for(self, spec: RunSpec) -> str | None:
        """The torch.compile mode of the spec's student; None: not compiled."""
        return self.compile_mode if spec.compile else None

    def _training_speed(
        self, spec: RunSpec, stats: FitStats, teacher_outputs: str | None
    ) -> dict[str, Any]:
        """``train_throughput`` as run; ``train_throughput_online``: the rate with the teacher
        run on every batch — as run when it was online, else the measured step time plus the
        teacher's measured forward time per sample — so rows compare alike."""
        rate = stats.throughput(skip_first=spec.compile)
        if teacher_outputs is None:
            return {"train_throughput": rate, "train_throughput_online": rate}
        online = (
            rate
            if teacher_outputs == "online"
            else 1.0 / (1.0 / rate + 1.0 / self.teachers.forward_rate(spec))
        )
        return {
            "train_throughput": rate,
            "train_throughput_online": online,
            "teacher_outputs": teacher_outputs,
        }


def student_speed(
    model: nn.Module, data: DataSource, accel: Accel, compile_mode: str | None
) -> tuple[float, float]:
    """(inference samples/s at the evaluation batch, latency in ms at batch 1) of a student on
    ``data``'s input, as its case runs it (``measure.inference_speed``)."""
    return measure.inference_speed(
        model, data.input_shape, min(EVAL_BATCH, data.num_test), accel, compile_mode
    )


def _objective(spec: RunSpec, loss: DistillLoss) -> Objective:
    def objective(s: dict, t: dict, y: torch.Tensor) -> torch.Tensor:
        return spec.ce_weight * F.cross_entropy(s["logits"], y) + spec.alpha * loss(s, t, y)

    return objective


def _setup(
    loss: DistillLoss,
    tapper: Tapper,
    teacher_fn: TeacherFn,
    teacher: nn.Module,
    data: DataSource,
    spec: RunSpec,
) -> None:
    """Size the loss's connectors from the tapped shapes of a two-sample probe (the student in
    eval mode: a shape probe must not move batch-norm statistics)."""
    x0, _, i0 = next(iter(data.train_batches(2, torch.Generator().manual_seed(0))))
    student = tapper.model
    student.eval()
    with torch.no_grad():
        s_shapes = shapes({**tapper(x0), "index": i0})
        t_shapes = shapes(teacher_fn(x0, i0))
    student.train()
    loss.setup(
        LossContext(
            s_shapes,
            t_shapes,
            data.num_classes,
            data.num_train,
            spec.epochs,
            teacher,
            data.train_targets(),
            student,
        )
    )
    loss.to(spec.device)


def _check_classes(spec: RunSpec, data: DataSource) -> None:
    """Teacher and student must both output the data set's class count (shapes only: the
    models are built on the meta device, nothing is initialised or trained)."""
    x = torch.empty(1, *data.input_shape, device="meta")
    with torch.device("meta"), torch.no_grad():
        t_out, s_out = (
            build_model(name, data.num_classes, data.input_shape).eval()(x).shape[1]
            for name in (spec.teacher, spec.student)
        )
    if not t_out == s_out == data.num_classes:
        raise KdbenchError(
            f"class counts differ: teacher {spec.teacher} has {t_out}, student {spec.student} "
            f"has {s_out}, dataset {spec.dataset} has {data.num_classes}: they must match"
        )
