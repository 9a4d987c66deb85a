"""Scale-out and faults: xdist trains a teacher once, divergence and errors are recorded and the
session goes on, kills and failed writes lose nothing finished, --kd-resume continues a run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdbench.observe.channel import CONTROLLER_FILE, read_marker
from kdbench.results import load_records
from kdbench.run.engine import Engine

SMOKE = ("--kd-profile", "smoke", "--kd-device", "cpu", "--kd-epochs", "5")
TWO_CASES = ("-k", "cnn_m-ce- or cnn_m-kd-")


def run_files(root: Path) -> list[Path]:
    return sorted((root / "results" / "runs").glob("*.jsonl"))


def leaderboard(root: Path) -> str:
    """The newest session's leaderboard, written next to its records."""
    return sorted((root / "results" / "runs").glob("*.md"))[-1].read_text()


def test_xdist_workers_train_the_teacher_once(kd_suite, pytester):
    cache = pytester.path / "fresh-cache"
    result = kd_suite(
        *SMOKE, "--kd-seeds", "2", "-n", "2", *TWO_CASES, cache=cache, subprocess=True
    )
    result.assert_outcomes(passed=4)
    trainings = (cache / "teachers" / "trained.jsonl").read_text().splitlines()
    assert len(trainings) == 1, trainings  # two workers, one teacher, trained once
    records = load_records(run_files(pytester.path))
    assert len(records) == 4 and len({r["case_id"] for r in records}) == 4


PLANTED = """
from kdbench.matrix.profiles import PROFILES, Profile, register_profile
from kdbench.recipes import Recipe, register_recipe

register_recipe(Recipe("explode", lr=0.01, lr_by_model=(("cnn_s", 1e9),)))  # student only
register_profile(Profile("planted", "a diverging student beside a sound one", dataset="digits",
                         pairs=(("cnn_t", "cnn_s"), ("cnn_t", "cnn_m")), recipe="explode",
                         epochs=3, teacher_epochs=3, seeds=1, losses=("ce",)))
"""


def test_a_diverging_case_is_recorded_and_the_session_goes_on(kd_suite, pytester):
    pytester.makeconftest(PLANTED)
    result = kd_suite("--kd-profile", "planted", "--kd-device", "cpu", "-rx", subprocess=True)
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*XFAIL*cnn_s*diverged at epoch*"])
    records = {r["spec"]["student"]: r for r in load_records(run_files(pytester.path))}
    diverged = records["cnn_s"]
    assert diverged["status"] == "diverged" and diverged["metrics"]["diverged_epoch"] >= 1
    assert "last_finite_loss" in diverged["metrics"] and "top1" not in diverged["metrics"]
    assert records["cnn_m"]["status"] == "ok"
    assert "diverged" in leaderboard(pytester.path)
    again = kd_suite(
        "--kd-profile", "planted", "--kd-device", "cpu", "--kd-resume", "-rs", subprocess=True
    )
    again.assert_outcomes(skipped=2)  # a rerun would diverge at the same epoch: not rerun
    again.stdout.fnmatch_lines(["*SKIPPED*resumed*cnn_s*already has a record (diverged)*"])


def test_not_applicable_method_is_recorded_with_its_reason_and_shown(kd_suite, pytester):
    result = kd_suite(*SMOKE, "-rs", "-k", "cnn_m-fsp- or cnn_m-ce-")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*N/A: FSP needs equal channels*"])
    (na,) = [r for r in load_records(run_files(pytester.path)) if r["spec"]["loss"] == "fsp"]
    assert na["status"] == "n/a" and "FSP needs equal channels" in na["reason"]
    assert re.search(r"\| fsp +\| +N/A \|", leaderboard(pytester.path))


