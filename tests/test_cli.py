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
    assert lines[:len(names)] == names
    assert "Hinton" in "\n".join(lines[len(names):])


def test_list_models_counts_params_for_10_and_100_classes(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "cnn_m"
    assert "params 100 classes" in out


def test_list_profiles(capsys):
    pytest.importorskip("kdbench.profiles")
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


def test_corrupt_lines_are_skipped_and_counted(runs, capsys):
    _, baseline, current = runs
    with open(current / "shard0" / "run.jsonl", "a") as fh:
        fh.write('{"case_id": "torn\n')
        fh.write("not json\n")
    assert main(["compare", str(baseline), str(current)]) == 0
    assert "skipped 2 corrupt or torn record line(s)" in capsys.readouterr().err


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


@pytest.mark.parametrize("case, message", [
    ("missing", "no record file or folder"),
    ("unshared", "no shared cases"),
    ("schema", "schema mismatch"),
    ("bad-effect", "invalid --min-effect"),
    ("bad-metric", "unknown metric 'top_1'"),
])
def test_compare_unusable_input_exits_2_with_one_line(runs, tmp_path, capsys, case, message):
    records, baseline, current = runs
    other = tmp_path / "other.jsonl"
    changed = {"unshared": {"group_id": "elsewhere"}, "schema": {"schema": 2}}.get(case)
    for r in copy.deepcopy(records):
        append_record(other, {**r, **(changed or {})})
    args = {"missing": [str(tmp_path / "nope.jsonl"), str(current)],
            "bad-effect": [str(baseline), str(current), "--min-effect", "top1"],
            "bad-metric": [str(baseline), str(current), "--min-effect", "top_1=1"]}.get(
        case, [str(baseline), str(other)])
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    assert main(["list", "lossess"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
