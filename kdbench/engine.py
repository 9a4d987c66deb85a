"""Teacher training (cached, shared by every student case) and distillation.

One training loop serves the teacher, the ``ce`` baseline and every distillation loss: the loss
declares its taps and hooks (``kdbench.losses.base``), the loop never asks which loss it runs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdbench import measure
from kdbench.accel import Accel
from kdbench.cache import TensorCache, sha256_file
from kdbench.checkpoints import load_checkpoint
from kdbench.data import load_dataset
from kdbench.data.base import DataSource
from kdbench.losses import LOSSES, DistillLoss, LossContext
from kdbench.models import build_model, count_params
from kdbench.recipes import RECIPES
from kdbench.registry import KdbenchError
from kdbench.results import append_record, utc_now
from kdbench.spec import RunSpec, stable_hash
from kdbench.taps import Tapper, map_taps, shapes

EVAL_BATCH = 1024  # evaluation batch size (inference only, no activations kept)
TEACHER_OUTPUT_BUDGET = 1 << 30  # bytes: larger teacher-output caches run the teacher online
TRAIN_CODE_VERSION = 1  # bump when a change to the loop changes what a teacher learns

Objective = Callable[[dict, dict, torch.Tensor], torch.Tensor]
TeacherFn = Callable[[torch.Tensor, torch.Tensor], dict]
Progress = Callable[[str], None]


class Diverged(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, last_finite_loss: float | None) -> None:
        super().__init__(f"loss is not finite at epoch {epoch}")
        self.epoch = epoch
        self.last_finite_loss = last_finite_loss


@dataclass
class FitStats:
    epochs: int = 0
    epoch_samples: list[int] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)  # training steps only, no eval
    last_loss: float | None = None
    best_top1: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def throughput(self, skip_first: bool = False) -> float:
        """Training samples/s; with ``skip_first`` the first epoch (compilation) is left out."""
        start = 1 if skip_first and self.epochs > 1 else 0
        return sum(self.epoch_samples[start:]) / sum(self.epoch_seconds[start:])

    def compile_seconds(self) -> float:
        """First-epoch time beyond the later epochs' median: the cost of torch.compile."""
        if self.epochs < 2:
            return float("nan")
        rest = sorted(self.epoch_seconds[1:])
        return max(0.0, self.epoch_seconds[0] - rest[len(rest) // 2])


@dataclass
class Outcome:
    """What ``distill`` returns: status, metrics and extra fields for the record."""

    status: str
    metrics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def _no_teacher(x: torch.Tensor, index: torch.Tensor) -> dict:
    return {}


class Engine:
    """Holds a session's caches: data sets, teachers (also on disk) and teacher outputs."""

    def __init__(self, cache_dir: Path | str = ".kdbench_cache", data_root: Path | str | None = None,
                 download: bool = False, progress: Progress | None = None) -> None:
        self.teacher_cache = TensorCache(Path(cache_dir), "teachers")
        self.output_cache = TensorCache(Path(cache_dir), "teacher_outputs")
        self.data_root = data_root
        self.download = download
        self.progress = progress or (lambda message: None)
        self.teachers_trained = 0
        self._data: dict[tuple, DataSource] = {}
        self._teachers: dict[str, tuple[nn.Module, dict]] = {}
        self._teacher_outputs: dict[tuple, dict[str, Any]] = {}
        self._teacher_test_logits: dict[str, torch.Tensor] = {}
        self._speed: dict[tuple, tuple[int, float, float]] = {}
        self._checked: set[tuple] = set()  # (teacher, student, data set) class counts that match
        self._teacher_tappers: dict[tuple, Tapper] = {}
        self._keys: dict[tuple, str] = {}  # (teacher spec, checkpoint file stat) → teacher key

    # ----------------------------------------------------------------- data and teachers
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

    def teacher_key(self, spec: RunSpec) -> str:
        """Hash of what determines the teacher, the data's and checkpoint's bytes included;
        computed once per session for each teacher (hashing a data set is not free)."""
        ckpt_stat = os.stat(spec.teacher_ckpt) if spec.teacher_ckpt else None
        named = (stable_hash(spec.teacher_key()),
                 ckpt_stat and (ckpt_stat.st_mtime_ns, ckpt_stat.st_size))
        if named not in self._keys:
            data = self.data(spec)
            ckpt = sha256_file(Path(spec.teacher_ckpt)) if spec.teacher_ckpt else None
            self._keys[named] = stable_hash({**spec.teacher_key(), "data": data.fingerprint(),
                                             "code": TRAIN_CODE_VERSION, "ckpt_sha256": ckpt})
        return self._keys[named]

    def teacher(self, spec: RunSpec) -> tuple[nn.Module, dict]:
        """The trained teacher of this spec (eval mode, frozen) and its metadata; trained once,
        cached on disk and reused by later cases and sessions."""
        key = self.teacher_key(spec)
        if key not in self._teachers:
            data = self.data(spec)
            torch.manual_seed(spec.teacher_seed)  # the teacher's init depends on its spec only
            model = build_model(spec.teacher, data.num_classes, data.input_shape)

            def build() -> tuple[dict, dict]:
                if spec.teacher_ckpt:
                    return load_checkpoint(spec.teacher_ckpt, spec.teacher, model)
                self.teachers_trained += 1
                return self._train_teacher(spec, model, data)

            state, meta, _ = self.teacher_cache.get_or_build(key, build)
            model.load_state_dict(state)
            model.to(spec.device).eval().requires_grad_(False)
            Accel.for_spec(spec.precision, torch.device(spec.device)).prepare(model)
            self._teachers[key] = (model, meta)
        return self._teachers[key]

    def _train_teacher(self, spec: RunSpec, model: nn.Module, data: DataSource) -> tuple[dict, dict]:
        self.progress(f"training teacher {spec.teacher} on {spec.dataset} "
                      f"({spec.teacher_epochs} epochs, seed {spec.teacher_seed})")
        model.to(spec.device)
        start = time.perf_counter()
        with Tapper(model, ()) as tapper:
            stats = self.fit(tapper, data, _cross_entropy, [], _no_teacher, spec, spec.teacher,
                             spec.teacher_epochs, spec.teacher_seed, label=f"teacher {spec.teacher}")
        meta = {"key": spec.teacher_key(), "top1": stats.history[-1]["top1"],
                "train_s": time.perf_counter() - start, "params": count_params(model),
                "trained_at": utc_now(), "pid": os.getpid()}
        append_record(self.teacher_cache.dir / "trained.jsonl", meta)  # audit: one line a training
        return {k: v.cpu() for k, v in model.state_dict().items()}, meta

    def teacher_test_logits(self, spec: RunSpec) -> torch.Tensor:
        key = self.teacher_key(spec)
        if key not in self._teacher_test_logits:
            model, _ = self.teacher(spec)
            self._teacher_test_logits[key] = measure.predict(model, self.data(spec), EVAL_BATCH)
        return self._teacher_test_logits[key]

    def teacher_fn(self, spec: RunSpec, taps: tuple[str, ...]) -> TeacherFn:
        """Teacher taps for a batch: from a train-set cache when the data are not augmented
        (the frozen teacher gives every sample the same output), else online on the batch."""
        model, _ = self.teacher(spec)
        hooked = (self.teacher_key(spec), taps)
        if hooked not in self._teacher_tappers:  # one set of hooks per teacher and tap set
            self._teacher_tappers[hooked] = Tapper(model, taps)
        tapper = self._teacher_tappers[hooked]
        data = self.data(spec)

        def online(x: torch.Tensor, index: torch.Tensor) -> dict:
            with torch.no_grad():
                return tapper(x)

        if data.augmented:
            return online
        key = stable_hash([self.teacher_key(spec), taps])  # the teacher key covers the data
        if key not in self._teacher_outputs:
            x, _, index = next(iter(data.test_batches(1)))
            probe = online(x, index)
            per_sample = sum(t.numel() * t.element_size()
                             for v in probe.values() for t in (v if isinstance(v, list) else [v]))
            if per_sample * data.num_train > TEACHER_OUTPUT_BUDGET:
                return online
            outputs, _, _ = self.output_cache.get_or_build(
                key, lambda: (_collect(online, data), {"taps": list(taps)}),
                map_location=spec.device)
            self._teacher_outputs[key] = outputs
        outputs = self._teacher_outputs[key]

        def cached(x: torch.Tensor, index: torch.Tensor) -> dict:
            return map_taps(lambda t: t[index], outputs)

        return cached

    def speed(self, spec: RunSpec, model: nn.Module, data: DataSource) -> tuple[int, float, float]:
        """(FLOPs per sample, inference samples/s, latency ms) of the student architecture.

        They depend on the architecture, input, device, precision and threads, not on the trained
        weights, so they are measured once per session for those and shared by every case."""
        key = (spec.student, data.input_shape, spec.device, spec.precision, spec.compile,
               torch.get_num_threads())
        if key not in self._speed:
            device = torch.device(spec.device)
            self._speed[key] = (
                measure.flops_per_sample(model, data.input_shape, device),
                *measure.inference_speed(model, data.input_shape,
                                         min(EVAL_BATCH, data.num_test), device))
        return self._speed[key]

    # ----------------------------------------------------------------- the loop
    def fit(self, tapper: Tapper, data: DataSource, objective: Objective, extra: list[nn.Parameter],
            teacher_fn: TeacherFn, spec: RunSpec, model_name: str, epochs: int, seed: int,
            label: str, on_epoch: Callable[[int, int], None] | None = None) -> FitStats:
        """Train ``tapper.model`` (and ``extra`` parameters) to minimise ``objective``."""
        model = tapper.model
        device = torch.device(spec.device)
        accel = Accel.for_spec(spec.precision, device)
        recipe = RECIPES.get(spec.recipe)
        optimizer = recipe.optimizer([*model.parameters(), *extra], model_name)
        scheduler = recipe.scheduler(optimizer, epochs)
        generator = torch.Generator().manual_seed(seed)
        stats = FitStats()
        for epoch in range(epochs):
            if on_epoch is not None:
                on_epoch(epoch, epochs)
            model.train()
            total = torch.zeros((), device=device)
            seen = 0
            measure.synchronize(device)
            start = time.perf_counter()
            for x, y, index in data.train_batches(spec.batch_size, generator):
                x = accel.batch(x)
                with accel.autocast():
                    student, teacher = tapper(x), teacher_fn(x, index)
                student["index"] = index
                loss = objective(map_taps(accel.for_loss, student),
                                 map_taps(accel.for_loss, teacher), y)
                accel.step(loss, optimizer)
                total += loss.detach().float() * len(y)
                seen += len(y)
            measure.synchronize(device)
            stats.epoch_seconds.append(time.perf_counter() - start)
            stats.epoch_samples.append(seen)
            scheduler.step()
            epoch_loss = (total / seen).item()  # the one host sync per epoch
            if not math.isfinite(epoch_loss):
                raise Diverged(epoch + 1, stats.last_loss)
            stats.last_loss = epoch_loss
            logits = measure.predict(model, data, EVAL_BATCH)
            top1 = measure.topk_accuracy(logits, data.test_targets(), 1)
            stats.best_top1 = max(stats.best_top1, top1)
            stats.epochs = epoch + 1
            stats.history.append({"epoch": epoch + 1, "loss": epoch_loss, "top1": top1})
            self.progress(f"{label}: epoch {epoch + 1}/{epochs} loss {epoch_loss:.4f} "
                          f"top1 {top1:.2f}")
        return stats

    # ----------------------------------------------------------------- one case
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
        teacher, teacher_meta = self.teacher(spec)
        teacher_logits = self.teacher_test_logits(spec)
        measure.reset_peak_memory(device)

        accel = Accel.for_spec(spec.precision, device)
        torch.manual_seed(spec.seed)
        student = accel.prepare(
            build_model(spec.student, data.num_classes, data.input_shape).to(device))
        loss_cls = LOSSES.get(spec.loss)
        loss: DistillLoss = loss_cls(temperature=spec.temperature, **dict(spec.loss_options))
        teacher_taps = tuple(t for t in loss.taps if t != "index") if loss.needs_teacher else ()
        with Tapper(student, loss.taps, compiled=spec.compile) as tapper:
            teacher_fn = self.teacher_fn(spec, teacher_taps) if loss.needs_teacher else _no_teacher
            x0, y0, i0 = next(iter(data.train_batches(2, torch.Generator().manual_seed(0))))
            student.eval()  # a shape probe must not move batch-norm statistics
            with torch.no_grad():
                s_shapes = shapes({**tapper(x0), "index": i0})
                t_shapes = shapes(teacher_fn(x0, i0))
            student.train()
            loss.setup(LossContext(s_shapes, t_shapes, data.num_classes, data.num_train,
                                   spec.epochs, teacher, data.train_targets()))
            loss.to(device)
            extra = [p for p in loss.parameters() if p.requires_grad]

            def objective(s: dict, t: dict, y: torch.Tensor) -> torch.Tensor:
                return spec.ce_weight * F.cross_entropy(s["logits"], y) + spec.alpha * loss(s, t, y)

            start = time.perf_counter()
            pre = loss.pretrain_epochs(spec.epochs)
            if pre:
                self.fit(tapper, data, loss.pretrain_loss, extra, teacher_fn, spec, spec.student,
                         pre, spec.seed, label=f"{spec.name} (init stage)")
            stats = self.fit(tapper, data, objective, extra, teacher_fn, spec, spec.student,
                             spec.epochs, spec.seed, label=spec.name, on_epoch=loss.set_progress)
            train_s = time.perf_counter() - start

        logits = measure.predict(student, data, EVAL_BATCH)
        targets = data.test_targets()
        flops, infer, latency = self.speed(spec, student, data)
        metrics = {
            "top1": measure.topk_accuracy(logits, targets, 1),
            "top5": measure.topk_accuracy(logits, targets, 5),
            "best_top1": stats.best_top1,
            "teacher_top1": measure.topk_accuracy(teacher_logits, targets, 1),
            "student_params": count_params(student),
            "teacher_params": count_params(teacher, trainable_only=False),
            "extra_params": count_params(loss),
            "student_flops": flops,
            "train_throughput": stats.throughput(skip_first=spec.compile),
            "infer_throughput": infer,
            "latency_ms": latency,
            "peak_mem_mb": measure.peak_memory_mb(device),
            "agreement": measure.agreement(logits, teacher_logits),
            "train_s": train_s,
            "final_loss": stats.last_loss,
            "num_classes": data.num_classes,
        }
        metrics["compression"] = metrics["teacher_params"] / metrics["student_params"]
        if spec.compile:
            metrics["compile_s"] = stats.compile_seconds()
        return Outcome("ok", metrics, {"history": stats.history, "accel": accel.describe(),
                                       "teacher_train_s": teacher_meta.get("train_s")})


def _cross_entropy(s: dict, t: dict, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(s["logits"], y)


@torch.no_grad()
def _collect(teacher_fn: TeacherFn, data: DataSource) -> dict[str, Any]:
    """Teacher taps for the whole training set, row i belonging to training sample i."""
    indices, batches = [], []
    for x, _, index in data.train_batches(EVAL_BATCH, torch.Generator().manual_seed(0)):
        indices.append(index)
        batches.append(teacher_fn(x, index))
    order = torch.cat(indices).argsort()

    def gather(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts)[order]

    return {k: ([gather([b[k][j] for b in batches]).cpu() for j in range(len(v))]
                if isinstance(v, list) else gather([b[k] for b in batches]).cpu())
            for k, v in batches[0].items()}


def _check_classes(spec: RunSpec, data: DataSource) -> None:
    """Teacher and student must both output the data set's class count (shapes only: the
    models are built on the meta device, nothing is initialised or trained)."""
    x = torch.empty(1, *data.input_shape, device="meta")
    with torch.device("meta"), torch.no_grad():
        t_out, s_out = (build_model(name, data.num_classes, data.input_shape).eval()(x).shape[1]
                        for name in (spec.teacher, spec.student))
    if not t_out == s_out == data.num_classes:
        raise KdbenchError(
            f"class counts differ: teacher {spec.teacher} has {t_out}, student {spec.student} "
            f"has {s_out}, dataset {spec.dataset} has {data.num_classes}: they must match")