def start_session(pytester, *args: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "test_cases.py",
        *SMOKE,
        "--kd-threads",
        "1",
        "--kd-cache",
        str(pytester.path / "cache"),
        "--kd-results",
        "results",
        "-p",
        "no:cacheprovider",
        *args,
    ]
    return subprocess.Popen(
        cmd, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_records(pytester, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        files = run_files(pytester.path)
        if files and len(files[0].read_text().splitlines()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {n} records before the session ended or timed out")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_session_leaves_every_finished_case_loadable(kd_suite, pytester, sig):
    proc = start_session(pytester)
    wait_for_records(pytester, 2, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    (run_file,) = run_files(pytester.path)
    if sig == signal.SIGKILL:
        with open(run_file, "a") as fh:  # as if killed in the middle of the next write
            fh.write('{"case_id": "torn", "spec": {"data')
        with pytest.warns(UserWarning, match="skipped 1 corrupt or torn"):
            records = load_records([run_file])
    else:
        assert proc.returncode == int(pytest.ExitCode.INTERRUPTED), out
        assert "kdbench leaderboard" in out
        records = load_records([run_file])
    assert len(records) >= 2 and all(r["status"] in ("ok", "n/a") for r in records)  # finished


LINE_LESS_INTERRUPT = """
import kdbench.run.engine


def distill(self, spec):
    raise KeyboardInterrupt("signal 15")


# a frame without a line number, as torch's dynamo-wrapped optimizer.zero_grad has
kdbench.run.engine.Engine.distill = type(distill)(
    distill.__code__.replace(co_linetable=b""), globals()
)
"""


def test_an_interrupt_inside_a_frame_without_line_number_ends_the_session_as_interrupted(
    kd_suite, pytester
):
    pytester.makeconftest(LINE_LESS_INTERRUPT)  # a subprocess: the patch must not outlive it
    result = kd_suite(*SMOKE, *TWO_CASES, subprocess=True)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt: signal 15" in out and "TypeError" not in out


def test_resume_skips_cases_already_recorded(kd_suite, pytester):
    kd_suite(*SMOKE, *TWO_CASES).assert_outcomes(passed=2)
    assert len(run_files(pytester.path)) == 1
    result = kd_suite(*SMOKE, "--kd-resume", "-rs", "-k", "cnn_m-ce- or cnn_m-kd- or cnn_m-dist-")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*resumed*already has a record (ok)*"])
    result.stdout.fnmatch_lines(["*2 case(s) resumed from earlier runs*"])
    names = [r["name"] for f in run_files(pytester.path) for r in load_records([f])]
    assert len(names) == len(set(names)) == 3  # nothing trained twice
    assert all(f"| {loss} " in leaderboard(pytester.path) for loss in ("ce", "kd", "dist"))


def test_resume_with_nothing_left_names_no_missing_file(kd_suite, pytester):
    kd_suite(*SMOKE, *TWO_CASES).assert_outcomes(passed=2)
    result = kd_suite(*SMOKE, *TWO_CASES, "--kd-resume")
    result.assert_outcomes(skipped=2)
    out = result.stdout.str()
    assert "records: none new (every case resumed)" in out
    paths = re.findall(r"(?:leaderboard|records): (/\S+)", out)
    assert paths and all(Path(p).exists() for p in paths), paths  # every path printed exists


def test_a_rerun_into_the_same_folder_counts_each_case_once(kd_suite, pytester):
    """Re-running cases into the same results folder: every aggregate takes the newest record
    of a case, never both (a seed counted twice would shrink the std)."""
    kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-seeds", "2").assert_outcomes(passed=2)
    kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-seeds", "2").assert_outcomes(passed=2)
    from kdbench.cli import main

    assert len(run_files(pytester.path)) == 2
    report = pytester.path / "report.md"
    assert main(["report", str(pytester.path / "results" / "runs"), "--out", str(report)]) == 0
    text = report.read_text()
    assert "records**: 2 (2 ok)" in text and "2 older record(s) superseded" in text
    assert re.search(r"\| ce +\| +[\d.]+ ± [\d.]+ \(2\)", text)  # n = 2 seeds, not 4


def test_a_failed_write_keeps_the_record_and_reports_it(kd_suite, monkeypatch):
    import kdbench.results

    def full_disk(path, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kdbench.results, "append_record", full_disk)
    result = kd_suite(*SMOKE, "-k", "cnn_m-ce-")
    result.assert_outcomes(passed=1)
    assert result.ret == int(pytest.ExitCode.TESTS_FAILED)  # a record not on disk fails the run
    out = result.stdout.str()
    assert "records NOT saved" in out and "No space left on device" in out
    saved = [json.loads(line) for line in result.outlines if line.startswith('{"')]
    assert [r["name"] for r in saved] == ["digits-cnn_t/cnn_m-ce-cpu-s0"]
    assert "kdbench leaderboard" in out  # the unsaved case is still on the leaderboard


def test_an_unwritable_leaderboard_loses_neither_summary_nor_gate(kd_suite, pytester, monkeypatch):
    from pathlib import Path as P

    write_text = P.write_text

    def read_only(self, *args, **kwargs):
        if self.suffix == ".md":
            raise PermissionError(13, "Permission denied")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(P, "write_text", read_only)
    pytester.makepyprojecttoml('[tool.kdbench.compare]\nmetrics = ["top1"]\n')
    kd_suite(*SMOKE, "-k", "cnn_m-ce-").assert_outcomes(passed=1)
    baseline = run_files(pytester.path)[0]
    result = kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-baseline", str(baseline))
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    assert "kdbench leaderboard" in out and "| ce " in out
    assert "leaderboard NOT written to" in out and "Permission denied" in out
    assert f"baseline {baseline}: no regression" in out and "Traceback" not in out


def test_a_corrupt_teacher_output_cache_is_rebuilt(cache_dir, tiny_spec, distill):
    spec = tiny_spec("fitnet")
    first = distill(Engine(cache_dir=cache_dir), spec)
    (entry,) = (cache_dir / "teacher_outputs").glob("*.pt")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(UserWarning, match="corrupt teacher_outputs cache entry"):
        second = distill(Engine(cache_dir=cache_dir), spec)
    assert second["metrics"]["top1"] == first["metrics"]["top1"]
    assert os.path.getsize(entry) > 0 and all(
        (second["weights"][k] == v).all() for k, v in first["weights"].items()
    )


def events(pytester) -> list[dict]:
    folder = run_files(pytester.path)[0].with_suffix(".progress")
    return [json.loads(line) for f in folder.glob("*.ndjson") for line in f.open()]


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one process", "xdist -n 2"])
def test_sigusr1_ends_the_session_once_the_running_cases_are_recorded(kd_suite, pytester, workers):
    six = " or ".join(f"cnn_m-{loss}-" for loss in ("ce", "kd", "dkd", "dist", "at", "fitnet"))
    proc = start_session(pytester, *workers, "-k", six)
    wait_for_records(pytester, 1, proc)
    proc.send_signal(signal.SIGUSR1)  # to the controller alone
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == int(pytest.ExitCode.INTERRUPTED), out
    assert "stop requested (SIGUSR1)" in out and "kdbench leaderboard" in out
    seen = events(pytester)
    planned = {c[0] for e in seen if e["event"] == "plan" for c in e["cases"]}
    # a case whose start the stop request overtook is skipped at its setup: it never began
    stopped = {e["case_id"] for e in seen if e["event"] == "end" and e["outcome"] == "skipped"}
    started = {e["case_id"] for e in seen if e["event"] == "start"} - stopped
    records = load_records(run_files(pytester.path))
    assert {r["case_id"] for r in records} == started  # every case begun was finished
    assert len(started) < len(planned) == 6  # and no other begun


STOP_BEFORE_ANY_CASE = """
from kdbench.observe.channel import STOP_FILE, progress_dir, write_marker
from kdbench.session.state import SESSION


def pytest_collection_finish(session):
    folder = progress_dir(session.config.stash[SESSION].run_file)
    folder.mkdir(parents=True, exist_ok=True)
    write_marker(folder, STOP_FILE, signal=10)  # as if SIGUSR1 came before the first case
"""


def test_a_case_about_to_start_after_a_stop_request_does_not_start(kd_suite, pytester):
    pytester.makeconftest(STOP_BEFORE_ANY_CASE)
    result = kd_suite(*SMOKE, *TWO_CASES, "-rs", subprocess=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(skipped=1)  # the first is not started, the second not reached
    result.stdout.fnmatch_lines(["*SKIPPED*stop requested (SIGUSR1)*"])
    assert not run_files(pytester.path) or not load_records(run_files(pytester.path))


def test_stop_after_zero_starts_no_case(kd_suite, pytester):
    result = kd_suite(*SMOKE, *TWO_CASES, "-rs", "--kd-stop-after", "0:00", subprocess=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*stop requested (--kd-stop-after 0:00)*"])
    assert not run_files(pytester.path) or not load_records(run_files(pytester.path))


TIME_COMES_IN_GW0 = """
import os

import pytest

from kdbench.session.state import SESSION


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item):
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw0":  # as if gw0 saw the time come
        item.config.stash[SESSION].stop_at = 0.0
"""


def test_stop_after_time_one_worker_sees_stops_every_worker(kd_suite, pytester):
    pytester.makeconftest(TIME_COMES_IN_GW0)
    six = " or ".join(f"cnn_m-{loss}-" for loss in ("ce", "kd", "dkd", "dist", "at", "fitnet"))
    began = time.time()
    result = kd_suite(*SMOKE, "-n", "2", "-k", six, "--kd-stop-after", "10:00", subprocess=True)
    ended = time.time()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert "stop requested (--kd-stop-after 10:00)" in result.stdout.str()
    seen = events(pytester)
    stopped = {e["case_id"] for e in seen if e["event"] == "end" and e["outcome"] == "skipped"}
    started = {e["case_id"] for e in seen if e["event"] == "start"} - stopped
    records = load_records(run_files(pytester.path))
    assert {r["case_id"] for r in records} == started  # every case begun was finished
    folder = run_files(pytester.path)[0].with_suffix(".progress")
    controller = read_marker(folder, CONTROLLER_FILE)  # its stop_at: the progress headline's
    assert began + 600 < controller["stop_at"] < ended + 600  # "no case starts after HH:MM"
    in_gw0 = [json.loads(line) for line in (folder / "gw0.ndjson").open()]
    assert [e["event"] for e in in_gw0].count("start") == 1  # its first case, then the stop
    assert len(started) < 6  # gw1 saw gw0's stop: it started no case after it
