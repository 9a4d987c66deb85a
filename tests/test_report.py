"""kdbench.report: tables on a small fixed record set match the expected Markdown."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kdbench.report import build_report, leaderboard, render, session_report, summarize
from kdbench.results import make_record, records_frame
from kdbench.spec import make_spec

ENV = {"torch": "2.3.0", "python": "3.11.7", "device_name": "cpu", "threads": 2,
       "git_sha": "abc1234", "kdbench_version": "0.1.0"}
PARAMS = {"cnn_s": 2634, "cnn_m": 9802}


def record(student, loss, seed, top1, t=None, status="ok"):
    spec = make_spec("digits", "cnn_t", student, loss, temperature=t, seed=seed, epochs=5)
    metrics = {"top1": top1, "top5": 99.0, "best_top1": top1, "teacher_top1": 98.5,
               "student_params": PARAMS[student], "teacher_params": 151466, "extra_params": 0,
               "compression": 151466 / PARAMS[student], "student_flops": 2 * PARAMS[student],
               "train_throughput": 40000.0, "infer_throughput": 1.5e6, "latency_ms": 0.05,
               "peak_mem_mb": 310.0, "agreement": top1 - 1.0, "train_s": 1.5}
    if status == "diverged":
        metrics = {"diverged_epoch": 3, "last_finite_loss": 2.5}
    r = make_record(spec, status, metrics if status != "error" else {}, ENV,
                    **({"error": "boom"} if status == "error" else {}))
    r["created_at"] = f"2024-05-01T00:00:0{seed}+00:00"
    return r


RECORDS = (
    [record("cnn_s", "ce", s, v) for s, v in enumerate((90.0, 91.0, 92.0))]
    + [record("cnn_s", "kd", s, v, t=4.0) for s, v in enumerate((93.0, 94.0, 95.0))]
    + [record("cnn_s", "kd", s, v, t=1.0) for s, v in enumerate((91.5, 92.5))]
    + [record("cnn_s", "kd", 0, 0.0, t=8.0, status="diverged")]
    + [record("cnn_s", "mse_logits", 0, 92.0), record("cnn_s", "mse_logits", 1, 0, status="error")]
    + [record("cnn_m", "ce", s, v) for s, v in enumerate((94.0, 95.0))]
    + [record("cnn_m", "kd", s, v, t=4.0) for s, v in enumerate((96.0, 97.0))]
)
FRAME = records_frame(RECORDS)

SESSION = """\
kdbench 0.1.0 · git abc1234 · torch 2.3.0 · device cpu · threads 2 · seeds 0, 1, 2 · epochs 5 · records 15 (13 ok, 1 diverged, 1 error)

