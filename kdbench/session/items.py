"""The test items of a profile: ``kd_spec`` / ``kd_model`` parametrization with readable ids
and markers, and the checks run on the selected items before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from kdbench import results
from kdbench.losses import LOSSES
from kdbench.models import build_model
from kdbench.run.checkpoints import load_checkpoint
from kdbench.session.state import KdSession
from kdbench.spec import RunSpec, teacher_options

# Markers. `pytest -k` matches marker names as substrings too, so none contains a loss name:
# `-k crd` selects the crd cases and nothing else.
MARKERS = (
    "pair_case: a teacher/student case generated from --kd-profile",
    "cpu: a case that runs on the CPU",
    "cuda: a case that needs a CUDA GPU (skipped without one)",
    "logits_only: a distillation case whose loss uses only logits",
    "hidden_layers: a distillation case whose loss uses intermediate features",
    "student_alone: the ce baseline (the student trained without a teacher)",
    "tuning: a tuning trial: one grid point of a method on the tuning seed",
    "tuned: a case at the setting its tuning trials chose on validation",
)


def marks_of(spec: RunSpec) -> list[pytest.MarkDecorator]:
    loss = LOSSES.get(spec.loss)
    kind = (
        pytest.mark.student_alone
        if not loss.needs_teacher
        else pytest.mark.logits_only
        if set(loss.taps) <= {"logits"}
        else pytest.mark.hidden_layers
    )
    stage = {"trial": [pytest.mark.tuning], "tuned": [pytest.mark.tuned]}.get(spec.tune, [])
    return [pytest.mark.pair_case, kind, *stage, *device_marks(spec.device)]


def device_marks(device: str) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, device)]
    if device == "cuda":
        marks.append(
            pytest.mark.skipif(
                not torch.cuda.is_available(), reason="CUDA case: no CUDA GPU on this machine"
            )
        )
    return marks


@dataclass(frozen=True)
class ModelCase:
    """One model of a profile on one device, for the inference benchmarks."""

    dataset: str
    dataset_options: tuple[tuple[str, Any], ...]
    model: str
    device: str

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model}-{self.device}"


def model_cases(specs: list[RunSpec]) -> list[ModelCase]:
    seen = {
        ModelCase(s.dataset, s.dataset_options, m, s.device): None
        for s in specs
        for m in (s.teacher, s.student)
    }
    return list(seen)


def case_spec(item: pytest.Item) -> RunSpec | ModelCase | None:
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    return params.get("kd_spec", params.get("kd_model"))


def planned_case(item: pytest.Item, resumed: dict[str, Any]) -> RunSpec | ModelCase | None:
    """``case_spec`` of an item that will run; None for one skipped before it starts: a
    ``skipif`` whose condition holds at collection (a CUDA case without a GPU) or a case
    ``resumed`` (``--kd-resume``: case_id → its earlier record). The progress display and its
    ETA count only these."""
    spec = case_spec(item)
    if any(m.args and m.args[0] is True for m in item.iter_markers("skipif")):
        return None
    if isinstance(spec, RunSpec) and spec.case_id in resumed:
        return None
    return spec


def parametrize(metafunc: pytest.Metafunc, specs: list[RunSpec]) -> None:
    if "kd_spec" in metafunc.fixturenames:
        metafunc.parametrize(
            "kd_spec", [pytest.param(s, id=s.name, marks=marks_of(s)) for s in specs]
        )
    if "kd_model" in metafunc.fixturenames:
        metafunc.parametrize(
            "kd_model",
            [pytest.param(m, id=m.name, marks=device_marks(m.device)) for m in model_cases(specs)],
        )


DESELECTED = pytest.StashKey[int]()  # the profile's items that -k / -m deselected


def count_deselected(items: list[pytest.Item]) -> None:
    cases = sum(case_spec(item) is not None for item in items)
    if cases:
        stash = items[0].config.stash
        stash[DESELECTED] = stash.get(DESELECTED, 0) + cases


def nothing_selected(config: pytest.Config, specs: list[RunSpec]) -> str | None:
    """When ``-k`` left none of the profile's items, the line that says what its ids offer;
    else None."""
    keyword, deselected = config.option.keyword, config.stash.get(DESELECTED, 0)
    if not (keyword and deselected and specs):
        return None

    def offered(values) -> str:
        return ", ".join(dict.fromkeys(map(str, values)))

    return (
        f"kdbench: -k {keyword!r} selects none of the {deselected} tests of profile "
        f"{config.getoption('kd_profile')!r}; their ids name pairs: "
        f"{offered(s.pair for s in specs)}; losses: {offered(s.loss for s in specs)}; "
        f"devices: {offered(s.device for s in specs)}; seeds: "
        f"{offered(f's{s.seed}' for s in specs)} (`kdbench list profiles`; ids as "
        f"`pytest --collect-only -q` lists them)"
    )


def check_before_training(kd_session: KdSession, specs: list[RunSpec | ModelCase]) -> None:
    """Raise ``KdbenchError`` when records could not be written, data are missing or
    unreadable, or a teacher checkpoint does not fit its architecture."""
    results.check_writable(kd_session.results_dir / "runs")
    engine = kd_session.get_engine()
    for dataset, options in {
        (s.dataset, o)
        for s in specs
        for o in (s.dataset_options, teacher_options(s.dataset_options))
    }:
        engine.host_data(dataset, options)
    checkpoints = dict.fromkeys(  # each checkpointed teacher once, in order
        (s.teacher, ckpt, s.dataset, s.dataset_options)
        for s in specs
        if isinstance(s, RunSpec) and (ckpt := s.teacher_ckpt)
    )
    for teacher, ckpt, dataset, options in checkpoints:
        data = engine.host_data(dataset, options)
        with torch.device("meta"):
            model = build_model(teacher, data.num_classes, data.input_shape)
        load_checkpoint(ckpt, teacher, model.to_empty(device="cpu"))


def group_by_teacher(items: list[pytest.Item]) -> None:
    """With ``--dist loadgroup``, keep a teacher's cases on one worker: the group goes after "@"
    in the node id, which is what xdist itself does with ``xdist_group`` marks on its workers.
    A mark is not used because marker names are ``-k`` keywords: ``-k dist`` would select every
    case through "xdist_group"."""
    for item in items:
        spec = case_spec(item)
        if isinstance(spec, RunSpec):
            group = f"{spec.dataset}-{spec.teacher}-{spec.device}"
            # pytest < 9 keeps the node id there (so does xdist for xdist_group marks)
            item._nodeid = f"{item.nodeid}@{group}"  # type: ignore[attr-defined]
