"""The teacher store: one teacher per (data set, architecture, recipe, teacher seed), trained
once or loaded from a checkpoint, cached on disk, and its outputs (logits and the taps a loss
asks for) served from a cache or computed online."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench.data.base import DataSource
from kdbench.models import build_model, count_params
from kdbench.recipes import RECIPES
from kdbench.results import append_record, utc_now
from kdbench.run import measure
from kdbench.run.accel import Accel
from kdbench.run.cache import TensorCache, sha256_file, writable
from kdbench.run.checkpoints import load_checkpoint
from kdbench.run.loop import EVAL_BATCH, Progress, Stage, TeacherFn, Tick, cross_entropy, fit
from kdbench.run.mapped import MappedCache
from kdbench.run.taps import Tapper, map_taps
from kdbench.spec import RunSpec, stable_hash

TEACHER_OUTPUT_BUDGET = 1 << 30  # bytes: teacher outputs up to this size are held in memory,
TEACHER_DISK_BUDGET = 64 << 30  # larger ones memory-mapped from the cache's disk up to this size
# (and the disk's free space: kdbench.run.mapped); beyond, the teacher runs online


TRAIN_CODE_VERSION = 2  # bump when a change to the loop changes what a teacher learns


class TeacherStore:
    """The teachers of a session. One per teacher key (data, architecture, recipe, epochs, seed,
    device, precision, checkpoint), trained once (or read from a user's checkpoint), cached on
    disk across sessions and processes, and shared by every student case of it; with its test
    logits, its outputs on the training set (cached when the data are not augmented: a frozen
    teacher gives each sample the same output; in memory, or memory-mapped from disk when they
    are larger than ``TEACHER_OUTPUT_BUDGET``) and its forward speed."""

    def __init__(
        self,
        cache_dir: Path,
        data: Callable[[RunSpec], DataSource],
        progress: Progress,
        tick: Tick | None = None,
    ) -> None:
        self.cache = TensorCache(cache_dir, "teachers")
        self.output_cache = TensorCache(cache_dir, "teacher_outputs")
        self.mapped_cache = MappedCache(cache_dir, "teacher_taps")
        self.data = data
        self.progress = progress
        self.tick = tick
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
        named = (
            stable_hash(spec.teacher_key()),
            ckpt_stat and (ckpt_stat.st_mtime_ns, ckpt_stat.st_size),
        )
        if named not in self._keys:
            ckpt = sha256_file(Path(spec.teacher_ckpt)) if spec.teacher_ckpt else None
            self._keys[named] = stable_hash(
                {
                    **spec.teacher_key(),
                    "recipe": RECIPES.get(spec.recipe).key(),
                    "data": self.data(spec).fingerprint(),
                    "code": TRAIN_CODE_VERSION,
                    "ckpt_sha256": ckpt,
                }
            )
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
        self.progress(
            f"training teacher {spec.teacher} on {spec.dataset} "
            f"({spec.teacher_epochs} epochs, seed {spec.teacher_seed})"
        )
        model.to(spec.device)
        start = time.perf_counter()
        with Tapper(model, ()) as tapper:
            stats = fit(
                Stage(
                    tapper,
                    cross_entropy,
                    spec.teacher,
                    spec.teacher_epochs,
                    spec.teacher_seed,
                    label=f"teacher {spec.teacher}",
                ),
                spec,
                data,
                self.progress,
                self.tick,
            )
        meta = {
            "key": spec.teacher_key(),
            "top1": stats.history[-1]["top1"],
            "val_top1": stats.history[-1]["val_top1"],
            "train_s": time.perf_counter() - start,
            "params": count_params(model),
            "trained_at": utc_now(),
            "pid": os.getpid(),
        }
        if writable(self.cache.dir):  # a read-only cache: the teacher is the session's only
            append_record(self.cache.dir / "trained.jsonl", meta)  # audit: a line a training
        return {k: v.cpu() for k, v in model.state_dict().items()}, meta

    def test_logits(self, spec: RunSpec) -> torch.Tensor:
        key = self.key(spec)
        if key not in self._test_logits:
            model, _ = self.get(spec)
            self._test_logits[key] = measure.predict(
                model, self.data(spec).test_batches(EVAL_BATCH)
            )
        return self._test_logits[key]

    def outputs(
        self, spec: RunSpec, taps: tuple[str, ...], data: DataSource
    ) -> tuple[TeacherFn, str]:
        """The teacher's taps for a batch and how they are had: ``"cached"`` from a train-set
        cache when the data are not augmented (in memory up to ``TEACHER_OUTPUT_BUDGET``, else
        memory-mapped from disk up to ``TEACHER_DISK_BUDGET`` and the disk's free space), else
        ``"online"`` (the teacher runs on the batch). The cache keeps one entry per tap, and
        ``feats`` as ``preacts`` where each stage's feature is the ReLU of its pre-activation
        (``_stored``): every feature method of a teacher reads one entry, as it is recomputed
        exactly."""
        model, _ = self.get(spec)
        online = self._online(spec, model, taps)
        if data.augmented:
            return online, "online"
        stored = _stored(model, taps)
        groups: list[tuple[str, ...]] = [(tap,) for tap in stored] or [()]
        parts = [self._cached(spec, model, group, data) for group in groups]
        if any(part is None for part in parts):
            return online, "online"
        outputs = {k: v for part in parts for k, v in (part or {}).items()}
        derived = "feats" in taps and "feats" not in stored

        def cached(x: torch.Tensor, index: torch.Tensor) -> dict:  # mapped rows: CPU → x's device
            rows = map_taps(lambda t: t[index.to(t.device)].to(x.device), outputs)
            if derived:
                rows["feats"] = [torch.relu(p) for p in rows["preacts"]]
                if "preacts" not in taps:
                    del rows["preacts"]
            return rows

        return cached, "cached"

    def _online(self, spec: RunSpec, model: nn.Module, taps: tuple[str, ...]) -> TeacherFn:
        hooked = (self.key(spec), taps)
        if hooked not in self._tappers:  # one set of hooks per teacher and tap set
            self._tappers[hooked] = Tapper(model, taps)
        tapper = self._tappers[hooked]

        def online(x: torch.Tensor, index: torch.Tensor) -> dict:
            with torch.no_grad():
                return tapper(x)

        return online

    def _cached(
        self, spec: RunSpec, model: nn.Module, taps: tuple[str, ...], data: DataSource
    ) -> dict[str, Any] | None:
        """The cached taps of the whole training set (row i: training sample i), built once;
        None where they fit neither the memory nor the disk budget."""
        key = stable_hash([self.key(spec), taps])  # the teacher key covers the data
        if key not in self._outputs:
            online = self._online(spec, model, taps)
            x, _, index = next(iter(data.test_batches(1)))
            probe = online(x, index)
            per_sample = sum(
                t.numel() * t.element_size()
                for v in probe.values()
                for t in (v if isinstance(v, list) else [v])
            )
            size = per_sample * data.num_train
            if size <= TEACHER_OUTPUT_BUDGET:
                outputs, _, _ = self.output_cache.get_or_build(
                    key,
                    lambda: (_collect(online, data), {"taps": list(taps)}),
                    map_location=spec.device,
                )
            elif size <= TEACHER_DISK_BUDGET and self.mapped_cache.fits(size):
                outputs = self.mapped_cache.get_or_build(
                    key,
                    data.num_train,
                    probe,
                    lambda write: _collect_into(write, online, data),
                    {"taps": list(taps)},
                )
            else:
                return None
            self._outputs[key] = outputs
        return self._outputs[key]

    def forward_rate(self, spec: RunSpec) -> float:
        """Samples/s of the teacher's forward pass at the training batch size, in the case's
        precision: what a training step pays when the teacher runs online."""
        key = (self.key(spec), spec.batch_size, torch.get_num_threads())
        if key not in self._rates:
            model, _ = self.get(spec)
            accel = Accel.for_spec(spec.precision, torch.device(spec.device))
            self._rates[key] = measure.forward_rate(
                model, self.data(spec).input_shape, spec.batch_size, accel
            )
        return self._rates[key]


@torch.no_grad()
def _stored(model: nn.Module, taps: tuple[str, ...]) -> tuple[str, ...]:
    """The taps the cache keeps for ``taps``: ``feats`` as ``preacts`` where every stage's
    feature is the output of a ReLU whose input is that stage's pre-activation (then
    ``relu(preact)`` is the feature, bit for bit), each tap once."""
    stages = getattr(model, "stages", ())
    relus = stages == getattr(model, "preact_stages", None) and all(
        isinstance(model.get_submodule(path), nn.ReLU) for path in stages
    )
    kept = ["preacts" if tap == "feats" and relus else tap for tap in taps]
    return tuple(dict.fromkeys(kept))


def _collect_into(
    write: Callable[[torch.Tensor, dict], None], teacher_fn: TeacherFn, data: DataSource
) -> None:
    """``write(index, taps)`` for every batch of the training set (batches of ``EVAL_BATCH``)."""
    for x, _, index in data.train_batches(EVAL_BATCH, torch.Generator().manual_seed(0)):
        write(index, teacher_fn(x, index))


def _collect(teacher_fn: TeacherFn, data: DataSource) -> dict[str, Any]:
    """Teacher taps for the whole training set, row i belonging to training sample i."""
    indices: list[torch.Tensor] = []
    batches: list[dict] = []

    def keep(index: torch.Tensor, taps: dict) -> None:
        indices.append(index)
        batches.append(taps)

    _collect_into(keep, teacher_fn, data)
    order = torch.cat(indices).argsort()

    def gather(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts)[order]

    return {
        k: (
            [gather([b[k][j] for b in batches]).cpu() for j in range(len(v))]
            if isinstance(v, list)
            else gather([b[k] for b in batches]).cpu()
        )
        for k, v in batches[0].items()
    }
