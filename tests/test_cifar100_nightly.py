"""cifar100-nightly: a subset of cifar100-crd on a shorter schedule for a GPU runner, at the
authors' per-pair settings, within its stated GPU-time estimate."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kdbench.matrix.paper_settings import CIFAR100_PAIR_SETTINGS
from kdbench.matrix.profiles import (
    CIFAR100_NIGHTLY_ESTIMATE,
    CIFAR100_NIGHTLY_GPU_HOURS,
    PROFILES,
    GpuEstimate,
)
from kdbench.publish.summary import PUBLISHED_METHOD
from kdbench.recipes import RECIPES
from kdbench.reference import published

NIGHTLY = PROFILES.get("cifar100-nightly")


@pytest.mark.parametrize("device,precision", [("cpu", "fp32"), ("cuda", "amp")])
def test_nightly_is_a_shorter_subset_of_cifar100_crd(device, precision):
    crd = PROFILES.get("cifar100-crd")
    specs = NIGHTLY.specs((device,))  # every RunSpec is validated as it is made
    assert {(s.teacher, s.student) for s in specs} < set(crd.pairs)
    assert {s.loss for s in specs} < set(crd.loss_names())
    assert len(specs) == len(NIGHTLY.pairs) * len(NIGHTLY.loss_names()) * NIGHTLY.seeds
    assert {(s.dataset, s.recipe, s.precision, s.device) for s in specs} == {
        ("cifar100", "crd", precision, device)
    }
    assert {s.epochs for s in specs} == {s.teacher_epochs for s in specs} == {
        24
    } and NIGHTLY.epochs < crd.epochs
    assert len({s.case_id for s in specs}) == len(specs)


def test_the_crd_schedule_is_scaled_to_the_shorter_run():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    scheduler = RECIPES.get("crd").scheduler(optimizer, NIGHTLY.epochs)
    assert sorted(scheduler.milestones) == [15, 18, 21]  # 150/180/210 of 240


def test_every_published_pair_and_method_runs_at_its_paper_settings():
    rows = published()
    rows = rows[~rows["method"].isin(PUBLISHED_METHOD)].dropna(subset=["top1"])
    numbers = {(r.teacher, r.student, r.method) for r in rows.itertuples()}
    specs = [s for s in NIGHTLY.specs(("cuda",)) if (s.teacher, s.student, s.loss) in numbers]
    assert len(specs) == 10  # kd, dkd, fitnet, at, crd on both pairs (ce has no such number)
    for spec in specs:
        settings = CIFAR100_PAIR_SETTINGS[(spec.teacher, spec.student)][spec.loss]
        weights = {k: settings[k] for k in ("temperature", "alpha", "ce_weight") if k in settings}
        assert {k: getattr(spec, k) for k in weights} == weights, spec.name
        options = {k: v for k, v in settings.items() if k not in weights}
        assert dict(spec.loss_options) == options, spec.name


def test_its_cases_fit_the_stated_gpu_time():
    """Fails when cases, epochs or teachers are added without updating the estimate."""
    specs = NIGHTLY.specs(("cuda",))
    assert CIFAR100_NIGHTLY_ESTIMATE.hours(specs) == pytest.approx(
        CIFAR100_NIGHTLY_GPU_HOURS, abs=0.05
    )
    assert CIFAR100_NIGHTLY_GPU_HOURS <= 2.0
    assert f"≈ {CIFAR100_NIGHTLY_GPU_HOURS:g} GPU-hours" in NIGHTLY.description


def test_gpu_estimate_counts_each_teacher_once_and_initialisation_stages():
    estimate = GpuEstimate(case_rate=100, teacher_rate=50, images=1000, case_overhead_s=5)
    profile = dataclasses.replace(NIGHTLY, losses=("kd", "ft"), epochs=24, teacher_epochs=12)
    kd, ft = (
        next(s for s in profile.specs(("cuda",)) if s.loss == loss and s.teacher == "vgg13")
        for loss in ("kd", "ft")
    )
    teacher_s = 12 * 1000 / 50
    assert estimate.hours([kd]) * 3600 == pytest.approx(24 * 10 + 5 + teacher_s)
    # FT's initialisation stage: 30 of 240 epochs, 3 of 24
    assert estimate.hours([kd, ft]) * 3600 == pytest.approx(24 * 10 + 27 * 10 + 10 + teacher_s)
    given = dataclasses.replace(kd, teacher_ckpt="/weights/vgg13.pt")
    assert estimate.hours([given]) * 3600 == pytest.approx(24 * 10 + 5)
