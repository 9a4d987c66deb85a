"""``kdbench slurm``: the sbatch scripts it writes, its submission, the merge job's verdicts,
and a sharded smoke run on a real one-node SLURM cluster (marker ``slurm``)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_compare import draw, planted

from kdbench.cli import main
from kdbench.results import append_record
from kdbench.scale.time_limit import TIME_LIMIT, limit_seconds

ROOT = Path(__file__).resolve().parents[1]


def sbatch_options(script: str) -> dict[str, str]:
    return dict(
        line[len("#SBATCH --") :].split("=", 1)
        for line in script.splitlines()
        if line.startswith("#SBATCH --")
    )


def pytest_argv(script: str) -> list[str]:
    """The shard script's pytest command as argv (bash's line continuations joined)."""
    joined = script.replace("\\\n", " ")
    argv = shlex.split(next(line for line in joined.splitlines() if " -m pytest " in line))
    assert argv[-1] == "&"  # in the background: the shard's shell passes SIGUSR1 on to it
    return argv[:-1]


def write(tmp_path: Path, *args: str) -> tuple[str, str]:
    assert main(["slurm", "--results", str(tmp_path / "r"), *args]) == 0
    return (
        (tmp_path / "r" / "shards.sbatch").read_text(),
        (tmp_path / "r" / "merge.sbatch").read_text(),
    )


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # kdbench slurm runs from the project root (suites/)


def test_gpu_shards_script(at_root, tmp_path):
    shards, merge = write(
        tmp_path,
        "--kd-profile",
        "smoke",
        "--shards",
        "3",
        "--gpus",
        "2",
        "--kd-cases-per-gpu",
        "2",
        "--cpus",
        "8",
        "--time",
        "1-00:00",
        "--partition",
        "gpu",
        "--",
        "--kd-epochs",
        "2",
        "-k",
        "kd and not dkd",
    )
    options = sbatch_options(shards)
    assert options["array"] == "1-3"
    assert options["cpus-per-task"] == "8" and options["gres"] == "gpu:2"
    assert options["time"] == "1-00:00" and options["partition"] == "gpu"
    assert options["output"] == str(tmp_path / "r" / "logs" / "shard-%A_%a.out")
    assert (tmp_path / "r" / "logs").is_dir()  # sbatch does not create it
    assert f"cd {ROOT}" in shards.splitlines()
    argv = pytest_argv(shards)
    assert argv[:4] == [sys.executable, "-m", "pytest", "suites"]
    pairs = {option: argv[argv.index(option) + 1] for option in argv if option.startswith("-")}
    assert pairs["--kd-profile"] == "smoke" and pairs["--kd-results"] == "$shard"
    assert "--kd-resume" in argv  # a requeued task goes on where it stopped
    assert pairs["--splits"] == "3" and pairs["--group"] == "$SLURM_ARRAY_TASK_ID"
    assert pairs["--durations-path"] == str(ROOT / ".test_durations")
    assert pairs["--kd-device"] == "cuda"
    assert pairs["-n"] == "4" and pairs["--kd-cases-per-gpu"] == "2"  # K workers per GPU
    assert pairs["--kd-threads"] == "2"  # 8 CPUs over 4 workers
    assert argv[-4:] == ["--kd-epochs", "2", "-k", "kd and not dkd"]  # last: they win
    assert sbatch_options(merge)["time"] == "1-00:00" and "compare" not in merge
    for script in ("shards.sbatch", "merge.sbatch"):
        subprocess.run(["bash", "-n", str(tmp_path / "r" / script)], check=True)


def test_cpu_shards_script(at_root, tmp_path):
    shards, merge = write(tmp_path, "--kd-profile", "smoke", "--shards", "2")
    options = sbatch_options(shards)
    assert options["array"] == "1-2" and options["cpus-per-task"] == "1"
    assert not {"gres", "time", "partition"} & set(options)
    assert options["signal"] == "B:USR1@600"  # 10 minutes before the time limit
    argv = pytest_argv(shards)
    assert "-n" not in argv and "--kd-cases-per-gpu" not in argv  # no xdist without GPUs
    assert argv[argv.index("--kd-device") + 1] == "cpu"
    assert "for i in $(seq 1 2); do" in merge
    assert shlex.quote(sys.executable) + " -m kdbench.cli report" in merge


@pytest.fixture
def sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``sbatch`` on PATH: logs its arguments, answers job ids 4242;c1 then 4243;
    ``FAIL_MERGE`` in the environment makes the second call fail."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    (bin_dir / "sbatch").write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {log}\n'
        f"n=$(wc -l < {log})\n"
        '[ "$n" = 2 ] && [ -n "${FAIL_MERGE:-}" ] && { echo "sbatch: error: bad dependency" >&2; '
        "exit 1; }\n"
        '[ "$n" = 1 ] && echo "4242;c1" || echo 4243\n'
    )
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_submit_runs_the_merge_after_the_array(at_root, tmp_path, sbatch, capsys):
    baseline = tmp_path / "baseline.jsonl"
    baseline.write_text("{}\n")
    results = tmp_path / "r"
    assert (
        main(
            [
                "slurm",
                "--kd-profile",
                "smoke",
                "--shards",
                "3",
                "--results",
                str(results),
                "--baseline",
                str(baseline),
                "--submit",
            ]
        )
        == 0
    )
    assert sbatch.read_text().splitlines() == [
        f"--parsable {results}/shards.sbatch",
        f"--parsable --dependency=afterany:4242 {results}/merge.sbatch 4242",
    ]
    out = capsys.readouterr().out
    assert "shards: job 4242 (array 1-3)" in out and "merge: job 4243" in out
    assert f"records: {results}/4242/shard-<i>/runs/" in out
    assert f"leaderboard: {results}/4242/leaderboard.md" in out
    assert f"compare: {results}/4242/compare.md" in out


def test_failed_merge_submission_says_how_to_submit_it(
    at_root, tmp_path, sbatch, capsys, monkeypatch
):
    monkeypatch.setenv("FAIL_MERGE", "1")
    assert (
        main(["slurm", "--kd-profile", "smoke", "--results", str(tmp_path / "r"), "--submit"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad dependency" in err
    assert f"sbatch --dependency=afterany:4242 {tmp_path}/r/merge.sbatch 4242" in err


@pytest.mark.parametrize(
    "limit, seconds",
    [
        ("10", 600),
        ("10:30", 630),
        ("2:00:05", 7205),
        ("1-2", 93600),
        ("1-2:3", 93780),
        ("1-2:3:4", 93784),
    ],
)
def test_time_limits_in_seconds(limit, seconds):
    assert TIME_LIMIT.fullmatch(limit) and limit_seconds(limit) == seconds


@pytest.mark.parametrize("time, signal", [("10", "B:USR1@300"), ("4:00:00", "B:USR1@600")])
def test_the_stop_signal_comes_at_most_half_way_through_the_time_limit(
    at_root, tmp_path, time, signal
):
    """A short --time never gets a stop request at its start (the default 600 s would send it
    at once under --time 10)."""
    shards, _ = write(tmp_path, "--kd-profile", "smoke", "--time", time)
    assert sbatch_options(shards)["signal"] == signal


def test_stop_before_zero_sends_no_signal(at_root, tmp_path):
    shards, _ = write(tmp_path, "--kd-profile", "smoke", "--stop-before", "0")
    assert "signal" not in sbatch_options(shards)
    assert "trap 'kill -USR1" in shards  # scancel --batch --signal=USR1 still stops it


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shards", "0"], "invalid --shards 0"),
        (["--gpus", "-1"], "invalid --gpus -1"),
        (["--cpus", "0"], "invalid --cpus 0"),
        (["--gpus", "1", "--kd-cases-per-gpu", "0"], "invalid --kd-cases-per-gpu 0"),
        (["--kd-cases-per-gpu", "2"], "--kd-cases-per-gpu 2 needs --gpus"),
        (["--kd-profile", "smok"], "smoke"),
        (["--time", "2h"], "invalid --time '2h'"),
        (["--stop-before", "-1"], "invalid --stop-before -1: seconds from 0 (never) to 65535"),
        (["--stop-before", "70000"], "invalid --stop-before 70000"),
        (
            ["--time", "10", "--stop-before", "600"],
            "invalid --stop-before 600: must be under --time 10 (600 s), or 0 (never)",
        ),
        (["--partition", "a b"], "invalid --partition 'a b'"),
        (["--baseline", "nope.jsonl"], "--baseline 'nope.jsonl': no such file"),
        (
            ["--", "--kd-results", "x"],
            "--kd-results after --: kdbench slurm sets it (use --results)",
        ),
        (["--", "--splits=2"], "--splits after --"),
        (["--shards", "two"], "invalid int value: 'two'"),
        (["--results", "my results"], "#SBATCH --output cannot hold whitespace"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(at_root, tmp_path, capsys, args, message):
    assert main(["slurm", "--results", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "r").exists()


def test_outside_the_project_or_without_sbatch(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["slurm", "--results", "r"]) == 2
    assert f"no suites folder in {tmp_path}" in capsys.readouterr().err
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["slurm", "--results", str(tmp_path / "r"), "--submit"]) == 2
    assert "sbatch not found on PATH" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- the merge job, run by hand

JOB = "77"


@pytest.fixture
def merge(at_root, tmp_path):
    """``merge(...)`` → (exit status, stderr): the generated merge.sbatch, run with bash as
    SLURM would run it, over two shards holding alternate records of ``current`` (12 records,
    3 seeds; the baseline holds the same). Shard 1's pytest exited 0, shard 2's ``exit2``
    (None: no exit file); ``folder2``/``records2`` False drop shard 2's folder/records."""
    records = draw(np.random.default_rng(0))
    baseline = tmp_path / "baseline.jsonl"
    for r in records:
        append_record(baseline, r)
    write(tmp_path, "--kd-profile", "smoke", "--shards", "2", "--baseline", str(baseline))
    run = tmp_path / "r" / JOB

    def go(
        current: list[dict] = records,
        exit2: str | None = "1",
        folder2: bool = True,
        records2: bool = True,
        baseline_text: str | None = None,
    ) -> tuple[int, str]:
        shards = [(current[::2], "0"), (current[1::2] if records2 else [], exit2)][: 1 + folder2]
        for i, (part, status) in enumerate(shards, 1):
            (run / f"shard-{i}" / "runs").mkdir(parents=True)
            for r in part:
                append_record(run / f"shard-{i}" / "runs" / "a.jsonl", r)
            if status is not None:
                (run / f"shard-{i}" / "pytest-exit").write_text(status + "\n")
        if baseline_text is not None:
            baseline.write_text(baseline_text)
        proc = subprocess.run(
            ["bash", str(tmp_path / "r" / "merge.sbatch"), JOB], capture_output=True, text=True
        )
        return proc.returncode, proc.stderr

    return go


