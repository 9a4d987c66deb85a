"""The regression gate catches a distillation method that stopped working and stays quiet on
runs that differ only in seeds or threads: planted collapses in real records, a real run whose
KD term was zeroed, and the detection and false-alarm rates of benchmarks/gate_power.py on the
committed records of the nightly gate's profile."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kdbench.cli import main
from kdbench.gate.compare import compare
from kdbench.gate.thresholds import Thresholds
from kdbench.results import load_records

REPO = Path(__file__).resolve().parents[1]
# runs of the fashion-gate profile (benchmarks/README.md): its nightly baseline (seeds 0-2), a
# run on seeds 3-5 and one on seeds 0-2 at two threads
SEEDS_A = REPO / "results" / "baseline-fashion-gate.jsonl"
SEEDS_B, THREADS, NIGHTLY = (REPO / "results" / "gate" / name for name in (
    "seeds-3-5.jsonl", "seeds-0-2-threads2.jsonl", "gate.toml"))  # NIGHTLY: its thresholds
ZERO_KD = """
import kdbench.losses.kd as kd

forward = kd.KD.forward
kd.KD.forward = lambda self, s, t, y: 0.0 * forward(self, s, t, y)  # the term stopped acting
"""


@pytest.fixture(scope="module")
def power(script):
    return script("benchmarks/gate_power.py")


def test_a_real_run_whose_kd_term_was_zeroed_fails_the_gate(kd_suite, pytester):
    args = ("--kd-profile", "quick", "--kd-device", "cpu", "--kd-seeds", "3", "--kd-epochs", "8",
            "-k", "cnn_t/cnn_s-kd-T4 or cnn_t/cnn_s-ce-")
    kd_suite(*args, results=pytester.path / "base").assert_outcomes(passed=6)
    pytester.makeconftest(ZERO_KD)  # a subprocess: the patch must not outlive the run
    kd_suite(*args, results=pytester.path / "broken", subprocess=True)
    status = main(["compare", str(pytester.path / "base" / "runs"),
                   str(pytester.path / "broken" / "runs")])
    assert status == 1


def _gate_run(path: Path) -> list[dict]:
    if not path.exists():
        pytest.fail(f"{path} is missing: the gate's committed records (benchmarks/README.md)")
    return load_records([path], warn=False)


def _ok(records: list[dict]) -> list[dict]:
    return [r for r in records if r["status"] == "ok"]


def test_seeds_only_and_thread_changes_pass_the_gate():
    base = _gate_run(SEEDS_A)
    for other, subset in ((_gate_run(SEEDS_B), False), (_gate_run(THREADS), True)):
        result = compare(base, other, Thresholds.load(NIGHTLY), allow_missing=subset)
        assert not result.failed, result.cases[result.cases["decision"].ne("unchanged")]
        assert result.cases["decision"].eq("unchanged").any()


def test_every_qualifying_method_collapsed_to_ce_fails_the_gate(power):
    base, current = _ok(_gate_run(SEEDS_A)), _ok(_gate_run(SEEDS_B))
    qualifying = power.qualifying(base)
    assert qualifying, "no method of the gate profile beats ce beyond seed noise: nothing to catch"
    for group in qualifying:
        result = compare(base, power.collapse(current, group), Thresholds.load(NIGHTLY))
        decision = result.cases.set_index("group_id").loc[group, "decision"]
        assert result.failed and decision == "regression", qualifying[group]


def test_detection_and_false_alarm_rates_on_the_committed_records(power, capsys):
    runs = [_gate_run(name) for name in (SEEDS_A, SEEDS_B)]
    pool = power.Pool.of([r for run in runs for r in run])
    rates = power.measure(pool, 3, 20, Thresholds.load(NIGHTLY), random.Random(0))
    with capsys.disabled():
        print(f"\ngate on {len(pool.records)} groups, every split of 6 seeds into 3 + 3: detection "
              f"{rates.detection_rate:.1%} ({rates.caught}/{rates.planted}), false alarms "
              f"{rates.false_alarm_run_rate:.1%} of runs, {rates.false_alarm_group_rate:.2%} of "
              f"case comparisons")
    assert rates.planted > 0 and rates.detection_rate >= 0.95, rates.missed
    assert rates.false_alarm_run_rate <= 0.05
