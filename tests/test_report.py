"""kdbench.publish (summary, tables, markdown): tables on a small fixed record set match the
expected Markdown (the widest tables in tests/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kdbench.publish.formats import FORMATS, render
from kdbench.publish.markdown import build_report, session_report
from kdbench.publish.summary import summarize
from kdbench.publish.tables import COLUMNS_NOTE, LEADERBOARD_NOTE, leaderboard
from kdbench.results import make_record, records_frame
from kdbench.spec import make_spec

ENV = {
    "torch": "2.3.0",
    "python": "3.11.7",
    "device_name": "cpu",
    "threads": 2,
    "git_sha": "abc1234",
    "kdbench_version": "0.1.0",
}
PARAMS = {"cnn_s": 2634, "cnn_m": 9802}


def record(student, loss, seed, top1, t=None, status="ok", val=None):
    spec = make_spec("digits", "cnn_t", student, loss, temperature=t, seed=seed, epochs=5)
    metrics = {
        "top1": top1,
        "top5": 99.0,
        "val_top1": top1 + 0.5 if val is None else val,
        "best_top1": top1,
        "teacher_top1": 98.5,
        "num_classes": 10,
        "student_params": PARAMS[student],
        "teacher_params": 151466,
        "extra_params": 0,
        "compression": 151466 / PARAMS[student],
        "student_flops": 2 * PARAMS[student],
        "train_throughput": 40000.0,
        "train_throughput_online": 30000.0,
        "infer_throughput": 1.5e6,
        "latency_ms": 0.05,
        "peak_mem_mb": 31.0,
        "agreement": top1 - 1.0,
        "fidelity_kl": 0.1,
        "train_s": 1.5,
    }
    if loss != "ce":
        metrics["teacher_outputs"] = "cached"
    if status == "diverged":
        metrics = {"diverged_epoch": 3, "last_finite_loss": 2.5}
    extra = (
        {"error": "boom"}
        if status == "error"
        else {"reason": "needs equal channels"}
        if status == "n/a"
        else {}
    )
    r = make_record(
        spec, status, metrics if status == "ok" or status == "diverged" else {}, ENV, **extra
    )
    r["created_at"] = f"2024-05-01T00:00:0{seed}+00:00"
    return r


# kd T=1 has the lower test top-1 on cnn_s but the higher validation top-1: the tables choose
# T=1 (selection on validation only) and show its test top-1
RECORDS = (
    [record("cnn_s", "ce", s, v) for s, v in enumerate((90.0, 91.0, 92.0))]
    + [record("cnn_s", "kd", s, v, t=4.0, val=93.0) for s, v in enumerate((93.0, 94.0, 95.0))]
    + [record("cnn_s", "kd", s, v, t=1.0, val=96.0) for s, v in enumerate((91.5, 92.5))]
    + [record("cnn_s", "kd", 0, 0.0, t=8.0, status="diverged")]
    + [record("cnn_s", "mse_logits", 0, 92.0), record("cnn_s", "mse_logits", 1, 0, status="error")]
    + [record("cnn_s", "fsp", 0, 0, status="n/a")]
    + [record("cnn_m", "ce", s, v) for s, v in enumerate((94.0, 95.0))]
    + [record("cnn_m", "kd", s, v, t=4.0) for s, v in enumerate((96.0, 97.0))]
)
FRAME = records_frame(RECORDS)
DATA = Path(__file__).parent / "data"

SESSION = (DATA / "report_session.md").read_text(encoding="utf-8")

LEADERBOARD = """\
| method     |              cnn_t/cnn_m |              cnn_t/cnn_s |
|:-----------|-------------------------:|-------------------------:|
| teacher    |                    98.50 |                    98.50 |
| ce         |         94.50 ± 0.71 (2) |         91.00 ± 1.00 (3) |
| fsp        |                        — |                      N/A |
| kd         | **96.50 ± 0.71 (2) T=4** | **92.00 ± 0.71 (2) T=1** |
| mse_logits |                        — |       92.00 (1); 1 error |"""

DETAIL_CNN_S = (DATA / "report_detail_cnn_s.md").read_text(encoding="utf-8").rstrip("\n")

TEMPERATURE = """\
| pair        | method   |                T=1 |                T=4 |        T=8 |
|:------------|:---------|-------------------:|-------------------:|-----------:|
| cnn_t/cnn_m | kd       |                N/A | 96.50 ± 0.71 (2) ✓ |        N/A |
| cnn_t/cnn_s | kd       | 92.00 ± 0.71 (2) ✓ |   94.00 ± 1.00 (3) | 1 diverged |"""


def tables() -> dict[str, str]:
    from kdbench.publish.markdown import markdown

    return {heading: markdown(table) for heading, table in build_report(FRAME).tables}


def test_session_report_matches_expected_markdown():
    board = f"\n### Leaderboard ({LEADERBOARD_NOTE})\n\n{LEADERBOARD}"
    assert session_report(FRAME) == SESSION + board + f"\n\n{COLUMNS_NOTE}\n"


def test_leaderboard_detail_and_temperature_tables_match_expected_markdown():
    t = tables()
    assert list(t) == [
        f"## Leaderboard — {LEADERBOARD_NOTE}",
        "### cnn_t/cnn_m",
        "### cnn_t/cnn_s",
        "## Temperature — test top-1; ✓ chosen on validation top-1",
    ]
    assert t[f"## Leaderboard — {LEADERBOARD_NOTE}"] == LEADERBOARD
    assert t["### cnn_t/cnn_s"] == DETAIL_CNN_S
    assert t["## Temperature — test top-1; ✓ chosen on validation top-1"] == TEMPERATURE


def test_temperature_and_best_method_are_chosen_on_validation_not_test():
    s = summarize(FRAME)
    kd = s[(s["pair"] == "cnn_t/cnn_s") & (s["loss"] == "kd")].set_index("T")
    assert kd.loc[4.0, "top1_mean"] > kd.loc[1.0, "top1_mean"]  # test prefers T=4 …
    assert kd.loc[1.0, "val_top1_mean"] > kd.loc[4.0, "val_top1_mean"]  # … validation T=1
    board = leaderboard(s).set_index("method")
    assert board.loc["kd", "cnn_t/cnn_s"] == "**92.00 ± 0.71 (2) T=1**"
    swapped = records_frame(
        [
            {**r, "metrics": {**r["metrics"], "val_top1": 50.0}} if r["spec"]["loss"] == "kd" else r
            for r in RECORDS
        ]
    )
    board = leaderboard(summarize(swapped)).set_index("method")  # kd now worse on validation
    assert board.loc["mse_logits", "cnn_t/cnn_s"].startswith("**")
    assert not board.loc["kd", "cnn_t/cnn_s"].startswith("**")


def test_a_teacher_near_chance_is_flagged_and_marks_no_winner():
    broken = records_frame(
        [{**r, "metrics": {**r["metrics"], "teacher_top1": 3.61}} for r in RECORDS]
    )
    board = leaderboard(summarize(broken)).set_index("method")
    assert board.loc["teacher", "cnn_t/cnn_s"] == "3.61 ⚠ near chance"
    assert "**" not in "".join(board["cnn_t/cnn_s"])
    assert "scores 3.61 % test top-1, near chance" in session_report(broken)


def test_a_learned_temperature_is_shown_with_the_starting_one():
    records = [record("cnn_s", "ctkd", s, 93.0, t=15.6212) for s in range(2)]
    for r, learned in zip(records, (9.5, 10.5)):
        r["metrics"]["final_temperature"] = learned
    s = summarize(records_frame(records))
    cell = leaderboard(s).set_index("method").loc["ctkd", "cnn_t/cnn_s"]
    assert cell == "**93.00 ± 0.00 (2) T=15.6212→10.00**"
    assert "15.6212→10.00" in session_report(records_frame(records))


def test_reports_without_any_temperature_loss():
    """A ce-only run, a feature-loss subset, the first records of a run: no temperature table,
    no crash in any format."""
    ce_only = records_frame([r for r in RECORDS if r["spec"]["loss"] == "ce"])
    for fmt in FORMATS:
        assert render(ce_only, fmt)
    assert "Temperature" not in render(ce_only, "md") and "ce" in session_report(ce_only)


def test_failed_cases_are_not_counted_as_zero_accuracy():
    s = summarize(FRAME).set_index(["pair", "loss", "T"]).sort_index()
    assert s.loc[("cnn_t/cnn_s", "mse_logits"), "top1_mean"].item() == 92.0
    assert s.loc[("cnn_t/cnn_s", "mse_logits"), "error"].item() == 1
    assert pd.isna(s.loc[("cnn_t/cnn_s", "kd", 8.0), "top1_mean"])


def test_provenance_header_and_settings_that_vary_become_sections():
    md = build_report(FRAME).to_markdown()
    assert "- **git**: abc1234" in md and "- **seeds**: 0, 1, 2" in md
    frame = pd.concat(
        [
            FRAME,
            FRAME.assign(
                device="cuda", case_id=FRAME["case_id"] + "c", group_id=FRAME["group_id"] + "c"
            ),
        ]
    )
    headings = [h for h, _ in build_report(frame).tables]
    assert f"## Leaderboard (device cpu) — {LEADERBOARD_NOTE}" in headings
    assert f"## Leaderboard (device cuda) — {LEADERBOARD_NOTE}" in headings


def test_published_column_next_to_measured_for_cifar100():
    frame = FRAME.assign(dataset="cifar100")
    published = pd.DataFrame(
        {
            "source": ["A", "B", "A"],
            "method": ["kd", "kd", "student"],
            "teacher": "cnn_t",
            "student": "cnn_s",
            "top1": ["93.10", "93.40", "90.50"],
            "note": "",
        }
    )
    table = leaderboard(summarize(frame), published).set_index("method")
    assert list(table.columns) == ["cnn_t/cnn_m", "cnn_t/cnn_s", "cnn_t/cnn_s published"]
    assert table.loc["kd", "cnn_t/cnn_s published"] == "93.10 / 93.40"
    assert table.loc["ce", "cnn_t/cnn_s published"] == "90.50"
    assert "published" not in "".join(leaderboard(summarize(FRAME)).columns)  # digits: none


def test_shipped_reference_matches_a_cifar100_pair():
    reference = pytest.importorskip("kdbench.reference")
    if not hasattr(reference, "published"):
        pytest.skip("kdbench.reference.published() not shipped yet")
    frame = FRAME.assign(
        dataset="cifar100",
        teacher="wrn_40_2",
        student=FRAME["student"].map({"cnn_s": "wrn_16_2", "cnn_m": "wrn_40_1"}),
    )
    table = leaderboard(summarize(frame), reference.published()).set_index("method")
    assert "74.92" in table.loc["kd", "wrn_40_2/wrn_16_2 published"]


def test_csv_and_json_formats():
    csv = render(FRAME, "csv")
    assert csv.splitlines()[0].startswith("pair,loss,T,n,na,diverged,error,top1_mean,top1_std")
    data = json.loads(render(FRAME, "json"))
    assert data["provenance"]["records"] == "16 (13 ok, 1 diverged, 1 error, 1 n/a)"
    assert next(t["title"] for t in data["tables"]) == f"Leaderboard — {LEADERBOARD_NOTE}"
    assert len(data["groups"]) == 8


def test_empty_frame():
    assert session_report(pd.DataFrame()) == "No kdbench records.\n"


def test_plots_are_written_and_not_empty(tmp_path):
    pytest.importorskip("matplotlib")
    from kdbench.publish.plots import pareto_front, write_plots

    paths = write_plots(summarize(FRAME), tmp_path)
    assert {p.name for p in paths} == {
        "cnn_t_cnn_m-temperature.png",
        "cnn_t_cnn_s-temperature.png",
        "pareto-params.png",
        "pareto-throughput.png",
    }
    assert all(p.stat().st_size > 1000 for p in paths)
    points = pd.DataFrame({"params": [1, 2, 3, 4], "top1": [90, 89, 95, 94]})
    assert list(pareto_front(points, "params", "top1", False)["params"]) == [1, 3]


def test_a_method_run_on_several_sizes_gets_its_own_curve_one_row_per_size_chosen_on_validation():
    from kdbench.publish.plots import method_fronts

    points = pd.DataFrame(
        {
            "loss": ["kd", "kd", "kd", "kd", "at"],
            "pair": ["t/l", "t/s", "t/s", "t/m", "t/s"],
            "T": [4.0, 4.0, 2.0, 4.0, None],
            "params": [400, 100, 100, 200, 100],
            "val_top1_mean": [93.0, 80.0, 81.0, 90.0, 85.0],
            "top1_mean": [92.0, 82.0, 79.0, 89.0, 84.0],  # T=4 would win on test at t/s
        }
    )
    fronts = method_fronts(points, "params")
    assert list(fronts) == ["kd"]  # at ran on one size: a point, no curve
    assert list(fronts["kd"]["params"]) == [100, 200, 400]
    assert list(fronts["kd"]["T"]) == [2.0, 4.0, 4.0]
    many = pd.DataFrame(
        {
            "loss": [f"m{i}" for i in range(10) for _ in range(2)],
            "pair": ["t/s", "t/m"] * 10,
            "params": [100, 200] * 10,
            "val_top1_mean": [float(i) for i in range(10) for _ in range(2)],
            "top1_mean": [float(i) for i in range(10) for _ in range(2)],
        }
    )
    assert list(method_fronts(many, "params")) == [f"m{i}" for i in range(2, 10)]  # the best 8


def test_plots_group_exactly_as_tables_do(tmp_path):
    """A folder mixing 8- and 15-epoch runs: tables keep them apart, and so do the plots (one
    set per setting, never one curve or front across the two)."""
    pytest.importorskip("matplotlib")
    from kdbench.publish.plots import figures, write_plots

    longer = FRAME.assign(
        epochs=15, case_id=FRAME["case_id"] + "x", group_id=FRAME["group_id"] + "x"
    )
    summary = summarize(pd.concat([FRAME, longer]))
    names = {p.name for p in write_plots(summary, tmp_path)}
    for epochs in (5, 15):
        assert {
            f"epochs_{epochs}-pareto-params.png",
            f"epochs_{epochs}-cnn_t_cnn_s-temperature.png",
        } <= names
    assert not any(n.startswith("pareto") or n.startswith("cnn_t") for n in names)
    titles = [h for h, _ in build_report(pd.concat([FRAME, longer])).tables]
    assert sum(h.startswith("## Leaderboard (epochs 5)") for h in titles) == 1
    kept = figures(summary, keep=lambda part: part["epochs"].eq(15).all())  # one section's
    assert kept and all(name.startswith("epochs_15-") for name, _, _ in kept)


def test_every_format_leaves_the_convergence_runs_out_of_its_leaderboards(tmp_path):
    """``ce`` at twice the epochs (``fashion-tuned-2x``) is the convergence table's: no format
    splits its leaderboards, plots or page by epochs because of it."""
    pytest.importorskip("matplotlib")
    from kdbench.publish.convergence import leaderboard_summary
    from kdbench.publish.plots import write_plots

    doubled = [
        {**r, "spec": {**r["spec"], "epochs": 10}, "case_id": f"{r['case_id']}-2E"}
        for r in RECORDS
        if r["spec"]["loss"] == "ce"
    ]
    frame = records_frame(RECORDS + doubled)
    assert "epochs 5" not in "".join(h for h, _ in build_report(frame).tables if "Leader" in h)
    names = {p.name for p in write_plots(leaderboard_summary(frame), tmp_path)}
    assert "pareto-params.png" in names and not any("epochs" in n for n in names)
    assert render(frame, "latex").count("\\begin{table}") == 1
    assert "epochs 10" not in render(frame, "html") and "epochs 5" not in render(frame, "html")
    assert "Convergence" in render(frame, "md")


def test_a_plot_knows_the_data_it_was_drawn_from(tmp_path):
    """Each PNG carries the digest of its section's plotted values: ``stale`` names the plots
    whose data moved, the ones missing and the PNGs that are no plot of the summary."""
    pytest.importorskip("matplotlib")
    from kdbench.publish.plots import stale, write_plots

    summary = summarize(FRAME)
    names = sorted(p.name for p in write_plots(summary, tmp_path))
    assert stale(summary, tmp_path) == []
    moved = summary.copy()
    moved.loc[moved["loss"].eq("ce"), "top1_mean"] += 0.5
    assert stale(moved, tmp_path) == names  # one section: every plot of it
    (tmp_path / "pareto-params.png").unlink()
    (tmp_path / "old.png").write_bytes(b"")
    assert stale(summary, tmp_path) == ["old.png", "pareto-params.png"]