def test_merge_of_complete_shards_passes(merge, tmp_path):
    status, err = merge()
    assert status == 0, err
    board = (tmp_path / "r" / JOB / "leaderboard.md").read_text()
    assert all(re.search(rf"\|\s*{loss}\s*\|", board) for loss in ("ce", "kd", "mse_logits"))
    assert "no regression" in (tmp_path / "r" / JOB / "compare.md").read_text()


@pytest.mark.parametrize(
    "problem, message",
    [
        (dict(folder2=False), "shard 2/2 lost: no folder"),
        (dict(records2=False), "shard 2/2 lost its records"),
        (dict(exit2=None), "shard 2/2 did not finish"),
        (dict(exit2="2"), "shard 2/2: pytest exited 2"),
    ],
    ids=["no-folder", "no-records", "killed", "interrupted"],
)
def test_merge_fails_when_a_shard_is_lost(merge, tmp_path, problem, message):
    status, err = merge(**problem)
    assert status == 2 and message in err, err
    assert (tmp_path / "r" / JOB / "leaderboard.md").is_file()  # shard 1's, for a look


def test_merge_fails_on_a_regression(merge):
    worse = planted(draw(np.random.default_rng(0)), "kd", 4.0, top1=lambda v: v - 5.0)
    status, err = merge(current=worse)
    assert status == 1, err


