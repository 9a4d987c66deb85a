"""kdbench.gate.compare: planted regressions are caught, seed noise is not flagged."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from kdbench.gate.compare import compare, write_baseline
from kdbench.gate.decide import t_test
from kdbench.gate.thresholds import Thresholds
from kdbench.registry import KdbenchError
from kdbench.results import load_records, make_record
from kdbench.spec import make_spec

CASES = (("ce", None), ("kd", 1.0), ("kd", 4.0), ("mse_logits", None))
SPECS = {
    (loss, t, seed): make_spec("digits", "cnn_t", "cnn_s", loss, temperature=t, seed=seed, epochs=5)
    for loss, t in CASES
    for seed in range(6)
}
ENV = {
    "torch": "2.3.0",
    "kdbench_version": "0.1.0",
    "git_sha": "abc1234",
    "threads": 2,
    "device_name": "cpu",
    "python": "3.11",
}
# seed-to-seed noise of a digits case: ≈3 of 360 test images, throughput/latency ±8 %
TOP1_SD, CV = 0.8, 0.08
SPEED = Thresholds().updated(metrics=("top1", "agreement", "infer_throughput", "latency_ms"))


def draw(rng: np.random.Generator, seeds=(0, 1, 2), cases=CASES) -> list[dict]:
    """Records of the same configs as a fresh run with these seeds would give them."""

    def noisy(mean: float, cv: float = CV) -> float:
        return mean * (1.0 + rng.normal(0.0, cv))

    records = []
    for loss, t in cases:
        for seed in seeds:
            metrics = {
                "top1": 90.0 + rng.normal(0, TOP1_SD),
                "agreement": 92.0 + rng.normal(0, TOP1_SD),
                "train_throughput": noisy(5e4),
                "infer_throughput": noisy(8e5),
                "latency_ms": noisy(0.2),
                "peak_mem_mb": noisy(300.0, 0.02),
                "student_params": 2634,
                "extra_params": 0,
                "student_flops": 20736,
            }
            record = make_record(SPECS[loss, t, seed], "ok", metrics, ENV)
            record["created_at"] = f"2024-01-0{seed + 1}T00:00:00+00:00"
            records.append(record)
    return records


def planted(records: list[dict], loss: str, t: float | None, **changes) -> list[dict]:
    """A copy with ``metric=function`` applied to every seed of one case."""
    out = copy.deepcopy(records)
    for r in out:
        if (r["spec"]["loss"], r["spec"]["temperature"]) == (loss, t):
            for metric, change in changes.items():
                r["metrics"][metric] = change(r["metrics"][metric])
    return out


def decisions(result) -> dict[str, str]:
    return dict(zip(result.cases["case"], result.cases["decision"]))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_t_test_pairs_shared_seeds_and_uses_welch_otherwise():
    stats = pytest.importorskip("scipy.stats")
    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
    b = {4: 2.0, 5: 4.0, 6: 6.0, 7: 8.0, 8: 10.0}
    p, _, test = t_test(a, b)  # no shared seeds: Welch, t = 2.2514, df = 5.52
    assert test == "Welch" and p == pytest.approx(0.069134, abs=1e-6)
    shifted = {s: v + 0.5 + 0.1 * s for s, v in a.items()}
    p, _, test = t_test(a, shifted)
    assert test == "paired" and p == pytest.approx(
        stats.ttest_rel(list(shifted.values()), list(a.values())).pvalue
    )
    assert t_test(a, {s: v + 1 for s, v in a.items()})[0] == 0.0  # one shift on every seed
    assert t_test(a, a)[0] == 1.0
    assert math.isnan(t_test({0: 1.0, 1: 1.0}, {2: 2.0, 3: 2.0})[0])  # no noise estimate


def test_identical_runs_are_unchanged_not_noise(rng):
    base = draw(rng)
    result = compare(base, copy.deepcopy(base))
    assert not result.has_regression
    assert set(result.metrics["why"]) == {"identical on every seed"}


def test_planted_top1_drop_of_5_points_is_a_regression(rng):
    base = draw(rng)
    result = compare(base, planted(base, "kd", 4.0, top1=lambda v: v - 5.0))
    assert result.has_regression
    assert decisions(result)["digits-cnn_t/cnn_s-kd-T4-cpu"] == "regression"
    assert list(result.metrics.query("decision == 'regression'")["metric"]) == ["top1"]
    assert "digits-cnn_t/cnn_s-kd-T4-cpu" in result.to_markdown()


def test_planted_throughput_drop_of_30_percent_is_a_regression(rng):
    base = draw(rng)
    result = compare(base, planted(base, "ce", None, infer_throughput=lambda v: 0.7 * v), SPEED)
    assert decisions(result)["digits-cnn_t/cnn_s-ce-cpu"] == "regression"
    row = result.metrics.query("decision == 'regression'").iloc[0]
    assert (row["metric"], round(row["effect"])) == ("infer_throughput", -30)


def test_planted_top1_drop_caught_under_fresh_seed_noise():
    rng = np.random.default_rng(7)
    current = planted(draw(rng, seeds=(3, 4, 5)), "kd", 1.0, top1=lambda v: v - 5.0)
    found = compare(draw(rng), current).metrics.query("decision == 'regression'")
    assert list(found["case"] + ":" + found["metric"]) == ["digits-cnn_t/cnn_s-kd-T1-cpu:top1"]


def test_seed_noise_false_alarm_rate_at_most_5_percent():
    """200 comparisons of same-config runs with different seeds (noise only)."""
    rng = np.random.default_rng(2024)
    alarms = sum(
        compare(draw(rng, seeds=(0, 1, 2)), draw(rng, seeds=(3, 4, 5))).has_regression
        for _ in range(200)
    )
    rate = alarms / 200
    print(
        f"\nseed-noise false-alarm rate: {rate:.1%} ({alarms}/200 comparisons of "
        f"{len(CASES)} cases; top-1 sd {TOP1_SD} points, speed cv {CV:.0%})"
    )
    assert rate <= 0.05


def test_improvements_do_not_fail(rng):
    base = draw(rng)
    result = compare(
        base,
        planted(base, "kd", 4.0, top1=lambda v: v + 5.0, infer_throughput=lambda v: 2 * v),
        SPEED,
    )
    assert not result.has_regression
    assert decisions(result)["digits-cnn_t/cnn_s-kd-T4-cpu"] == "improvement"


def test_new_and_missing_cases_are_listed_and_do_not_fail(rng):
    base = draw(rng, cases=CASES[:3])
    current = draw(rng, cases=CASES[1:])
    result = compare(base, current)
    assert decisions(result)["digits-cnn_t/cnn_s-ce-cpu"] == "missing"
    assert decisions(result)["digits-cnn_t/cnn_s-mse_logits-cpu"] == "new"
    assert result.counts()["new"] == result.counts()["missing"] == 1
    assert not result.has_regression
    md = result.to_markdown()
    assert "#### New (1)" in md and "#### Missing (1)" in md


def test_one_seed_falls_back_to_tolerance(rng):
    base = draw(rng, seeds=(0,))
    th = Thresholds()
    small = compare(base, planted(base, "kd", 4.0, top1=lambda v: v - 1.5), th)
    assert not small.has_regression  # > min effect 1.0 but within tolerance 2.0
    assert any("within the tolerance 2 points" in w for w in small.metrics["why"])
    assert compare(base, planted(base, "kd", 4.0, top1=lambda v: v - 3.0), th).has_regression


def test_a_value_measured_once_per_session_uses_the_tolerance(rng):
    """Inference speed is measured once per architecture and session, so every seed carries the
    same value: no seed noise to test against; a change must beyond the tolerance (2 × 15 %)."""
    base = draw(rng)
    for r in base:
        r["metrics"]["latency_ms"] = 0.19
    current = planted(base, "kd", 4.0, latency_ms=lambda v: 1.25 * v)
    for r in current:  # measured in another session: other seeds, the same one value
        r["spec"]["seed"] += 10
    slower = compare(base, current, SPEED)
    assert not slower.has_regression
    (why,) = slower.metrics.query("metric == 'latency_ms' and case.str.contains('kd-T4')")["why"]
    assert "within the tolerance 30 %" in why and "no noise estimate" in why
    for r in current:
        if r["spec"]["loss"] == "kd" and r["spec"]["temperature"] == 4.0:
            r["metrics"]["latency_ms"] = 0.19 * 1.4
    assert compare(base, current, SPEED).has_regression


def test_case_that_now_diverges_is_a_regression(rng):
    base = draw(rng)
    current = copy.deepcopy(base)
    for r in current:
        if r["spec"]["loss"] == "mse_logits":
            r["status"], r["metrics"] = "diverged", {"diverged_epoch": 2, "last_finite_loss": 3.2}
    result = compare(base, current)
    row = result.metrics.query("decision == 'regression'").iloc[0]
    assert (row["case"], row["metric"]) == ("digits-cnn_t/cnn_s-mse_logits-cpu", "status")
    assert "3/3 ok" in result.to_markdown() and "0/3 ok" in result.to_markdown()


def test_thresholds_from_pyproject_then_overrides(tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text(
        "[tool.kdbench.compare]\nalpha = 0.05\nmetrics = ['top1']\nmin_effect = { top1 = 0.5 }\n"
    )
    th = Thresholds.load(config, min_effect={"top1": 2.0})
    assert (th.alpha, th.metrics, th.min_effect["top1"], th.tolerance_for("top1")) == (
        0.05,
        ("top1",),
        2.0,
        4.0,
    )
    with pytest.raises(KdbenchError, match=r"no config file or folder at .*absent\.toml"):
        Thresholds.load(tmp_path / "absent.toml")
    inner = tmp_path / "project" / "suites"
    inner.mkdir(parents=True)  # from a folder inside the project: the nearest table above it
    assert Thresholds.load(inner).metrics == ("top1",)
    (tmp_path / "project" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert Thresholds.load(inner).metrics == ("top1",)  # a pyproject without the table is skipped
    config.write_text("[tool.kdbench.compare]\nmin_effect = { top_1 = 0.5 }\n")
    with pytest.raises(KdbenchError, match="unknown metric 'top_1'"):
        Thresholds.load(config)


def test_min_effect_override_changes_the_decision(rng):
    base = draw(rng, seeds=(0,))
    current = planted(base, "ce", None, top1=lambda v: v - 0.7)
    assert not compare(base, current).has_regression
    assert compare(base, current, Thresholds().updated(min_effect={"top1": 0.3})).has_regression


def test_unusable_input_raises(rng):
    base = draw(rng)
    with pytest.raises(KdbenchError, match="no shared cases"):
        compare(base, [dict(r, group_id="other") for r in base])
    with pytest.raises(KdbenchError, match="schema mismatch"):
        compare(base, [dict(r, schema=99) for r in base])


def test_json_output_and_refreshed_baseline(rng, tmp_path):
    base = draw(rng)
    result = compare(base, planted(base, "kd", 4.0, top1=lambda v: v - 5.0))
    data = json.loads(result.to_json())
    assert data["has_regression"] and data["counts"]["regression"] == 1
    assert not math.isnan(data["changes"][0]["baseline"])
    path = tmp_path / "baseline.jsonl"
    older = [dict(r, created_at="2023-01-01T00:00:00+00:00", metrics={"top1": 1.0}) for r in base]
    assert write_baseline(older + base, path) == len(base)
    assert compare(load_records([path]), base).counts()["unchanged"] == len(CASES)
