"""kdbench.publish.findings: what the Markdown report says in words, on small record sets whose
answer is known, and on the committed Fashion-MNIST records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kdbench.publish import findings
from kdbench.publish.markdown import build_report
from kdbench.publish.summary import load_published, summarize
from kdbench.results import make_record, read, records_frame
from kdbench.spec import make_spec

REPO = Path(__file__).resolve().parents[1]
ENV = {
    "torch": "2.3.0",
    "python": "3.11.7",
    "device_name": "cpu",
    "threads": 1,
    "git_sha": "abc1234",
    "kdbench_version": "0.1.0",
}


def record(loss, seed, top1, val, t=None, epochs=5):
    spec = make_spec("digits", "cnn_t", "cnn_s", loss, temperature=t, seed=seed, epochs=epochs)
    return make_record(
        spec, "ok", {"top1": top1, "val_top1": val, "teacher_top1": 98.0, "num_classes": 10}, ENV
    )


CE = [record("ce", s, v, v) for s, v in enumerate((90.0, 91.0, 92.0))]  # std 1.0


def summary(records):
    return summarize(records_frame(records))


def test_counts_methods_beyond_twice_the_seed_std_of_ce():
    records = CE + [record("kd", s, 95.0 + s, 95.0, t=4.0) for s in range(3)]  # +5: beyond 2
    records += [record("mse_logits", s, 92.0 + s, 99.0) for s in range(3)]  # +1: within noise
    records += [record("rkd", s, 85.0 + s, 85.0) for s in range(3)]  # −5: below
    [line] = findings.findings(summary(records))
    assert line == (
        "- **cnn_t/cnn_s**: teacher 98.00 %, `ce` 91.00 ± 1.00 %; best on validation: "
        "`mse_logits` at 93.00 % test (+2.00 points). 1 of 3 methods beat `ce` by more than "
        "twice its seed std (kd); 1 fall below it by as much (rkd)."
    )


def test_selection_says_where_the_test_set_would_have_chosen_otherwise():
    records = CE + [record("kd", s, 93.0, 97.0, t=1.0) for s in range(3)]
    records += [record("kd", s, 95.0, 94.0, t=4.0) for s in range(3)]
    assert findings.selection(summary(records)) == (
        "Where the test set would have chosen otherwise here: kd on cnn_t/cnn_s: T=1 on "
        "validation, T=4 on test. The tables show the validation choice."
    )
    alike = CE + [record("kd", s, 95.0, 97.0, t=4.0) for s in range(3)]
    assert findings.selection(summary(alike)) == "Here validation and test happen to choose alike."


def test_one_ce_seed_has_no_std_to_count_against():
    [line] = findings.findings(summary([*CE[:1], record("kd", 0, 95.0, 95.0, t=4.0)]))
    assert line == (
        "- **cnn_t/cnn_s**: teacher 98.00 %, `ce` 90.00 %; best on validation: `kd` at 95.00 % "
        "test (+5.00 points). `ce` has one seed: no seed std to tell a gain from noise."
    )


def test_a_pair_without_ce_or_without_methods_says_nothing():
    assert findings.findings(summary([record("kd", 0, 95.0, 95.0, t=4.0)])) == []
    assert findings.findings(summary(CE)) == []


def test_each_setting_gets_its_own_findings():
    records = CE + [record("kd", s, 95.0, 95.0, t=4.0) for s in range(3)]
    records += [record("ce", s, 80.0, 80.0, epochs=2) for s in range(3)]
    records += [record("kd", s, 81.0, 81.0, t=4.0, epochs=2) for s in range(3)]
    lines = findings.lines(summary(records))
    assert [line for line in lines if line.startswith("###")] == ["### epochs 2", "### epochs 5"]
    assert sum(line.startswith("- **cnn_t/cnn_s**") for line in lines) == 2


def test_a_setting_without_findings_opens_with_its_selection_note():
    lines = findings.lines(summary([record("kd", s, 95.0, 95.0, t=4.0) for s in range(3)]))
    assert lines == ["Here validation and test happen to choose alike.", ""]


def test_the_markdown_report_opens_with_the_findings():
    frame = records_frame(read([REPO / "results" / "fashion"]).records)
    text = build_report(frame).to_markdown()
    section = text.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    assert section.count("- **fmnist_t/") == 2
    assert "best on validation: `wttm` at 86.71 % test (+3.16 points)" in section
    assert "Here validation and test happen to choose alike." in section
    assert text.index("## Findings") < text.index("## Leaderboard")


def test_names_from_records_stay_data_in_the_findings():
    records = CE + [record("kd", s, 95.0, 95.0, t=4.0) for s in range(3)]
    for r in records:
        r["spec"]["student"] = "<b>x</b>\n# owned"
    text = build_report(records_frame(records)).to_markdown()
    section = text.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    assert "<b>" not in section and "\n# owned" not in section
    assert "cnn_t/&lt;b&gt;x&lt;/b&gt; # owned" in section


def published_table(pair, tops):
    teacher, student = pair.split("/")
    rows = [("paper", m, teacher, student, t, "") for m, t in tops.items()]
    rows += [("paper", "student", teacher, student, 70.0, "")]  # ce's counterpart: left out
    return pd.DataFrame(rows, columns=["source", "method", "teacher", "student", "top1", "note"])


FIVE = {"kd": 71.0, "dist": 72.0, "at": 73.0, "rkd": 74.0, "sp": 75.0}


def five_methods(order):
    records = list(CE)
    for rank, loss in enumerate(order):
        t = 4.0 if loss in ("kd", "dist") else None
        records += [record(loss, s, 90.0 + rank, 90.0, t=t) for s in range(2)]
    return summary(records)


def test_rank_agreement_with_the_published_table_is_spearmans_rho_of_shared_methods():
    same = five_methods(["kd", "dist", "at", "rkd", "sp"])
    [line, _, caveat] = findings.published_agreement(same, published_table("cnn_t/cnn_s", FIVE))
    assert line.startswith(
        "- **cnn_t/cnn_s** against the published CIFAR-100 cnn_t → cnn_s table, 5 methods in "
        "both: Spearman ρ = +1.00 (p = "
    )
    assert caveat.startswith("Caveats: different data, models, epochs")
    reversed_ = five_methods(["sp", "rkd", "at", "dist", "kd"])
    [line, *_] = findings.published_agreement(
        reversed_,
        published_table(findings.REFERENCE_PAIR, FIVE),  # the pair was not published
    )
    assert "resnet32x4 → resnet8x4 table, 5 methods in both: Spearman ρ = -1.00" in line


def test_rank_agreement_needs_five_shared_methods_and_a_published_table():
    few = published_table("cnn_t/cnn_s", dict(list(FIVE.items())[:4]))
    assert findings.published_agreement(five_methods(list(FIVE)), few) == []
    assert findings.published_agreement(five_methods(list(FIVE)), None) == []


def test_the_fashion_report_states_its_agreement_with_the_published_ranking():
    frame = records_frame(read([REPO / "results" / "fashion"]).records)
    text = build_report(frame, load_published()).to_markdown()
    section = text.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    assert section.count("against the published CIFAR-100 resnet32x4 → resnet8x4 table") == 2
    assert "Spearman ρ = +0.17 (p = 0.49)" in section and "Caveats:" in section
