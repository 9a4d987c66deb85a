"""kdbench.observe without pytest sessions: the event channel between processes, the state it
rebuilds, the ETA from earlier durations, the bounded line log, the live panel and watch."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from rich.console import Console

from kdbench.matrix.tuning import tuning_key
from kdbench.observe import channel, watch
from kdbench.observe.eta import Durations, format_seconds, known_durations, remaining
from kdbench.observe.progress import LOG_LINES, LineLog, headline, panel
from kdbench.observe.state import RunState


def events(folder, worker, *items):
    """Write ``(t, event, fields)`` items as ``worker``'s events, as EventLog does."""
    log = channel.EventLog(folder, worker)
    for t, event, fields in items:
        log.emit(event, **fields)
        lines = log.path.read_text().splitlines()
        lines[-1] = json.dumps({**json.loads(lines[-1]), "t": t})
        log.path.write_text("\n".join(lines) + "\n")


def plan(cases, pid=None):
    return {
        "cases": [[c, f"case-{c}"] for c in cases],
        "host": os.uname().nodename,
        "pid": pid or os.getpid(),
    }


def test_two_writers_rebuild_counts_running_cases_and_failures(tmp_path):
    folder = channel.progress_dir(tmp_path / "runs" / "r.jsonl")
    assert folder.name == "r.progress"
    events(
        folder,
        "gw0",
        (0, "plan", plan("abcd")),
        (1, "start", {"case_id": "a"}),
        (2, "tick", {"case_id": "a", "stage": "case-a", "epoch": 1, "epochs": 4}),
        (3, "end", {"case_id": "a", "outcome": "passed"}),
        (4, "start", {"case_id": "c"}),
        (5, "tick", {"case_id": "c", "stage": "teacher cnn_t", "epoch": 0.5, "epochs": 2}),
    )
    events(
        folder,
        "gw1",
        (0, "plan", plan("abcd")),
        (1, "start", {"case_id": "b"}),
        (2, "end", {"case_id": "b", "outcome": "failed"}),
    )
    state = RunState(folder).update()
    assert (state.planned, len(state.done()), state.left()) == (4, 2, 1)
    assert [c.case_id for c in state.failed()] == ["b"]
    (running,) = state.running()
    assert (running.worker, running.stage, running.fraction) == ("gw0", "teacher cnn_t", 0.25)
    assert state.cases["a"].ticks == 1 and state.cases["a"].seconds == 2
    assert not state.ended

    with open(folder / "gw1.ndjson", "a") as fh:  # a line being written is not read yet
        fh.write('{"t": 6, "event": "start", "case_id": "d"')
    assert state.update().left() == 1
    with open(folder / "gw1.ndjson", "a") as fh:
        fh.write("}\n")
    assert state.update().left() == 0 and len(state.running()) == 2
    channel.write_marker(folder, channel.END_FILE, exitstatus=1)
    assert state.update().ended and state.end["exitstatus"] == 1


def test_a_run_ends_with_its_end_marker_or_when_its_controller_is_gone(tmp_path):
    events(
        tmp_path,
        "gw0",
        (0, "plan", plan("ab")),
        (1, "start", {"case_id": "a"}),
        (2, "end", {"case_id": "a", "outcome": "passed"}),
        (3, "finish", {}),
    )
    channel.write_marker(tmp_path, channel.CONTROLLER_FILE)  # this process: alive
    state = RunState(tmp_path).update()
    assert not state.ended  # workers done, the controller still reporting
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = RunState(tmp_path)
    gone.controller = {"host": os.uname().nodename, "pid": int(dead.stdout)}
    assert gone.update().ended and gone.end is None  # killed: no end marker, no controller
    channel.write_marker(tmp_path, channel.END_FILE, exitstatus=0)
    assert state.update().ended and state.end["exitstatus"] == 0


def test_mid_epoch_ticks_are_throttled_epoch_ends_kept(tmp_path):
    log = channel.EventLog(tmp_path, "main")
    for step in range(200):
        log.tick("a", "case-a", step / 100, 2)
    ticks = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [t["epoch"] for t in ticks] == [0.0, 1.0]  # 1.0: an epoch end; the rest within 1 s