def test_merge_fails_on_an_unusable_baseline(merge):
    status, err = merge(baseline_text="not json\n")
    assert status == 2 and "corrupt or torn record line" in err, err


# ---------------------------------------------------------------- a real one-node SLURM cluster

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sinfo", "squeue", "scontrol", "scancel")
DONE = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
)
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # daemons


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(*logs: Path, lines: int = 4) -> str:
    return " | ".join(
        f"{log.name}: " + " / ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
        for log in logs
        if log.is_file()
    )


def _slurm_conf(home: Path) -> str:
    node = subprocess.run(
        [shutil.which("slurmd", path=SBIN), "-C"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]  # NodeName=… CPUs=…
    host = node.split()[0].split("=", 1)[1]
    return "\n".join(
        [
            "ClusterName=kdbenchtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={home}/munge.socket",
            f"StateSaveLocation={home}/state",
            f"SlurmdSpoolDir={home}/spool",
            f"SlurmctldPidFile={home}/slurmctld.pid",
            f"SlurmdPidFile={home}/slurmd.pid",
            f"SlurmctldLogFile={home}/slurmctld.log",
            f"SlurmdLogFile={home}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=3600",  # finished jobs stay visible to scontrol (no accounting database)
            f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@pytest.fixture(scope="module")
def slurm() -> dict[str, str]:
    """A one-node SLURM cluster of this host (munged, slurmctld, slurmd in the foreground, all
    files in one temporary folder): the environment that points clients at it. Skipped when it
    cannot start; every daemon is stopped and every job cancelled at the end."""
    missing = [b for b in DAEMONS + CLIENTS if not shutil.which(b, path=SBIN)]
    if missing:
        pytest.skip(
            f"SLURM: {', '.join(missing)} not installed "
            "(apt-get install slurm-wlm slurm-client munge)"
        )
    if os.geteuid() != 0:
        pytest.skip("SLURM: the test cluster runs as root (SlurmUser=root)")
    # munged wants a socket path every user can reach: pytest's tmp folders are 0700
    home = Path(tempfile.mkdtemp(prefix="kdbench-slurm-"))
    home.chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(home / "slurm.conf")}
    daemons: dict[str, subprocess.Popen] = {}
    try:
        key = home / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        (home / "slurm.conf").write_text(_slurm_conf(home))
        for name, *args in (
            (
                "munged",
                "--foreground",
                f"--socket={home}/munge.socket",
                f"--key-file={key}",
                f"--log-file={home}/munged.log",
                f"--pid-file={home}/munged.pid",
                f"--seed-file={home}/munged.seed",
            ),
            ("slurmctld", "-D", "-f", str(home / "slurm.conf")),
            ("slurmd", "-D", "-f", str(home / "slurm.conf")),
        ):
            with open(home / f"{name}.out", "wb") as out:
                daemons[name] = subprocess.Popen(
                    [shutil.which(name, path=SBIN), *args],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # not hit by Ctrl-C
            for _ in range(20 if name == "munged" else 0):  # its socket before SLURM's first call
                if (home / "munge.socket").exists() or daemons[name].poll() is not None:
                    break
                time.sleep(0.25)
        deadline = time.monotonic() + 30
        while True:
            dead = [name for name, daemon in daemons.items() if daemon.poll() is not None]
            if dead:
                outputs = (home / f"{n}.{ext}" for n in dead for ext in ("out", "log"))
                pytest.skip(f"SLURM did not come up: {', '.join(dead)} exited: {_tail(*outputs)}")
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state == "idle":
                break
            if time.monotonic() > deadline:
                pytest.skip(
                    f"SLURM did not come up: node {state or 'missing'} after 30 s: "
                    + _tail(*(home / f"{n}.log" for n in daemons))
                )
            time.sleep(0.5)
        yield env
    finally:
        if "slurmctld" in daemons and daemons["slurmctld"].poll() is None:  # cancel the jobs
            subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
            for _ in range(20):  # let slurmd end the jobs' processes
                if not subprocess.run(
                    ["squeue", "-h"], env=env, capture_output=True, text=True
                ).stdout.strip():
                    break
                time.sleep(0.5)
        for daemon in reversed(daemons.values()):
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(home, ignore_errors=True)


def _job(env: dict[str, str], job: str) -> list[dict[str, str]]:
    """``scontrol show job -o``: one dict per job (one per task of an array)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True, check=True
    ).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line]


def _submit(env: dict[str, str], *args: str) -> tuple[str, str]:
    """``kdbench slurm --submit ARGS`` from the project root: (array job id, merge job id)."""
    submit = subprocess.run(
        [sys.executable, "-m", "kdbench.cli", "slurm", "--submit", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert submit.returncode == 0, submit.stderr
    array, merge = (
        re.search(rf"^{job}: job (\d+)", submit.stdout, re.M).group(1)
        for job in ("shards", "merge")
    )
    return array, merge


@pytest.mark.slurm
def test_sharded_smoke_run_on_slurm(slurm, tmp_path):
    """2 shards of the smoke profile as a SLURM array and the merge after it: every case
    recorded exactly once across the shards, one leaderboard of every method, merge exit 0."""
    env = {k: v for k, v in slurm.items() if not k.startswith("PYTEST")}  # sbatch exports it
    env["COLUMNS"] = "250"  # the shards' pytest -v lines keep their skip reasons (N/A)
    results = tmp_path / "results"
    array, merge = _submit(
        env,
        *("--kd-profile", "smoke", "--shards", "2", "--time", "10"),
        *("--results", str(results), "--", "--kd-epochs", "2"),
        *("--kd-cache", str(tmp_path / "cache"), "-v", "-p", "no:cacheprovider"),
    )
    collect = subprocess.run(  # what the shards should have run, while they run
        [
            sys.executable,
            "-m",
            "pytest",
            "suites",
            "--kd-profile",
            "smoke",
            "--kd-device",
            "cpu",
            "-m",
            "pair_case",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = re.findall(r"::\w+\[(.+)\]$", collect, re.M)
    assert len(expected) >= 20, collect

    deadline = time.monotonic() + 240
    while (job := _job(slurm, merge)[0])["JobState"] not in DONE:
        assert time.monotonic() < deadline, f"merge job still {job['JobState']}"
        time.sleep(1)
    logs = "\n".join(p.read_text() for p in sorted((results / "logs").glob("*.out")))
    tasks = _job(slurm, array)
    assert sorted(t["ArrayTaskId"] for t in tasks) == ["1", "2"]
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), logs[-3000:]
    assert "kdbench merge: exit 0" in logs

    run = results / array
    records = []
    for shard in ("shard-1", "shard-2"):
        lines = [
            json.loads(line)
            for f in (run / shard / "runs").glob("*.jsonl")
            for line in f.read_text().splitlines()
        ]
        assert lines, f"{shard} wrote no records"
        records += lines
    assert {(r["spec"]["epochs"], r["env"]["threads"]) for r in records} == {(2, 1)}
    names = [r["name"] for r in records]
    assert not [n for n, count in Counter(names).items() if count > 1]  # each case once
    assert set(names) <= set(expected)
    for name in set(expected) - set(names):  # not recorded: must be a not-applicable case
        assert re.search(rf"\[{re.escape(name)}\] SKIPPED \(N/A", logs), name
    board = (run / "leaderboard.md").read_text()
    methods = {r["spec"]["loss"] for r in records}
    assert all(re.search(rf"^\|\s*{m}\s*\|", board, re.M) for m in methods), board


@pytest.mark.slurm
def test_a_shard_stopped_by_sigusr1_records_every_case_it_began(slurm, tmp_path):
    """What SLURM does before a time limit (``#SBATCH --signal=B:USR1@…``), done at once with
    ``scancel --batch``: the shard's shell passes SIGUSR1 on, pytest finishes the cases it is
    running and starts no other, and the shard exits 2 (interrupted) with all of them recorded."""
    env = {k: v for k, v in slurm.items() if not k.startswith("PYTEST")}
    results = tmp_path / "results"
    array, _ = _submit(
        env,
        *("--kd-profile", "smoke", "--shards", "1", "--time", "10"),
        *("--results", str(results), "--", "--kd-epochs", "5"),
        *("--kd-cache", str(tmp_path / "cache"), "-p", "no:cacheprovider"),
    )
    shard = results / array / "shard-1"
    deadline = time.monotonic() + 240
    while not any(f.read_text() for f in shard.glob("runs/*.jsonl")):
        assert time.monotonic() < deadline, "no record from the shard"
        assert _job(slurm, array)[0]["JobState"] not in DONE, "the shard ended before a record"
        time.sleep(0.5)
    subprocess.run(["scancel", "--batch", "--signal=USR1", array], env=env, check=True)
    while (job := _job(slurm, array)[0])["JobState"] not in DONE:
        assert time.monotonic() < deadline, f"the shard is still {job['JobState']}"
        time.sleep(1)
    log = "".join(p.read_text() for p in (results / "logs").glob("shard-*.out"))
    assert (shard / "pytest-exit").read_text().strip() == "2", log[-3000:]
    assert "stop requested (SIGUSR1)" in log
    (progress,) = shard.glob("runs/*.progress")
    events = [json.loads(line) for f in progress.glob("*.ndjson") for line in f.open()]
    planned = {c[0] for e in events if e["event"] == "plan" for c in e["cases"]}
    started = {e["case_id"] for e in events if e["event"] == "start"}
    recorded = {
        json.loads(line)["case_id"] for f in shard.glob("runs/*.jsonl") for line in f.open()
    }
    assert recorded == started and len(started) < len(planned)
