"""kdbench CLI: list, report, compare and their exit codes, through ``kdbench.cli.main``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from test_compare import draw, planted

from kdbench.cli import main
from kdbench.losses import LOSSES
from kdbench.results import append_record, load_records


@pytest.fixture
def runs(tmp_path):
    """A baseline file and a current folder (two shards) of the same records."""
    records = draw(np.random.default_rng(0))
    baseline = tmp_path / "baseline.jsonl"
    for r in records:
        append_record(baseline, r)
    for i, r in enumerate(records):
        append_record(tmp_path / "current" / f"shard{i % 2}" / "run.jsonl", r)
    return records, baseline, tmp_path / "current"


def test_list_prints_names_first(capsys):
    assert main(["list", "losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = LOSSES.names()
    assert lines[: len(names)] == names
    assert "Hinton" in "\n".join(lines[len(names) :])


def test_list_models_counts_params_for_10_and_100_classes(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "cnn_m"
    assert "params 100 classes" in out


def test_list_profiles(capsys):
    pytest.importorskip("kdbench.matrix.profiles")
    assert main(["list", "profiles", "--names-only"]) == 0
    assert "quick" in capsys.readouterr().out.split()


def test_report_formats_out_file_and_refreshed_baseline(runs, tmp_path, capsys):
    records, _, current = runs
    assert main(["report", str(current)]) == 0
    assert "## Leaderboard" in capsys.readouterr().out
    out = tmp_path / "board.json"
    assert main(["report", str(current), "--format", "json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["provenance"]["records"] == "12 (12 ok)"
    assert main(["report", str(current), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("pair,loss,T,n,")
    refreshed = tmp_path / "results" / "baseline.jsonl"
    assert main(["report", str(current), "--baseline", str(refreshed)]) == 0
    assert len(load_records([refreshed])) == len(records)
    assert "wrote baseline" in capsys.readouterr().err


def test_report_plots(runs, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["report", str(runs[2]), "--plots", str(tmp_path / "plots")]) == 0
    pngs = list((tmp_path / "plots").glob("*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)


def test_report_skips_and_counts_corrupt_lines_the_gate_refuses_them(runs, capsys):
    _, baseline, current = runs
    with open(current / "shard0" / "run.jsonl", "a") as fh:
        fh.write('{"case_id": "torn\n')
        fh.write("not json\n")
    assert main(["report", str(current)]) == 0
    assert "skipped 2 corrupt or torn record line(s)" in capsys.readouterr().err
    assert main(["compare", str(baseline), str(current)]) == 2
    err = capsys.readouterr().err.strip()
    assert "2 corrupt or torn record line(s)" in err and "unusable input" in err
    assert len(err.splitlines()) == 1


def test_missing_cases_fail_the_gate_unless_allowed(runs, tmp_path, capsys):
    records, baseline, _ = runs
    subset = tmp_path / "subset.jsonl"
    for r in records[:3]:  # one case group of the 4 ran (a lost shard, or a -k subset)
        append_record(subset, r)
    assert main(["compare", str(baseline), str(subset)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 3 baseline case(s) missing" in out and "--allow-missing" in out
    assert main(["compare", str(baseline), str(subset), "--allow-missing"]) == 0
    assert "no regression (3 baseline case(s) not run, allowed)" in capsys.readouterr().out


def test_rerun_records_count_once_newest_wins(runs, tmp_path, capsys):
    records, _, current = runs
    rerun = [
        {
            **r,
            "created_at": "2030-01-01T00:00:00.000000+00:00",
            "metrics": {**r["metrics"], "top1": 50.0},
        }
        for r in records
    ]
    for r in rerun:
        append_record(current / "rerun" / "run.jsonl", r)
    assert main(["report", str(current), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["provenance"]["records"] == f"{len(records)} ({len(records)} ok)"
    assert {g["top1_mean"] for g in out["groups"]} == {50.0}
    assert f"{len(records)} older record(s) superseded" in out["notes"][0]


def test_list_into_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    command = [sys.executable, "-c", "from kdbench.cli import main; main(['list', 'losses'])"]
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = producer.stdout.readline()  # `| head -1`: the reader leaves after one line
    producer.stdout.close()
    _, err = producer.communicate(timeout=60)
    assert first.strip() == b"ab" and b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_compare_exit_codes(runs, tmp_path, capsys):
    records, baseline, current = runs
    assert main(["compare", str(baseline), str(current)]) == 0
    assert "no regression" in capsys.readouterr().out

    worse = tmp_path / "worse.jsonl"
    for r in planted(records, "kd", 4.0, top1=lambda v: v - 5.0):
        append_record(worse, r)
    assert main(["compare", str(baseline), str(worse)]) == 1
    assert "**REGRESSION**" in capsys.readouterr().out
    assert main(["compare", str(baseline), str(worse), "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["has_regression"] is True
    assert main(["compare", str(baseline), str(worse), "--metrics", "agreement"]) == 0
    assert main(["compare", str(baseline), str(worse), "--min-effect", "top1=6"]) == 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no record file or folder"),
        ("unshared", "no shared cases"),
        ("schema", "schema mismatch"),
        ("bad-effect", "invalid --min-effect"),
        ("bad-metric", "unknown metric 'top_1'"),
    ],
)
def test_compare_unusable_input_exits_2_with_one_line(runs, tmp_path, capsys, case, message):
    records, baseline, current = runs
    other = tmp_path / "other.jsonl"
    changed = {"unshared": {"group_id": "elsewhere"}, "schema": {"schema": 99}}.get(case)
    for r in copy.deepcopy(records):
        append_record(other, {**r, **(changed or {})})
    args = {
        "missing": [str(tmp_path / "nope.jsonl"), str(current)],
        "bad-effect": [str(baseline), str(current), "--min-effect", "top1"],
        "bad-metric": [str(baseline), str(current), "--min-effect", "top_1=1"],
    }.get(case, [str(baseline), str(other)])
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    assert main(["list", "lossess"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