def test_eta_from_earlier_durations_scaled_to_this_runs_pace(tmp_path):
    records = [
        {"case_id": c, "spec": {"seed": 0}, "status": "ok", "metrics": {"train_s": 10.0}}
        for c in "abcd"
    ]
    records.append({"case_id": "e", "spec": {"seed": 0}, "status": "error", "metrics": {}})
    known = known_durations(records)
    assert known.cases == dict.fromkeys("abcd", 10.0)
    events(
        tmp_path,
        "main",
        (0, "plan", plan("abcde")),
        (0, "start", {"case_id": "a"}),
        (30, "tick", {"case_id": "a", "stage": "case-a", "epoch": 0, "epochs": 1}),
        (50, "end", {"case_id": "a", "outcome": "passed"}),
        (50, "start", {"case_id": "b"}),
        (50, "tick", {"case_id": "b", "stage": "case-b", "epoch": 0, "epochs": 4}),
        (55, "tick", {"case_id": "b", "stage": "case-b", "epoch": 1, "epochs": 4}),
    )
    state = RunState(tmp_path).update()
    # a: 30 s of setup (a worker's first case loads data and teachers), then 20 s for a 10 s
    # case: pace 2; b: 5 s an epoch, 3 left; c, d: 2 × 10 s; e (never done): a's last stage,
    # 20 s — not its 50 s of wall, whose setup the later cases do not repeat
    assert remaining(state, known, now=55) == pytest.approx(15 + 20 + 20 + 20)
    assert remaining(state, Durations(), now=55) == pytest.approx(15 + 3 * 20)
    fresh = RunState(tmp_path / "none")
    events(fresh.folder, "main", (0, "plan", plan("xy")))
    assert remaining(fresh.update(), Durations(), now=1) is None  # nothing tells yet
    assert [format_seconds(s) for s in (None, 5, 75, 3725)] == ["unknown", "5s", "1m15s", "1h02m"]


def test_line_log_is_bounded_by_cases_not_steps(tmp_path):
    cases = [f"{i:03d}" for i in range(4 * LOG_LINES)]
    items = [(0, "plan", plan(cases))]
    for i, case in enumerate(cases):
        items += [(i, "start", {"case_id": case})]
        items += [
            (
                i + s / 100,
                "tick",
                {"case_id": case, "stage": f"case-{case}", "epoch": s / 100, "epochs": 1},
            )
            for s in range(1, 101)
        ]
        items += [(i + 1, "end", {"case_id": case, "outcome": "passed"})]
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "main.ndjson").write_text(
        "".join(json.dumps({"t": t, "event": e, **f}) + "\n" for t, e, f in items)
    )
    lines: list[str] = []
    log = LineLog(lines.append, heartbeat=3600)
    state = RunState(folder)
    for _ in range(3):
        log.update(state.update(), Durations())
    assert len(lines) == LOG_LINES
    assert lines[-1].startswith(
        f"[kdbench] {len(cases)}/{len(cases)} done · 0 running · "
        "0 left · 0 failed · ETA 0s · main case-199 passed after "
        "epoch 1/1 in 1s"
    )


def test_a_case_no_record_has_takes_the_median_of_its_tuning_keys_records(tmp_path):
    """A new seed, or a tuned case after its trials: the same training at other seeds and
    settings tells its time (the other tests' plans carry no key, as an older kdbench's)."""

    def spec(loss, seed, temperature=None):
        return {
            "dataset": "d",
            "student": "s",
            "loss": loss,
            "seed": seed,
            "temperature": temperature,
        }

    def record(spec, train_s):
        return {
            "case_id": json.dumps(spec),
            "spec": spec,
            "status": "ok",
            "metrics": {"train_s": train_s},
        }

    runs = [("kd", 0, 1, 10.0), ("kd", 0, 4, 30.0), ("kd", 1, 4, 20.0), ("fitnet", 0, None, 100.0)]
    known = known_durations(record(spec(loss, seed, t), s) for loss, seed, t, s in runs)
    new = [spec("kd", 2, 2), spec("fitnet", 2), spec("kd", 0, 1)]
    cases = [[f"new-{i}", f"case-{i}", tuning_key(s)] for i, s in enumerate(new)]
    cases[2][0] = json.dumps(new[2])  # a case run before: its own record's time
    events(tmp_path, "main", (0, "plan", {**plan(""), "cases": cases}))
    assert remaining(RunState(tmp_path).update(), known, now=0) == pytest.approx(20 + 100 + 10)
    events(tmp_path / "other", "main", (0, "plan", {**plan(""), "cases": [["x", "x", "nokey"]]}))
    assert remaining(RunState(tmp_path / "other").update(), known, now=0) is None


def test_panel_shows_counts_eta_and_a_bar_per_running_case(tmp_path):
    events(
        tmp_path,
        "gw0",
        (0, "plan", plan("ab")),
        (0, "start", {"case_id": "a"}),
        (1, "tick", {"case_id": "a", "stage": "case-a", "epoch": 1.5, "epochs": 3}),
    )
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(panel(RunState(tmp_path).update(), Durations({"a": 1.0, "b": 1.0}), now=4))
    text = console.file.getvalue()
    assert "kdbench 0/2 done · 1 running · 1 left · 0 failed · ETA 4s" in text
    assert "gw0 case-a" in text and "epoch 1.5/3" in text and "━" in text


