"""Every published CIFAR-100 number has the settings that produced it declared, and they are
valid kdbench settings."""

from __future__ import annotations

import pytest

from kdbench.losses import LOSSES
from kdbench.matrix.paper_settings import CIFAR100_PAIR_SETTINGS
from kdbench.publish.summary import PUBLISHED_METHOD
from kdbench.reference import published
from kdbench.spec import make_spec

WEIGHTS = {"alpha", "ce_weight"}
DECLARED = sorted(
    (t, s, loss) for (t, s), losses in CIFAR100_PAIR_SETTINGS.items() for loss in losses
)


def published_methods():
    """The published rows of distillation methods (not the teacher and student rows)."""
    rows = published()
    return rows[~rows["method"].isin(PUBLISHED_METHOD)]


def test_every_published_number_has_its_settings_declared():
    rows = published_methods().dropna(subset=["top1"])
    missing = sorted({(r.teacher, r.student, r.method) for r in rows.itertuples()} - set(DECLARED))
    assert not missing, f"no settings declared for {missing}"


def test_every_declaration_belongs_to_a_published_row():
    rows = published_methods()
    assert set(DECLARED) <= {(r.teacher, r.student, r.method) for r in rows.itertuples()}


@pytest.mark.parametrize("teacher,student,loss", DECLARED)
def test_declared_settings_are_valid_for_the_loss(teacher, student, loss):
    settings = CIFAR100_PAIR_SETTINGS[(teacher, student)][loss]
    cls = LOSSES.get(loss)
    assert settings.keys() <= set(cls.options) | WEIGHTS | {"temperature"}
    assert cls.uses_temperature == ("temperature" in settings)
    options = {k: v for k, v in settings.items() if k in cls.options}
    ce_weight, alpha = cls.weights(settings.get("alpha"))
    # RunSpec validates names and ranges: temperature > 0, alpha in [0, 1], ce_weight ≥ 0,
    # options finite ≥ 0, models and loss registered, the data options the loss trains on
    make_spec(
        "cifar100",
        teacher,
        student,
        loss,
        temperature=settings.get("temperature"),
        alpha=alpha,
        ce_weight=settings.get("ce_weight", ce_weight),
        loss_options=tuple(sorted(options.items())),
        recipe="crd",
        epochs=240,
    )
    cls(temperature=settings.get("temperature"), **options)


@pytest.mark.parametrize(
    "pair,beta",
    [
        (("resnet56", "resnet20"), 2.0),
        (("wrn_40_2", "wrn_16_2"), 6.0),
        (("vgg13", "vgg8"), 6.0),
        (("resnet32x4", "resnet8x4"), 8.0),
        (("resnet110", "resnet32"), 2.0),
    ],
)
def test_dkd_beta_follows_mdistiller_configs(pair, beta):
    dkd = CIFAR100_PAIR_SETTINGS[pair]["dkd"]
    assert dkd["nckd_weight"] == beta
    assert (dkd["tckd_weight"], dkd["temperature"], dkd["ce_weight"]) == (1.0, 4.0, 1.0)
    assert dkd["warmup"] * 240 == pytest.approx(20)


def test_known_values_of_the_other_sources():
    settings = CIFAR100_PAIR_SETTINGS
    assert settings[("vgg13", "mobilenetv2")]["kd"] == {
        "temperature": 4.0,
        "alpha": 0.9,
        "ce_weight": 0.1,
    }  # RepDistiller -r 0.1 -a 0.9
    assert settings[("resnet50", "vgg8")]["at"]["beta"] == 1000.0  # RepDistiller -b 1000
    assert settings[("resnet110", "resnet20")]["kd_ls"] == {
        "temperature": 4.0,
        "alpha": 1.0,
        "ce_weight": 0.1,
        "kd_weight": 12.0,
    }
    dkd_ls = settings[("resnet56", "resnet20")]["dkd_ls"]  # log dkd,resnet56,resnet20,3,18,2.0
    assert (dkd_ls["temperature"], dkd_ls["tckd_weight"], dkd_ls["nckd_weight"]) == (3, 18, 36)
    assert settings[("resnet32x4", "shufflenetv1")]["dist"] == {
        "temperature": 4.0,
        "alpha": 1.0,
        "ce_weight": 1.0,
        "beta": 2.0,
        "gamma": 2.0,
    }
