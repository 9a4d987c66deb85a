"""Progress, kdbench watch and --kd-log through the real suite in ``pytester``: under ``-n 2``
every running case's progress reaches the controller, a pipe gets a bounded log, a terminal a
live panel; the run's folder tells watch that it ended; trackers never cost a record."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
import torch

from kdbench.cli import main
from kdbench.matrix.profiles import PROFILES
from kdbench.results import load_records

EPOCHS = 3
SMOKE = ("--kd-profile", "smoke", "--kd-device", "cpu", "--kd-epochs", str(EPOCHS))
CASES = ("-k", "cnn_m-ce- or cnn_m-kd-")


def names(seeds: int) -> set[str]:
    return {
        s.name
        for s in PROFILES.get("smoke").specs(("cpu",), seeds=seeds, epochs=EPOCHS)
        if s.loss in ("ce", "kd")
    }


def test_xdist_workers_progress_reaches_the_controller_and_the_log_is_bounded(kd_suite, pytester):
    result = kd_suite(*SMOKE, *CASES, "-n", "2", subprocess=True)
    expected = names(1)
    result.assert_outcomes(passed=len(expected))
    log = [line for line in result.outlines if line.startswith("[kdbench] ")]
    assert len(log) <= len(expected) + 2  # a line per case (heartbeats: a minute apart)
    ended = {}
    for line in log:  # each from the controller's view, built from the workers' events
        found = re.search(r"· (gw[01]) (\S+) passed after epoch (\d+)/(\d+) in \d+s$", line)
        if found:
            ended[found[2]] = found[1], found[3], found[4]
    assert set(ended) == expected
    assert {(epoch, epochs) for _, epoch, epochs in ended.values()} == {(str(EPOCHS),) * 2}
    assert log[-1].startswith(
        f"[kdbench] {len(expected)}/{len(expected)} done · 0 running · 0 left · 0 failed · ETA 0s"
    )

    (progress,) = (pytester.path / "results" / "runs").glob("*.progress")
    assert sorted(p.name for p in progress.iterdir()) == [
        "controller.json",
        "end.json",
        "gw0.ndjson",
        "gw1.ndjson",
    ]
    assert json.loads((progress / "end.json").read_text())["exitstatus"] == 0
    events = [
        json.loads(line)
        for w in ("gw0", "gw1")
        for line in (progress / f"{w}.ndjson").read_text().splitlines()
    ]
    ticks = {e["case_id"] for e in events if e["event"] == "tick"}
    assert len(ticks) == len(expected)  # every case reported progress while it ran

    watch = pytester.run(
        sys.executable, "-m", "kdbench.cli", "watch", str(pytester.path / "results")
    )
    assert watch.ret == 0
    out = watch.stdout.str()
    assert f"{len(expected)}/{len(expected)} done · 0 failed · ended" in out
    assert "ended (exit 0)" in out and "### Leaderboard" in out


def test_cases_skipped_before_they_start_are_not_counted_in_progress(kd_suite):
    """A resumed case and, without a GPU, the CUDA cases skip at once: counted as cases to
    train they made a resumed run's ETA hours long."""
    kd_suite(*SMOKE, "-k", "cnn_m-ce-").assert_outcomes(passed=1)
    every_device = ("--kd-profile", "smoke", "--kd-device", "all", "--kd-epochs", str(EPOCHS))
    result = kd_suite(*every_device, *CASES, "--kd-resume", "--kd-progress", "log")
    to_train = {
        s.name
        for s in PROFILES.get("smoke").specs(("cpu", "cuda"), seeds=1, epochs=EPOCHS)
        if s.loss in ("ce", "kd") and (s.device == "cpu" or torch.cuda.is_available())
    } - {s for s in names(1) if "-ce-" in s}
    log = [line for line in result.outlines if line.startswith("[kdbench] ")]
    assert log[-1].startswith(f"[kdbench] {len(to_train)}/{len(to_train)} done · 0 running")


def test_a_terminal_gets_a_live_panel(kd_suite):
    result = kd_suite(*SMOKE, "-k", "cnn_m-kd-", "--kd-progress", "live", subprocess=True)
    result.assert_outcomes(passed=1)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout.str())  # colours, cursor moves
    assert "kdbench 1/1 done · 0 running · 0 left · 0 failed · ETA 0s" in out
    assert re.search(r"digits-cnn_t/cnn_m-kd-T4-cpu-s0 +━+ starting", out)  # drawn at its start
    assert "kdbench leaderboard" in out and not any(
        line.startswith("[kdbench] ") for line in result.outlines
    )


def test_kd_progress_off_and_sessions_without_cases_show_nothing(kd_suite, pytester):
    off = kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-progress", "off")
    off.assert_outcomes(passed=1)
    assert "[kdbench] " not in off.stdout.str()
    none = kd_suite(*SMOKE, "-k", "no-such-case")
    assert "[kdbench] " not in none.stdout.str()
    assert len(list((pytester.path / "results" / "runs").glob("*.progress"))) == 1


def test_kd_log_writes_the_record_first_and_warns_when_a_tracker_fails(kd_suite, pytester):
    (pytester.path / "results").mkdir()
    (pytester.path / "results" / "tensorboard").write_text("a file, not a folder")
    result = kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-log", "tensorboard")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*--kd-log tensorboard: digits-cnn_t/cnn_m-ce-cpu-s0 not logged*its record is written*"]
    )
    (record,) = load_records(list((pytester.path / "results" / "runs").glob("*.jsonl")))
    assert record["status"] == "ok"


def test_a_missing_tracker_extra_is_a_one_line_error_before_any_training(
    kd_suite, pytester, monkeypatch
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mlflow" else find_spec(name, *a),
    )
    result = kd_suite(*SMOKE, *CASES, "--kd-log", "tensorboard,mlflow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --kd-log mlflow: mlflow is not installed: pip install 'kdbench[mlflow]'"]
    )
    assert not (pytester.path / "results").exists()


def test_watch_once_on_a_folder_without_a_run(tmp_path, capsys):
    assert main(["watch", str(tmp_path / "none"), "--once"]) == 2
    assert "no results folder" in capsys.readouterr().err


def test_an_unusable_mlflow_store_is_a_one_line_error_before_any_training(
    kd_suite, pytester, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "no-such-scheme://anywhere")
    # in a process of its own: MLflow's first import failing half-way inside this one left
    # pytest's plugin loading and later mlflow imports broken for the tests after it
    result = kd_suite(*SMOKE, *CASES, "--kd-log", "mlflow", subprocess=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --kd-log mlflow: cannot open the tracking store (*)"])
    assert not list(pytester.path.glob("results/runs/*.jsonl"))
