"""The benchmark: one test per case of the profile (pair × loss × temperature × device × seed).

A case asserts sanity only; thresholds belong to reports and the regression gate.
"""

import math


def test_distill(kd_case, kd_spec):
    record = kd_case(kd_spec)
    assert record["status"] == "ok", (
        f"{kd_spec.name} diverged at epoch {record['metrics']['diverged_epoch']}")
    metrics = record["metrics"]
    assert math.isfinite(metrics["final_loss"])
    chance = 100.0 / metrics["num_classes"]
    assert metrics["top1"] > chance, f"top-1 {metrics['top1']:.2f}% is not above chance {chance:.1f}%"
