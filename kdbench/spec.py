"""RunSpec: everything that determines one case, frozen; results carry their spec."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kdbench.registry import KdbenchError

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "amp")
TUNE = ("", "trial", "tuned")  # a plain case, a tuning trial, a case at the setting tuning chose


def stable_hash(obj: Any, length: int = 16) -> str:
    """A hash of a JSON-able object that is the same in every process and Python version."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _fmt_number(x: float) -> str:
    return f"{x:g}"


def group_id_of(spec: dict[str, Any]) -> str:
    """The group of a spec as a record holds it (``RunSpec.to_dict``): every field but the seed,
    so the seeds of one configuration share it."""
    return stable_hash({k: v for k, v in spec.items() if k != "seed"})


PAIR_SEP = "/"  # every character of a case id is one `pytest -k` accepts


def pair_name(teacher: str, student: str) -> str:
    """``teacher/student``, as ids, tables and plots name a pair."""
    return f"{teacher}{PAIR_SEP}{student}"


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one case, frozen: data set, teacher and student, the loss with
    its temperature, weights and options, seed, device, epochs, recipe, precision, compile,
    teacher checkpoint, data options, the student's memory format. Two equal specs on the same
    machine give the same record (on the CPU bit for bit). ``case_id`` is a stable hash of all
    of it, ``group_id`` of all but the seed (the seeds of one configuration); ``name`` is the
    readable test id (``digits-cnn_t/cnn_s-kd-T4-cpu-s0``, every part selectable with ``-k``).
    Checked on construction (``validate_spec``): a bad value is a one-line ``KdbenchError``."""

    dataset: str
    teacher: str
    student: str
    loss: str
    temperature: float | None = None
    alpha: float = 0.0
    ce_weight: float = 1.0
    loss_options: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    teacher_seed: int = 0
    device: str = "cpu"
    epochs: int = 20
    teacher_epochs: int = 20
    batch_size: int = 64
    recipe: str = "digits"
    precision: str = "fp32"  # "fp32" or "amp" (bf16 autocast where supported, else fp16)
    compile: bool = False  # torch.compile the student
    teacher_ckpt: str | None = None  # a user's teacher checkpoint instead of training one
    dataset_options: tuple[tuple[str, Any], ...] = field(default=())
    tune: str = ""  # one of TUNE (kdbench.matrix.tuning); "" is left out of the dict and the ids
    channels_last: bool = False  # the student channels_last on the CPU too (always on CUDA)

    def __post_init__(self) -> None:
        validate_spec(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_options"] = dict(self.loss_options)
        d["dataset_options"] = dict(self.dataset_options)
        for key in ("tune", "channels_last"):  # left out at their defaults: the case ids of
            if not d[key]:  # the cases before these fields stay what they were
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["loss_options"] = tuple(sorted(dict(kw.get("loss_options", {})).items()))
        kw["dataset_options"] = tuple(sorted(dict(kw.get("dataset_options", {})).items()))
        return cls(**kw)

    @property
    def case_id(self) -> str:
        return stable_hash(self.to_dict())

    @property
    def group_id(self) -> str:
        return group_id_of(self.to_dict())

    @property
    def pair(self) -> str:
        return pair_name(self.teacher, self.student)

    @property
    def name(self) -> str:
        """Readable test id, e.g. ``digits-cnn_t/cnn_s-kd-T4-cpu-s0``: every part is one that
        ``pytest -k`` accepts. Loss options and weights are not in it (a profile sets one value
        per pair and loss; the record's spec has them all)."""
        parts = [self.dataset, self.pair, self.loss]
        if self.tune == "tuned":  # its setting is chosen at run time: the id names none
            parts.append("tuned")
        else:
            parts += ["tune"] if self.tune else []
            if self.temperature is not None:
                parts.append(f"T{_fmt_number(self.temperature)}")
            parts += self._setting_words() if self.tune else []
        parts += [self.device] + ([] if self.precision == "fp32" else [self.precision])
        parts += ["compiled"] if self.compile else []
        parts += ["chlast"] if self.channels_last else []
        parts.append(f"s{self.seed}")
        return "-".join(parts)

    def _setting_words(self) -> list[str]:
        """A trial's weights and option values, which tell the trials of a grid apart:
        ``a0.9-c0.1-o8_1`` (alpha, ce_weight, the options' values in their names' order;
        letters and digits only, so that no word of it is a loss name for ``pytest -k``)."""
        options = "_".join(_fmt_number(v) for _, v in self.loss_options)
        return [
            f"a{_fmt_number(self.alpha)}",
            f"c{_fmt_number(self.ce_weight)}",
            *([f"o{options}"] if options else []),
        ]

    def teacher_key(self) -> dict[str, Any]:
        """What determines the teacher: shared by every student case of it."""
        return {
            "dataset": self.dataset,
            "dataset_options": dict(teacher_options(self.dataset_options)),
            "teacher": self.teacher,
            "recipe": self.recipe,
            "epochs": self.teacher_epochs,
            "batch_size": self.batch_size,
            "seed": self.teacher_seed,
            "device": self.device,
            "precision": self.precision,
            "ckpt": self.teacher_ckpt,
        }


def teacher_options(options: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """The dataset options a teacher sees: a student's training views (``strong_view``) are
    not the teacher's data, which every student case of the data set shares; an option
    ``teacher_<name>`` is the option ``<name>`` for the teacher alone (``teacher_augment``: a
    teacher trained on augmented images, its students on the images as they are, so that the
    teacher's outputs and taps on their batches can be cached)."""
    from kdbench.data.base import TEACHER_PREFIX
    from kdbench.data.views import STRONG_VIEW

    own = dict(
        kv for kv in options if kv[0] != STRONG_VIEW and not kv[0].startswith(TEACHER_PREFIX)
    )
    own.update(
        (k.removeprefix(TEACHER_PREFIX), v) for k, v in options if k.startswith(TEACHER_PREFIX)
    )
    return tuple(sorted(own.items()))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise KdbenchError(message)


def validate_spec(spec: RunSpec) -> None:
    """Every check that needs no data: run before any training starts."""
    from kdbench.data import DATASETS
    from kdbench.losses import LOSSES
    from kdbench.models.base import model_factory
    from kdbench.recipes import RECIPES

    DATASETS.get(spec.dataset)
    model_factory(spec.teacher)
    model_factory(spec.student)
    loss_cls = LOSSES.get(spec.loss)
    RECIPES.get(spec.recipe)
    _check(spec.device in DEVICES, f"invalid device {spec.device!r}: valid: {', '.join(DEVICES)}")
    _check(spec.tune in TUNE, f"invalid tune {spec.tune!r}: valid: {', '.join(map(repr, TUNE))}")
    _check(
        spec.precision in PRECISIONS,
        f"invalid precision {spec.precision!r}: valid: {', '.join(PRECISIONS)}",
    )
    if loss_cls.uses_temperature:
        t = spec.temperature
        _check(
            t is not None and isinstance(t, (int, float)) and math.isfinite(t) and t > 0,
            f"invalid temperature {t!r} for loss {spec.loss!r}: must be a finite number > 0",
        )
    else:
        _check(
            spec.temperature is None,
            f"loss {spec.loss!r} uses no temperature, got {spec.temperature!r}: use None",
        )
    _check(
        isinstance(spec.alpha, (int, float)) and 0.0 <= spec.alpha <= 1.0,
        f"invalid alpha {spec.alpha!r}: must be in [0, 1]",
    )
    _check(
        isinstance(spec.ce_weight, (int, float))
        and math.isfinite(spec.ce_weight)
        and spec.ce_weight >= 0,
        f"invalid ce_weight {spec.ce_weight!r}: must be ≥ 0",
    )
    for key, value in spec.loss_options:
        _check(
            key in loss_cls.options,
            f"unknown option {key!r} for loss {spec.loss!r}: "
            f"valid: {', '.join(sorted(loss_cls.options)) or 'none'}",
        )
        _check(
            isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
            f"invalid {spec.loss} option {key}={value!r}: must be a finite number ≥ 0",
        )
    loss_cls.resolve(spec.temperature, dict(spec.loss_options))
    for key, value in loss_cls.dataset_options.items():
        _check(
            dict(spec.dataset_options).get(key) == value,
            f"loss {spec.loss!r} trains on the dataset option {key}={value!r}: add it",
        )
    for name in ("seed", "teacher_seed"):
        value = getattr(spec, name)
        _check(
            isinstance(value, int) and value >= 0,
            f"invalid {name} {value!r}: must be an integer ≥ 0",
        )
    for name in ("epochs", "teacher_epochs", "batch_size"):
        value = getattr(spec, name)
        _check(
            isinstance(value, int) and value >= 1,
            f"invalid {name} {value!r}: must be an integer ≥ 1",
        )


def make_spec(
    dataset: str,
    teacher: str,
    student: str,
    loss: str,
    *,
    alpha: float | None = None,
    ce_weight: float | None = None,
    **kw: Any,
) -> RunSpec:
    """A RunSpec with the loss's default weights (``ce_weight``, ``alpha``) where not given."""
    from kdbench.losses import LOSSES

    cls = LOSSES.get(loss)
    default_ce, alpha = cls.weights(alpha)
    options = {**cls.dataset_options, **dict(kw.pop("dataset_options", ()))}
    return RunSpec(
        dataset=dataset,
        teacher=teacher,
        student=student,
        loss=loss,
        alpha=alpha,
        ce_weight=default_ce if ce_weight is None else ce_weight,
        dataset_options=tuple(sorted(options.items())),
        **kw,
    )
