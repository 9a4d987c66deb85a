"""RunSpec: stable ids across processes, what changes them, readable names, dict round trips."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from kdbench.spec import RunSpec, make_spec

KD = RunSpec(
    dataset="digits",
    teacher="cnn_t",
    student="cnn_s",
    loss="kd",
    temperature=4.0,
    alpha=0.9,
    ce_weight=0.1,
)
# Changing these breaks every stored baseline: bump them only with a deliberate id change.
KD_CASE_ID, KD_GROUP_ID = "f785589ed3193e40", "9a621c0673675f64"

WITH_OPTIONS = RunSpec(
    dataset="synthetic",
    teacher="cnn_t",
    student="cnn_s",
    loss="dkd",
    temperature=4.0,
    alpha=1.0,
    loss_options=(("nckd_weight", 8.0),),
    dataset_options=(("num_classes", 10), ("num_train", 256)),
)
# one other valid value per field: every field must change the case
OTHER = {
    "dataset": "digits",
    "teacher": "cnn_m",
    "student": "cnn_m",
    "loss": "dkd_ls",
    "temperature": 2.0,
    "alpha": 0.5,
    "ce_weight": 0.5,
    "loss_options": (("nckd_weight", 2.0),),
    "seed": 1,
    "teacher_seed": 1,
    "device": "cuda",
    "epochs": 3,
    "teacher_epochs": 3,
    "batch_size": 32,
    "recipe": "crd",
    "precision": "amp",
    "compile": True,
    "teacher_ckpt": "teacher.pt",
    "dataset_options": (("num_classes", 10), ("num_train", 128)),
    "tune": "trial",
    "channels_last": True,
}


def test_ids_are_pinned():
    assert (KD.case_id, KD.group_id) == (KD_CASE_ID, KD_GROUP_ID)


def test_ids_are_the_same_in_another_process_with_other_hash_seed():
    specs = [KD, WITH_OPTIONS, dataclasses.replace(KD, seed=2)]
    code = (
        "import json, sys; from kdbench.spec import RunSpec; "
        "print(json.dumps([[s.case_id, s.group_id] for s in "
        "map(RunSpec.from_dict, json.load(sys.stdin))]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([s.to_dict() for s in specs]),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert json.loads(out) == [[s.case_id, s.group_id] for s in specs]


def test_every_field_is_covered():
    assert set(OTHER) == {f.name for f in dataclasses.fields(RunSpec)}


@pytest.mark.parametrize("field", OTHER)
def test_every_field_changes_case_id_and_all_but_seed_change_group_id(field):
    other = dataclasses.replace(WITH_OPTIONS, **{field: OTHER[field]})
    assert other.case_id != WITH_OPTIONS.case_id
    assert (other.group_id == WITH_OPTIONS.group_id) == (field == "seed")


def test_seeds_share_a_group():
    seeds = [dataclasses.replace(KD, seed=s) for s in range(3)]
    assert len({s.group_id for s in seeds}) == 1 and len({s.case_id for s in seeds}) == 3


@pytest.mark.parametrize(
    "spec, name",
    [
        (KD, "digits-cnn_t/cnn_s-kd-T4-cpu-s0"),
        (dataclasses.replace(KD, temperature=2.5, seed=2), "digits-cnn_t/cnn_s-kd-T2.5-cpu-s2"),
        (make_spec("digits", "cnn_t", "cnn_m", "ce"), "digits-cnn_t/cnn_m-ce-cpu-s0"),
        (WITH_OPTIONS, "synthetic-cnn_t/cnn_s-dkd-T4-cpu-s0"),
        (
            dataclasses.replace(WITH_OPTIONS, tune="trial", seed=7),
            "synthetic-cnn_t/cnn_s-dkd-tune-T4-a1-c1-o8-cpu-s7",
        ),
        (dataclasses.replace(WITH_OPTIONS, tune="tuned"), "synthetic-cnn_t/cnn_s-dkd-tuned-cpu-s0"),
        (dataclasses.replace(KD, channels_last=True), "digits-cnn_t/cnn_s-kd-T4-cpu-chlast-s0"),
    ],
)
def test_readable_name(spec, name):
    assert spec.name == name


@pytest.mark.parametrize("spec", [KD, WITH_OPTIONS], ids=["kd", "options"])
def test_dict_round_trip_through_json(spec):
    d = json.loads(json.dumps(spec.to_dict()))
    # left out at their defaults: tune "", channels_last False
    assert set(d) == {f.name for f in dataclasses.fields(RunSpec)} - {"tune", "channels_last"}
    assert d["loss_options"] == dict(spec.loss_options)
    back = RunSpec.from_dict({**d, "a_future_field": 1})
    assert back == spec and back.case_id == spec.case_id and back.name == spec.name


def test_spec_is_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        KD.seed = 1
    assert len({KD, dataclasses.replace(KD), dataclasses.replace(KD, seed=1)}) == 2


@pytest.mark.parametrize(
    "loss, ce_weight, alpha", [("ce", 1.0, 0.0), ("kd", 0.1, 0.9), ("mse_logits", 0.98, 0.02)]
)
def test_make_spec_fills_the_loss_default_weights(loss, ce_weight, alpha):
    spec = make_spec("digits", "cnn_t", "cnn_s", loss, temperature=4.0 if loss == "kd" else None)
    assert spec.ce_weight == pytest.approx(ce_weight) and spec.alpha == alpha
    assert make_spec("digits", "cnn_t", "cnn_s", "kd", temperature=4.0, alpha=0.5).ce_weight == 0.5
