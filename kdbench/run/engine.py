"""The conductor: ``Engine.distill(spec)`` = get the teacher → build the student and its loss →
fit → measure. The teacher store (train, load, cache, outputs) sits beside it; the metrics come
from ``kdbench.run.measure``.

One training loop (``fit``) serves the teacher, the ``ce`` baseline and every distillation loss:
the loss declares its taps and hooks (``kdbench.losses.base``), the loop never asks which loss it
runs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.run import measure
from kdbench.run.accel import Accel
from kdbench.run.cache import TensorCache, sha256_file
from kdbench.run.checkpoints import load_checkpoint
from kdbench.data import load_dataset
from kdbench.data.base import DataSource
from kdbench.losses import LOSSES, DistillLoss, LossContext
from kdbench.models import build_model, count_params
from kdbench.recipes import RECIPES
from kdbench.registry import KdbenchError
from kdbench.results import append_record, utc_now
from kdbench.spec import RunSpec, stable_hash
from kdbench.run.taps import Tapper, map_taps, shapes

EVAL_BATCH = 1024  # evaluation batch size (inference only, no activations kept)
TEACHER_OUTPUT_BUDGET = 1 << 30  # bytes: larger teacher-output caches run the teacher online
TRAIN_CODE_VERSION = 2  # bump when a change to the loop changes what a teacher learns
# torch.compile modes for compiled cases (``--kd-compile-mode``); "reduce-overhead" adds CUDA
# graphs, which replay a step's kernels with one launch where a small batch is launch-bound
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")

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


def _no_teacher(x: torch.Tensor, index: torch.Tensor) -> dict:
    return {}


def _cross_entropy(s: dict, t: dict, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(s["logits"], y)


@dataclass
class Stage:
    """One run of the training loop: the model behind ``tapper`` (and ``extra`` parameters, a
    loss's connectors) learns ``objective`` for ``epochs`` with the recipe's optimizer for
    ``model_name``; ``on_step(progress, epochs)`` sees the fractional epoch before every step."""

    tapper: Tapper
    objective: Objective
    model_name: str
    epochs: int
    seed: int
    label: str
    extra: Sequence[nn.Parameter] = ()
    teacher: TeacherFn = _no_teacher
    on_step: Callable[[float, int], None] | None = None


def evaluate(model: nn.Module, data: DataSource) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation logits, test logits) of ``model``."""
    return (measure.predict(model, data.val_batches(EVAL_BATCH)),
            measure.predict(model, data.test_batches(EVAL_BATCH)))


def fit(stage: Stage, spec: RunSpec, data: DataSource, progress: Progress) -> FitStats:
    """Train ``stage.tapper.model`` to minimise ``stage.objective``; validation and test top-1
    after every epoch, one host sync per epoch."""
    model = stage.tapper.model
    device = torch.device(spec.device)
    accel = Accel.for_spec(spec.precision, device)
    recipe = RECIPES.get(spec.recipe)
    optimizer = recipe.optimizer([*model.parameters(), *stage.extra], stage.model_name)
    scheduler = recipe.scheduler(optimizer, stage.epochs)
    generator = torch.Generator().manual_seed(stage.seed)
    steps = math.ceil(data.num_train / spec.batch_size)
    stats = FitStats()
    for epoch in range(stage.epochs):
        model.train()
        total = torch.zeros((), device=device)
        seen = 0
        measure.synchronize(device)
        start = time.perf_counter()
        for step, (x, y, index) in enumerate(data.train_batches(spec.batch_size, generator)):
            if stage.on_step is not None:
                stage.on_step(epoch + step / steps, stage.epochs)
            x = accel.batch(x)
            with accel.autocast():
                student, teacher = stage.tapper(x), stage.teacher(x, index)
            student["index"] = index
            loss = stage.objective(map_taps(accel.for_loss, student),
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
        val_logits, test_logits = evaluate(model, data)
        val_top1 = measure.topk_accuracy(val_logits, data.val_targets(), 1)
        top1 = measure.topk_accuracy(test_logits, data.test_targets(), 1)
        stats.best_top1 = max(stats.best_top1, top1)
        stats.epochs = epoch + 1
        stats.history.append({"epoch": epoch + 1, "loss": epoch_loss, "val_top1": val_top1,
                              "top1": top1})
        progress(f"{stage.label}: epoch {epoch + 1}/{stage.epochs} loss {epoch_loss:.4f} "
                 f"val top1 {val_top1:.2f} test top1 {top1:.2f}")
    return stats


class TeacherStore:
    """The teachers of a session. One per teacher key (data, architecture, recipe, epochs, seed,
    device, precision, checkpoint), trained once (or read from a user's checkpoint), cached on
    disk across sessions and processes, and shared by every student case of it; with its test
    logits, its outputs on the training set (cached when the data are not augmented: a frozen
    teacher gives each sample the same output) and its forward speed."""

    def __init__(self, cache_dir: Path, data: Callable[[RunSpec], DataSource],
                 progress: Progress) -> None:
        self.cache = TensorCache(cache_dir, "teachers")
        self.output_cache = TensorCache(cache_dir, "teacher_outputs")
        self.data = data
        self.progress = progress
        self.trained = 0
        self._keys: dict[tuple, str] = {}  # (teacher spec, checkpoint file stat) → teacher key
        self._models: dict[str, tuple[nn.Module, dict]] = {}
        self._test_logits: dict[str, torch.Tensor] = {}
        self._tappers: dict[tuple, Tapper] = {}
        self._outputs: dict[str, dict[str, Any]] = {}
        self._rates: dict[tuple, float] = {}

    def key(self, spec: RunSpec) -> str:
        """Hash of what determines the teacher, the recipe's settings and the data's and
        checkpoint's bytes included; computed once per session for each teacher (hashing a data
        set is not free)."""
        ckpt_stat = os.stat(spec.teacher_ckpt) if spec.teacher_ckpt else None
        named = (stable_hash(spec.teacher_key()),
                 ckpt_stat and (ckpt_stat.st_mtime_ns, ckpt_stat.st_size))
        if named not in self._keys:
            ckpt = sha256_file(Path(spec.teacher_ckpt)) if spec.teacher_ckpt else None
            self._keys[named] = stable_hash({**spec.teacher_key(),
                                             "recipe": asdict(RECIPES.get(spec.recipe)),
                                             "data": self.data(spec).fingerprint(),
                                             "code": TRAIN_CODE_VERSION, "ckpt_sha256": ckpt})
        return self._keys[named]

    def get(self, spec: RunSpec) -> tuple[nn.Module, dict]:
        """The teacher of ``spec`` (eval mode, frozen) and its metadata."""
        key = self.key(spec)
        if key not in self._models:
            data = self.data(spec)
            torch.manual_seed(spec.teacher_seed)  # the teacher's init depends on its spec only
            model = build_model(spec.teacher, data.num_classes, data.input_shape)

            def build() -> tuple[dict, dict]:
                if spec.teacher_ckpt:
                    return load_checkpoint(spec.teacher_ckpt, spec.teacher, model)
                self.trained += 1
                return self._train(spec, model, data)

            state, meta, _ = self.cache.get_or_build(key, build)
            model.load_state_dict(state)
            model.to(spec.device).eval().requires_grad_(False)
            Accel.for_spec(spec.precision, torch.device(spec.device)).prepare(model)
            self._models[key] = (model, meta)
        return self._models[key]

    def _train(self, spec: RunSpec, model: nn.Module, data: DataSource) -> tuple[dict, dict]:
        self.progress(f"training teacher {spec.teacher} on {spec.dataset} "
                      f"({spec.teacher_epochs} epochs, seed {spec.teacher_seed})")
        model.to(spec.device)
        start = time.perf_counter()
        with Tapper(model, ()) as tapper:
            stats = fit(Stage(tapper, _cross_entropy, spec.teacher, spec.teacher_epochs,
                              spec.teacher_seed, label=f"teacher {spec.teacher}"),
                        spec, data, self.progress)
        meta = {"key": spec.teacher_key(), "top1": stats.history[-1]["top1"],
                "val_top1": stats.history[-1]["val_top1"],
                "train_s": time.perf_counter() - start, "params": count_params(model),
                "trained_at": utc_now(), "pid": os.getpid()}
        append_record(self.cache.dir / "trained.jsonl", meta)  # audit: a line a training
        return {k: v.cpu() for k, v in model.state_dict().items()}, meta

    def test_logits(self, spec: RunSpec) -> torch.Tensor:
        key = self.key(spec)
        if key not in self._test_logits:
            model, _ = self.get(spec)
            self._test_logits[key] = measure.predict(model, self.data(spec).test_batches(EVAL_BATCH))
        return self._test_logits[key]

    def outputs(self, spec: RunSpec, taps: tuple[str, ...]) -> tuple[TeacherFn, str]:
        """The teacher's taps for a batch and how they are had: ``"cached"`` from a train-set
        cache when the data are not augmented and the cache fits the budget, else ``"online"``
        (the teacher runs on the batch)."""
        model, _ = self.get(spec)
        hooked = (self.key(spec), taps)
        if hooked not in self._tappers:  # one set of hooks per teacher and tap set
            self._tappers[hooked] = Tapper(model, taps)
        tapper = self._tappers[hooked]
        data = self.data(spec)

        def online(x: torch.Tensor, index: torch.Tensor) -> dict:
            with torch.no_grad():
                return tapper(x)

        if data.augmented:
            return online, "online"
        key = stable_hash([self.key(spec), taps])  # the teacher key covers the data
        if key not in self._outputs:
            x, _, index = next(iter(data.test_batches(1)))
            probe = online(x, index)
            per_sample = sum(t.numel() * t.element_size()
                             for v in probe.values() for t in (v if isinstance(v, list) else [v]))
            if per_sample * data.num_train > TEACHER_OUTPUT_BUDGET:
                return online, "online"
            outputs, _, _ = self.output_cache.get_or_build(
                key, lambda: (_collect(online, data), {"taps": list(taps)}),
                map_location=spec.device)
            self._outputs[key] = outputs
        outputs = self._outputs[key]

        def cached(x: torch.Tensor, index: torch.Tensor) -> dict:
            return map_taps(lambda t: t[index], outputs)

        return cached, "cached"

    def forward_rate(self, spec: RunSpec) -> float:
        """Samples/s of the teacher's forward pass at the training batch size, in the case's
        precision: what a training step pays when the teacher runs online."""
        key = (self.key(spec), spec.batch_size, torch.get_num_threads())
        if key not in self._rates:
            model, _ = self.get(spec)
            accel = Accel.for_spec(spec.precision, torch.device(spec.device))
            self._rates[key] = measure.forward_rate(model, self.data(spec).input_shape,
                                                    spec.batch_size, accel)
        return self._rates[key]


@dataclass
class Outcome:
    """What ``distill`` returns: status, metrics and extra fields for the record."""

    status: str
    metrics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Holds a session's caches: data sets, the teacher store, speed measurements. Students of
    compiled specs are compiled in ``compile_mode`` (one of ``COMPILE_MODES``), recorded with
    each case's env: the mode changes speed, not what the student computes (up to the rounding
    of the kernels it picks), so it is not part of the spec and its case id."""

    def __init__(self, cache_dir: Path | str = ".kdbench_cache", data_root: Path | str | None = None,
                 download: bool = False, progress: Progress | None = None,
                 compile_mode: str = "default") -> None:
        if compile_mode not in COMPILE_MODES:
            raise KdbenchError(f"invalid compile mode {compile_mode!r}: valid: "
                               f"{', '.join(COMPILE_MODES)}")
        self.compile_mode = compile_mode
        self.data_root = data_root
        self.download = download
        self.progress = progress or (lambda message: None)
        self.teachers = TeacherStore(Path(cache_dir), self.data, self.progress)
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

    def speed(self, spec: RunSpec, model: nn.Module, data: DataSource) -> dict[str, float]:
        """FLOPs per sample, inference samples/s and latency of the student architecture, timed
        as the case runs it. They depend on the architecture, input, device, precision, compile
        mode and threads, not on the trained weights: measured once per session for those."""
        key = (spec.student, data.input_shape, spec.device, spec.precision, spec.compile,
               torch.get_num_threads())
        if key not in self._speed:
            accel = Accel.for_spec(spec.precision, torch.device(spec.device))
            infer, latency = measure.inference_speed(
                model, data.input_shape, min(EVAL_BATCH, data.num_test), accel,
                self.compile_mode_for(spec))
            self._speed[key] = {
                "student_flops": measure.flops_per_sample(model, data.input_shape, accel.device),
                "infer_throughput": infer, "latency_ms": latency}
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
        loss: DistillLoss = LOSSES.get(spec.loss)(temperature=spec.temperature,
                                                  **dict(spec.loss_options))
        teacher_fn, teacher_outputs = (
            self.teachers.outputs(spec, tuple(t for t in loss.taps if t != "index"))
            if loss.needs_teacher else (_no_teacher, None))
        accel = Accel.for_spec(spec.precision, device)
        with measure.MemoryProbe(device) as memory:  # what the case adds to the session's data
            torch.manual_seed(spec.seed)
            student = accel.prepare(
                build_model(spec.student, data.num_classes, data.input_shape).to(device))
            with Tapper(student, loss.taps, self.compile_mode_for(spec)) as tapper:
                _setup(loss, tapper, teacher_fn, teacher, data, spec)
                start = time.perf_counter()
                pre = loss.pretrain_epochs(spec.epochs)
                if pre:
                    fit(Stage(tapper, loss.pretrain_loss, spec.student, pre, spec.seed,
                              f"{spec.name} (init stage)", loss.trainable(), teacher_fn),
                        spec, data, self.progress)
                stats = fit(Stage(tapper, _objective(spec, loss), spec.student, spec.epochs,
                                  spec.seed, spec.name, loss.trainable(), teacher_fn,
                                  loss.set_progress), spec, data, self.progress)
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
        info = {"history": stats.history, "accel": accel.describe(),
                "memory_scope": memory.scope, "teacher_train_s": teacher_meta.get("train_s")}
        if measure.near_chance(metrics["teacher_top1"], data.num_classes):
            info["warnings"] = [f"teacher near chance: {metrics['teacher_top1']:.2f} % test "
                                f"top-1 ({100 / data.num_classes:.2f} % is chance)"]
        return Outcome("ok", metrics, info)

    def compile_mode_for(self, spec: RunSpec) -> str | None:
        """The torch.compile mode of the spec's student; None: not compiled."""
        return self.compile_mode if spec.compile else None

    def _training_speed(self, spec: RunSpec, stats: FitStats,
                        teacher_outputs: str | None) -> dict[str, Any]:
        """``train_throughput`` as run; ``train_throughput_online``: the rate with the teacher
        run on every batch — as run when it was online, else the measured step time plus the
        teacher's measured forward time per sample — so rows compare alike."""
        rate = stats.throughput(skip_first=spec.compile)
        if teacher_outputs is None:
            return {"train_throughput": rate, "train_throughput_online": rate}
        online = rate if teacher_outputs == "online" else \
            1.0 / (1.0 / rate + 1.0 / self.teachers.forward_rate(spec))
        return {"train_throughput": rate, "train_throughput_online": online,
                "teacher_outputs": teacher_outputs}


def _objective(spec: RunSpec, loss: DistillLoss) -> Objective:
    def objective(s: dict, t: dict, y: torch.Tensor) -> torch.Tensor:
        return spec.ce_weight * F.cross_entropy(s["logits"], y) + spec.alpha * loss(s, t, y)

    return objective


def _setup(loss: DistillLoss, tapper: Tapper, teacher_fn: TeacherFn, teacher: nn.Module,
           data: DataSource, spec: RunSpec) -> None:
    """Size the loss's connectors from the tapped shapes of a two-sample probe (the student in
    eval mode: a shape probe must not move batch-norm statistics)."""
    x0, _, i0 = next(iter(data.train_batches(2, torch.Generator().manual_seed(0))))
    student = tapper.model
    student.eval()
    with torch.no_grad():
        s_shapes = shapes({**tapper(x0), "index": i0})
        t_shapes = shapes(teacher_fn(x0, i0))
    student.train()
    loss.setup(LossContext(s_shapes, t_shapes, data.num_classes, data.num_train,
                           spec.epochs, teacher, data.train_targets(), student))
    loss.to(spec.device)


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
