"""The regression gate catches a distillation method that stopped working and stays quiet on
runs that differ only in seeds or threads: real runs whose distillation term was zeroed,
planted collapses in real records, and the detection and false-alarm rates of
benchmarks/gate_power.py measured with the nightly's thresholds (results/gate/gate.toml, chosen
on seeds 0–5) on the committed runs of seeds 6–11, which played no part in choosing them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kdbench.cli import main
from kdbench.gate.compare import compare
from kdbench.gate.decide import decide_gain
from kdbench.gate.thresholds import Thresholds
from kdbench.results import load_records

REPO = Path(__file__).resolve().parents[1]
# runs of the fashion-gate profile (benchmarks/README.md): its nightly baseline (seeds 0-2), a
# run on seeds 3-5 and one on seeds 0-2 at two threads (where the thresholds were chosen), and
# the held-out run on seeds 6-11 (where their rates are measured)
SEEDS_A = REPO / "results" / "baseline-fashion-gate.jsonl"
SEEDS_B, THREADS, HELD_OUT, NIGHTLY = (
    REPO / "results" / "gate" / name
    for name in ("seeds-3-5.jsonl", "seeds-0-2-threads2.jsonl", "seeds-6-11.jsonl", "gate.toml")
)  # NIGHTLY: its thresholds
ZERO = """
import kdbench.losses.at as at
import kdbench.losses.kd as kd

for cls in (kd.KD, at.AT):  # the term stopped acting
    cls.forward = lambda self, s, t, y, forward=cls.forward: 0.0 * forward(self, s, t, y)
"""


@pytest.fixture(scope="module")
def power(script):
    return script("benchmarks/gate_power.py")


def test_a_real_run_whose_distillation_terms_were_zeroed_fails_the_gate(kd_suite, pytester, capsys):
    args = (
        "--kd-profile",
        "quick",
        "--kd-device",
        "cpu",
        "--kd-seeds",
        "3",
        "--kd-epochs",
        "8",
        "-k",
        "cnn_t/cnn_s-kd-T4- or cnn_t/cnn_s-at- or cnn_t/cnn_s-ce-",
    )
    kd_suite(*args, results=pytester.path / "base").assert_outcomes(passed=9)
    pytester.makeconftest(ZERO)  # a subprocess: the patch must not outlive the run
    kd_suite(*args, results=pytester.path / "broken", subprocess=True)
    capsys.readouterr()
    status = main(
        [
            "compare",
            str(pytester.path / "base" / "runs"),
            str(pytester.path / "broken" / "runs"),
            "--format",
            "json",
        ]
    )
    changes = json.loads(capsys.readouterr().out)["changes"]
    why = {
        (c["case"].split("-")[2], c["check"]): c["why"]
        for c in changes
        if c["decision"] == "regression"
    }
    assert status == 1
    # kd keeps CE at weight 0.1: a worse student than ce; at keeps CE at weight 1: ce to the bit
    assert why[("kd", "value")].startswith("drop of")
    assert why[("at", "gain over ce")].startswith("no-op: identical to ce on every seed")


def test_a_method_identical_to_ce_on_every_seed_is_a_no_op_whatever_its_gain():
    th = Thresholds()
    base = {0: 0.4, 1: -0.3, 2: 0.1}  # a gain within noise: the gain check has nothing to lose
    row = decide_gain(base, {3: 0.0, 4: 0.0, 5: 0.0}, "top1", th)
    assert row["decision"] == "regression" and row["why"].startswith("no-op")
    assert decide_gain(base, {3: 0.0, 4: 0.01, 5: 0.0}, "top1", th) is None
    assert decide_gain({0: 0.0, 1: 0.0}, {0: 0.0, 1: 0.0}, "top1", th) is None  # ce all along


def test_the_gain_check_has_its_own_thresholds(tmp_path):
    config = tmp_path / "gate.toml"
    config.write_text(
        "[tool.kdbench.compare]\nalpha = 0.05\nmin_effect = { top1 = 1.5 }\n"
        "gain_alpha = 0.1\ngain_min_effect = { top1 = 0.5 }\n"
    )
    th = Thresholds.load(config)
    assert (th.alpha_gain, th.gain_min_for("top1"), th.gain_min_for("agreement")) == (0.1, 0.5, 1.0)
    base, cur = {0: 1.0, 1: 1.2, 2: 0.8}, {3: 0.2, 4: 0.3, 5: 0.25}  # lost 0.75 points of gain
    assert decide_gain(base, cur, "top1", th)["decision"] == "regression"
    assert (
        decide_gain(base, cur, "top1", th.updated(gain_min_effect={"top1": 1.0}))["decision"]
        == "unchanged"
    )


def _gate_run(path: Path) -> list[dict]:
    if not path.exists():
        pytest.fail(f"{path} is missing: the gate's committed records (benchmarks/README.md)")
    return load_records([path], warn=False)


def test_seeds_only_and_thread_changes_pass_the_gate():
    base = _gate_run(SEEDS_A)
    for other, subset in ((_gate_run(SEEDS_B), False), (_gate_run(THREADS), True)):
        result = compare(base, other, Thresholds.load(NIGHTLY), allow_missing=subset)
        assert not result.failed, result.cases[result.cases["decision"].ne("unchanged")]
        assert result.cases["decision"].eq("unchanged").any()


def test_a_planted_one_point_collapse_of_every_method_fails_the_gate(power):
    base, current = _gate_run(SEEDS_A), _gate_run(SEEDS_B)
    every = power.methods(power.Pool.of(base + current))
    assert [m for m in every if m.qualifies], "no method beats ce by 1 point: nothing to catch"
    result = compare(
        base, power.collapse(current, {m.group for m in every}), Thresholds.load(NIGHTLY)
    )
    decisions = result.cases.set_index("group_id")["decision"]
    assert result.failed
    assert {m.name: decisions[m.group] for m in every} == {m.name: "regression" for m in every}


def test_detection_and_false_alarm_rates_out_of_sample(power, capsys):
    chosen_on = {r["spec"]["seed"] for path in (SEEDS_A, SEEDS_B) for r in _gate_run(path)}
    pool = power.Pool.of(_gate_run(HELD_OUT))
    assert not chosen_on & set(pool.seeds()), "the rates must be measured on other seeds"
    rates = power.measure(pool, 3, 20, Thresholds.load(NIGHTLY), random.Random(0))
    target = [m.group for m in power.methods(pool) if m.qualifies]
    caught, planted = rates.detection(target)
    near, _ = rates.detection(target, near=True)
    with capsys.disabled():
        print(
            f"\ngate on seeds {pool.seeds()}, {len(pool.records)} groups, every split into "
            f"3 + 3: collapses caught {caught}/{planted} ({near} one test image off ce), "
            f"false alarms {rates.false_alarm_run_rate:.1%} of runs, "
            f"{rates.false_alarm_group_rate:.2%} of case comparisons"
        )
    assert target, "no method beats ce by 1 point on the held-out seeds: nothing to catch"
    assert caught / planted >= 0.95, rates.caught
    assert rates.false_alarm_run_rate <= 0.05