def test_watch_follows_shards_of_a_slurm_job_until_each_ends(tmp_path, capsys):
    job = tmp_path / "slurm" / "42"
    (tmp_path / "slurm" / "shards.sbatch").parent.mkdir(parents=True)
    (tmp_path / "slurm" / "shards.sbatch").write_text("#!/bin/bash\n#SBATCH --array=1-3\n")
    one = job / "shard-1" / "runs" / "20261201T000000.000000Z_x_1.progress"
    events(
        one,
        "gw0",
        (0, "plan", plan("ab")),
        (0, "start", {"case_id": "a"}),
        (1, "end", {"case_id": "a", "outcome": "failed"}),
    )
    two = job / "shard-2" / "runs" / "20261201T000000.000000Z_x_2.progress"
    events(two, "main", (0, "plan", plan("cd")), (1, "start", {"case_id": "c"}))
    seen = watch.Watch(job)
    shards = seen.shards()
    assert list(shards) == ["shard-1", "shard-2", "shard-3"] and shards["shard-3"] is None
    lines = seen.summary(shards, now=2)
    assert lines[0] == f"{job}: 1/4 done · 1 failed · ETA unknown"
    assert lines[1].startswith("  shard-1: 1/2 done · 0 running · 1 left · 1 failed")
    assert lines[3] == "  shard-3: not started"
    assert not seen.ended(shards)
    console = Console(file=io.StringIO(), width=120)
    console.print(seen.render())
    assert "shard-2:\nmain case-c" in console.file.getvalue()  # its running case, under it

    three = job / "shard-3" / "runs" / "20261201T000000.000000Z_x_3.progress"
    events(
        three,
        "main",
        (0, "plan", plan("e")),
        (0, "start", {"case_id": "e"}),
        (1, "end", {"case_id": "e", "outcome": "passed"}),
    )
    for folder, status in ((one, 1), (two, 0), (three, 0)):
        channel.write_marker(folder, channel.END_FILE, exitstatus=status)
    args = argparse.Namespace(results=str(job), interval=0.01, once=False)
    assert watch.main(args) == 1  # shard-1 failed
    out = capsys.readouterr().out
    assert f"{job}: 2/5 done · 1 failed · ended" in out
    assert "  shard-3: 1/1 done · 0 running · 0 left · 0 failed · ETA 0s · ended (exit 0)" in out


def test_watch_follows_a_run_going_on_and_ends_when_it_ends(tmp_path, capsys):
    folder = tmp_path / "results" / "runs" / "20261201T000000.000000Z_x_1.progress"
    events(folder, "gw0", (0, "plan", plan("ab")))

    def run() -> None:  # the run, in another process as far as watch can tell
        for event, case_id in (("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")):
            time.sleep(0.3)
            channel.EventLog(folder, "gw0").emit(event, case_id=case_id, outcome="passed")
        channel.write_marker(folder, channel.END_FILE, exitstatus=0)

    other = threading.Thread(target=run)
    other.start()
    args = argparse.Namespace(results=str(tmp_path / "results"), interval=0.05, once=False)
    assert watch.main(args) == 0
    other.join()
    out = capsys.readouterr().out
    for done in (
        "0/2 done · 0 failed · ETA unknown",
        "1/2 done · 0 failed · ETA",
        "2/2 done · 0 failed · ended",
    ):
        assert f"{tmp_path / 'results'}: {done}" in out


def test_a_stop_asked_for_or_planned_shows_in_the_headline(tmp_path):
    folder = tmp_path / "run.progress"
    events(folder, "gw0", (0, "plan", plan("ab")), (1, "start", {"case_id": "a"}))
    state = RunState(folder).update()
    assert "stopping" not in headline(state, None) and "stop-after" not in headline(state, None)
    stop_at = time.mktime((2026, 12, 8, 1, 17, 0, 0, 0, -1))  # 01:17 local time
    channel.write_marker(folder, channel.CONTROLLER_FILE, stop_at=stop_at)
    assert headline(RunState(folder).update(), None).endswith(
        "· no case starts after 01:17 (--kd-stop-after)"
    )
    channel.write_marker(folder, channel.STOP_FILE, signal=10)
    assert headline(state.update(), None).endswith(
        "· stopping: no case starts after the running ones"
    )