| pair        | loss       | T   |            top-1 % |   Δ top-1 vs ce |   agreement % |   student params |   FLOPs |   train samples/s |   infer samples/s |
|:------------|:-----------|:----|-------------------:|----------------:|--------------:|-----------------:|--------:|------------------:|------------------:|
| cnn_t>cnn_m | kd         | 4   |   96.50 ± 0.71 (2) |           +2.00 |         95.50 |            9,802 |  19,604 |            40,000 |             1.50M |
| cnn_t>cnn_m | ce         |     |   94.50 ± 0.71 (2) |           +0.00 |         93.50 |            9,802 |  19,604 |            40,000 |             1.50M |
| cnn_t>cnn_s | kd         | 4   |   94.00 ± 1.00 (3) |           +3.00 |         93.00 |            2,634 |   5,268 |            40,000 |             1.50M |
| cnn_t>cnn_s | kd         | 1   |   92.00 ± 0.71 (2) |           +1.00 |         91.00 |            2,634 |   5,268 |            40,000 |             1.50M |
| cnn_t>cnn_s | mse_logits |     | 92.00 (1); 1 error |           +1.00 |         91.00 |            2,634 |   5,268 |            40,000 |             1.50M |
| cnn_t>cnn_s | ce         |     |   91.00 ± 1.00 (3) |           +0.00 |         90.00 |            2,634 |   5,268 |            40,000 |             1.50M |
| cnn_t>cnn_s | kd         | 8   |         1 diverged |                 |               |                  |         |                   |                   |
"""

LEADERBOARD = """\
| method     |              cnn_t>cnn_m |              cnn_t>cnn_s |
|:-----------|-------------------------:|-------------------------:|
| teacher    |                    98.50 |                    98.50 |
| ce         |         94.50 ± 0.71 (2) |         91.00 ± 1.00 (3) |
| kd         | **96.50 ± 0.71 (2) T=4** | **94.00 ± 1.00 (3) T=4** |
| mse_logits |                      N/A |       92.00 (1); 1 error |"""

DETAIL_CNN_S = """\
|   rank | method     | T   |            top-1 % |   Δ top-1 vs ce |   agreement % |   student params |   extra params |   compression |   FLOPs |   train samples/s |   infer samples/s |   latency ms |   peak mem MB |   train s |
|-------:|:-----------|:----|-------------------:|----------------:|--------------:|-----------------:|---------------:|--------------:|--------:|------------------:|------------------:|-------------:|--------------:|----------:|
|      1 | kd         | 4   |   94.00 ± 1.00 (3) |           +3.00 |         93.00 |            2,634 |              0 |          57.5 |   5,268 |            40,000 |             1.50M |        0.050 |         310.0 |       1.5 |
|      2 | kd         | 1   |   92.00 ± 0.71 (2) |           +1.00 |         91.00 |            2,634 |              0 |          57.5 |   5,268 |            40,000 |             1.50M |        0.050 |         310.0 |       1.5 |
|      2 | mse_logits |     | 92.00 (1); 1 error |           +1.00 |         91.00 |            2,634 |              0 |          57.5 |   5,268 |            40,000 |             1.50M |        0.050 |         310.0 |       1.5 |
|      4 | ce         |     |   91.00 ± 1.00 (3) |           +0.00 |         90.00 |            2,634 |              0 |          57.5 |   5,268 |            40,000 |             1.50M |        0.050 |         310.0 |       1.5 |
|        | kd         | 8   |         1 diverged |                 |               |                  |                |               |         |                   |                   |              |               |           |"""

TEMPERATURE = """\
| pair        | method   |              T=1 |              T=4 |        T=8 |
|:------------|:---------|-----------------:|-----------------:|-----------:|
| cnn_t>cnn_m | kd       |              N/A | 96.50 ± 0.71 (2) |        N/A |
| cnn_t>cnn_s | kd       | 92.00 ± 0.71 (2) | 94.00 ± 1.00 (3) | 1 diverged |"""


def tables() -> dict[str, str]:
    from kdbench.report import markdown

    return {heading: markdown(table) for heading, table in build_report(FRAME).tables}


def test_session_report_matches_expected_markdown():
    board = f"\n### Leaderboard (best T per pair)\n\n{LEADERBOARD}"
    assert session_report(FRAME) == SESSION + board + "\n"


def test_leaderboard_detail_and_temperature_tables_match_expected_markdown():
    t = tables()
    assert list(t) == ["## Leaderboard", "### cnn_t>cnn_m", "### cnn_t>cnn_s", "## Temperature"]
    assert t["## Leaderboard"] == LEADERBOARD
    assert t["### cnn_t>cnn_s"] == DETAIL_CNN_S
    assert t["## Temperature"] == TEMPERATURE


def test_failed_cases_are_not_counted_as_zero_accuracy():
    s = summarize(FRAME).set_index(["pair", "loss", "T"]).sort_index()
    assert s.loc[("cnn_t>cnn_s", "mse_logits"), "top1_mean"].item() == 92.0
    assert s.loc[("cnn_t>cnn_s", "mse_logits"), "error"].item() == 1
    assert pd.isna(s.loc[("cnn_t>cnn_s", "kd", 8.0), "top1_mean"])


def test_provenance_header_and_settings_that_vary_become_sections():
    md = build_report(FRAME).to_markdown()
    assert "- **git**: abc1234" in md and "- **seeds**: 0, 1, 2" in md
    frame = pd.concat([FRAME, FRAME.assign(device="cuda", case_id=FRAME["case_id"] + "c",
                                           group_id=FRAME["group_id"] + "c")])
    headings = [h for h, _ in build_report(frame).tables]
    assert "## Leaderboard (device cpu)" in headings and "## Leaderboard (device cuda)" in headings


def test_published_column_next_to_measured_for_cifar100():
    frame = FRAME.assign(dataset="cifar100")
    published = pd.DataFrame({"source": ["A", "B", "A"], "method": ["kd", "kd", "student"],
                              "teacher": "cnn_t", "student": "cnn_s",
                              "top1": ["93.10", "93.40", "90.50"], "note": ""})
    table = leaderboard(summarize(frame), published).set_index("method")
    assert list(table.columns) == ["cnn_t>cnn_m", "cnn_t>cnn_s", "cnn_t>cnn_s published"]
    assert table.loc["kd", "cnn_t>cnn_s published"] == "93.10 / 93.40"
    assert table.loc["ce", "cnn_t>cnn_s published"] == "90.50"
    assert "published" not in "".join(leaderboard(summarize(FRAME)).columns)  # digits: none


def test_shipped_reference_matches_a_cifar100_pair():
    reference = pytest.importorskip("kdbench.reference")
    if not hasattr(reference, "published"):
        pytest.skip("kdbench.reference.published() not shipped yet")
    frame = FRAME.assign(dataset="cifar100", teacher="wrn_40_2",
                         student=FRAME["student"].map({"cnn_s": "wrn_16_2", "cnn_m": "wrn_40_1"}))
    table = leaderboard(summarize(frame), reference.published()).set_index("method")
    assert "74.92" in table.loc["kd", "wrn_40_2>wrn_16_2 published"]


def test_csv_and_json_formats():
    csv = render(FRAME, "csv")
    assert csv.splitlines()[0].startswith("pair,loss,T,n,diverged,error,top1_mean,top1_std")
    data = json.loads(render(FRAME, "json"))
    assert data["provenance"]["records"] == "15 (13 ok, 1 diverged, 1 error)"
    assert [t["title"] for t in data["tables"]][0] == "Leaderboard"
    assert len(data["groups"]) == 7


def test_empty_frame():
    assert session_report(pd.DataFrame()) == "No kdbench records.\n"


def test_plots_are_written_and_not_empty(tmp_path):
    pytest.importorskip("matplotlib")
    from kdbench.plots import pareto_front, write_plots

    paths = write_plots(summarize(FRAME), tmp_path)
    assert {p.name for p in paths} == {"cnn_t_cnn_m-temperature.png",
                                       "cnn_t_cnn_s-temperature.png", "pareto-params.png",
                                       "pareto-throughput.png"}
    assert all(p.stat().st_size > 1000 for p in paths)
    points = pd.DataFrame({"params": [1, 2, 3, 4], "top1": [90, 89, 95, 94]})
    assert list(pareto_front(points, "params", "top1", False)["params"]) == [1, 3]
