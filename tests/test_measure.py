"""The metrics every record carries mean what docs/reports.md says: fidelity KL, agreement, top-k,
the memory a case adds, near-chance teachers."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.run import measure


def test_fidelity_kl_is_the_mean_kl_from_teacher_to_student_at_t1():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    p_t, p_s = t.softmax(1), s.softmax(1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(1).mean().item()
    assert measure.fidelity_kl(s, t) == pytest.approx(expected, rel=1e-5)
    assert measure.fidelity_kl(t, t) == pytest.approx(0.0, abs=1e-6)
    assert measure.fidelity_kl(t + 5.0, t) == pytest.approx(0.0, abs=1e-5)  # softmax ignores shifts
    assert measure.fidelity_kl(s, t) != pytest.approx(measure.fidelity_kl(t, s), rel=1e-3)


def test_agreement_and_topk_count_percent_of_samples():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 2, 2, 1])
    assert measure.agreement(logits, teacher) == 50.0
    assert measure.topk_accuracy(logits, target, 1) == 50.0
    assert measure.topk_accuracy(logits, target, 2) == 75.0
    assert measure.topk_accuracy(logits, target, 5) == 100.0  # k clipped to the class count


@pytest.mark.parametrize(
    "top1, classes, near",
    [(3.61, 100, True), (12.0, 10, True), (25.0, 10, False), (91.9, 10, False)],
)
def test_near_chance(top1, classes, near):
    assert measure.near_chance(top1, classes) is near


def test_memory_probe_counts_what_the_case_adds_not_what_was_there():
    there = torch.ones(64 * 2**20 // 4)  # 64 MiB held before the case starts
    with measure.MemoryProbe(torch.device("cpu")) as quiet:
        pass
    with measure.MemoryProbe(torch.device("cpu")) as busy:
        added = torch.ones(128 * 2**20 // 4)  # 128 MiB written during the case
        del added
    if busy.scope != "case":
        pytest.skip("this platform cannot reset the peak resident set size")
    assert there.sum() > 0 and quiet.peak_mb < 32
    assert 100 < busy.peak_mb < 200 and not math.isnan(busy.peak_mb)
