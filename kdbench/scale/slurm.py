"""``kdbench slurm``: a sharded benchmark run as a SLURM job array and one dependent merge job.

kdbench writes two sbatch scripts and, with ``--submit``, hands them to ``sbatch``; SLURM does
all the scheduling. Array task i of N runs pytest-split group i of the suites and writes its
records to ``<results>/<array job id>/shard-<i>/``. The merge job starts when every task has
ended (``afterany``, so a failed shard still gets merged) and exits 0 only when every shard
finished and left records and, given a baseline, the regression gate passes; it writes the
leaderboard of all shards either way.

A shard's shell passes SIGUSR1 on to its pytest, which then records the cases it is running and
starts no other (``kdbench.plugin``): SLURM sends it ``--stop-before`` seconds before the time
limit (``#SBATCH --signal=B:USR1@…``), or ``scancel --batch --signal=USR1 JOB`` does at once.
The shard exits 2 with every case it began recorded; ``scontrol requeue`` of the task goes on
where it stopped (``--kd-resume``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from kdbench.registry import KdbenchError
from kdbench.scale import time_limit

SHARDS_SCRIPT = "shards.sbatch"
MERGE_SCRIPT = "merge.sbatch"
EXIT_FILE = "pytest-exit"  # a shard's pytest exit status, written when pytest returns
# pytest options that fix where and what a shard runs: kdbench slurm sets them itself
OWN_OPTIONS = {
    "--kd-results": "--results",
    "--kd-baseline": "--baseline",
    "--kd-profile": "--kd-profile before --",
    "--splits": "--shards",
    "--group": "--shards",
}


@dataclass(frozen=True)
class ShardedRun:
    """Everything the two scripts are written from (paths absolute)."""

    profile: str
    shards: int
    gpus: int
    cases_per_gpu: int | None  # None: one case per GPU, option not passed to pytest
    cpus: int
    time: str | None
    partition: str | None
    stop_before: int  # seconds before the time limit SLURM sends SIGUSR1; 0: never
    results: Path
    baseline: Path | None
    pytest_args: tuple[str, ...]
    root: Path
    python: str

    @property
    def workers(self) -> int:
        """pytest processes per task: K per GPU under pytest-xdist, one without GPUs."""
        return max(1, self.gpus * (self.cases_per_gpu or 1))

    def sbatch_lines(self, job_name: str, output: str) -> list[str]:
        lines = [f"--job-name={job_name}", f"--output={self.results / 'logs' / output}"]
        if self.time:
            lines.append(f"--time={self.time}")
        if self.partition:
            lines.append(f"--partition={self.partition}")
        return [f"#SBATCH {line}" for line in lines]

    def pytest_command(self) -> list[str]:
        """The shard's pytest command, one option per line; ``$shard`` and
        ``$SLURM_ARRAY_TASK_ID`` are left to bash."""
        q = shlex.quote
        lines = [
            f"{q(self.python)} -m pytest suites",
            f"--kd-profile {q(self.profile)}",
            '--kd-results "$shard" --kd-resume',
            f'--splits {self.shards} --group "$SLURM_ARRAY_TASK_ID"',
            f"--durations-path {q(str(self.root / '.test_durations'))}",
            f"--kd-device {'cuda' if self.gpus else 'cpu'}",
            f"--kd-threads {max(1, self.cpus // self.workers)}",
        ]
        if self.workers > 1:
            lines.append(f"-n {self.workers}")
        if self.cases_per_gpu is not None:
            lines.append(f"--kd-cases-per-gpu {self.cases_per_gpu}")
        if self.pytest_args:
            lines.append(shlex.join(self.pytest_args))
        return lines


def plan(args: argparse.Namespace) -> ShardedRun:
    """Check every input (one-line errors) before anything is written."""
    from kdbench.matrix.user_profiles import find_profiles, project_profiles

    project_profiles(find_profiles(Path.cwd())).get(args.kd_profile)
    for name, value, least in (
        ("--shards", args.shards, 1),
        ("--gpus", args.gpus, 0),
        ("--cpus", args.cpus, 1),
        ("--kd-cases-per-gpu", args.kd_cases_per_gpu, 1),
    ):
        if value is not None and value < least:
            raise KdbenchError(f"invalid {name} {value}: must be an integer ≥ {least}")
    if args.kd_cases_per_gpu is not None and not args.gpus:
        raise KdbenchError(f"--kd-cases-per-gpu {args.kd_cases_per_gpu} needs --gpus ≥ 1")
    stop_before = time_limit.stop_before(args.time, args.stop_before)
    if args.partition is not None and not re.fullmatch(r"[\w.,-]+", args.partition):
        raise KdbenchError(
            f"invalid --partition {args.partition!r}: a partition name "
            "(letters, digits, _ . - ; several separated by commas)"
        )
    for arg in args.pytest_args:
        option = arg.split("=", 1)[0]
        if option in OWN_OPTIONS:
            raise KdbenchError(
                f"pytest option {option} after --: kdbench slurm sets it "
                f"(use {OWN_OPTIONS[option]})"
            )
    baseline = Path(os.path.abspath(args.baseline)) if args.baseline else None
    if baseline and not baseline.is_file():
        raise KdbenchError(f"--baseline {args.baseline!r}: no such file")
    results = Path(os.path.abspath(args.results))
    if re.search(r"\s", str(results)):
        raise KdbenchError(
            f"invalid --results {str(results)!r}: #SBATCH --output cannot hold whitespace"
        )
    root = Path.cwd()
    if not (root / "suites").is_dir():
        raise KdbenchError(
            f"no suites folder in {root}: run kdbench slurm from the kdbench project root"
        )
    if args.submit and not shutil.which("sbatch"):
        raise KdbenchError(
            "--submit: sbatch not found on PATH (run on a SLURM login node, "
            "or write the scripts without --submit)"
        )
    run = ShardedRun(
        profile=args.kd_profile,
        shards=args.shards,
        gpus=args.gpus,
        cases_per_gpu=args.kd_cases_per_gpu,
        cpus=args.cpus or 1,
        time=args.time,
        partition=args.partition,
        stop_before=stop_before,
        results=results,
        baseline=baseline,
        pytest_args=tuple(args.pytest_args),
        root=root,
        python=os.path.abspath(sys.executable),
    )
    return run if args.cpus else replace(run, cpus=run.workers)  # default: a CPU per worker


def shards_script(run: ShardedRun) -> str:
    """Array task i: pytest-split group i of N into <results>/<array job id>/shard-<i>/."""
    resources = [f"#SBATCH --array=1-{run.shards}", f"#SBATCH --cpus-per-task={run.cpus}"]
    if run.gpus:
        resources.append(f"#SBATCH --gres=gpu:{run.gpus}")
    if run.stop_before:
        resources.append(f"#SBATCH --signal=B:USR1@{run.stop_before}")
    command = " \\\n    ".join(run.pytest_command())
    return "\n".join(
        [
            "#!/bin/bash",
            *run.sbatch_lines(f"kdbench-{run.profile}", "shard-%A_%a.out"),
            *resources,
            f"# kdbench slurm: profile {run.profile}, shard $SLURM_ARRAY_TASK_ID of {run.shards} "
            "(pytest-split group);",
            "# --kd-resume: a requeued task skips the cases it recorded. Submit it with the merge:",
            f"#   {submit_command(SHARDS_SCRIPT, MERGE_SCRIPT)}",
            "set -u",
            ': "${SLURM_ARRAY_TASK_ID:?run this script with sbatch: it is a job array}"',
            f"cd {shlex.quote(str(run.root))}",
            f"shard={shlex.quote(str(run.results))}/$SLURM_ARRAY_JOB_ID/shard-$SLURM_ARRAY_TASK_ID",
            'mkdir -p "$shard"',
            f'rm -f "$shard/{EXIT_FILE}"',
            "# SIGUSR1 (before the time limit, or scancel --batch --signal=USR1): pytest records",
            "# the cases it is running and starts no other; wait again until it has ended",
            "trap 'kill -USR1 \"${pid:-}\" 2>/dev/null' USR1",
            f"{command} &",
            "pid=$!",
            'wait "$pid"',
            "status=$?",
            'while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done',
            f'echo "$status" > "$shard/{EXIT_FILE}"',
            'exit "$status"',
            "",
        ]
    )


def merge_script(run: ShardedRun) -> str:
    """The merge job, given the array job id: shard checks, leaderboard, regression gate."""
    results = shlex.quote(str(run.results))
    kdbench = f"{shlex.quote(run.python)} -m kdbench.cli"
    gate = []
    if run.baseline:
        compare = '"$run/compare.md"'
        gate = [
            f'{kdbench} compare {shlex.quote(str(run.baseline))} "$run" --out {compare}',
            "gate=$?",
            f"cat {compare} 2>/dev/null",
            'echo "kdbench merge: regression gate exit $gate (0: no regression, '
            '1: regression, 2: unusable input)"',
            '[ "$gate" -gt "$status" ] && status=$gate',
        ]
    return "\n".join(
        [
            "#!/bin/bash",
            *run.sbatch_lines(f"kdbench-{run.profile}-merge", "merge-%j.out"),
            "#SBATCH --cpus-per-task=1",
            f"# kdbench slurm: the merge of the {run.shards} shards of profile {run.profile}; "
            "argument: the array job id.",
            "# Exit 2 when a shard is lost: no folder, no records, or its pytest did not "
            "finish (no",
            f"# {EXIT_FILE}: killed by the time limit, memory or a node failure) or exited with "
            "another",
            "# status than 0 or 1 (1: some cases failed; their records say how). Exit 1 on a",
            "# regression against the baseline. The leaderboard of what is there is written "
            "anyway.",
            "set -u",
            'job="${1:?usage: sbatch --dependency=afterany:ARRAY_JOB_ID merge.sbatch '
            'ARRAY_JOB_ID}"',
            f"cd {shlex.quote(str(run.root))}",
            f'run={results}/"$job"',
            "status=0",
            "shards=()",
            f"for i in $(seq 1 {run.shards}); do",
            '    shard="$run/shard-$i"',
            f'    log={results}/logs/shard-"$job"_"$i".out',
            '    if [ ! -d "$shard" ]; then',
            f'        echo "kdbench merge: shard $i/{run.shards} lost: no folder $shard '
            '(did the task run? see $log)" >&2',
            "        status=2",
            "        continue",
            "    fi",
            '    shards+=("$shard")',
            f'    code=$(cat "$shard/{EXIT_FILE}" 2>/dev/null)',
            f'    echo "kdbench merge: shard $i/{run.shards}: pytest exit ${{code:-none}}, '
            '$(cat "$shard"/runs/*.jsonl 2>/dev/null | wc -l) record line(s)"',
            '    case "$code" in',
            "        0|1) ;;",
            f'        "") echo "kdbench merge: shard $i/{run.shards} did not finish (killed: time '
            'limit, memory, node failure? see $log)" >&2; status=2 ;;',
            f'        *) echo "kdbench merge: shard $i/{run.shards}: pytest exited $code (2: '
            "interrupted or stopped before the time limit: scontrol requeue goes on, 3: internal "
            "error, 4: usage error, 5: no tests, more shards than cases?"
            '; see $log)" >&2; status=2 ;;',
            "    esac",
            f'    if ! {kdbench} report "$shard" --format csv --out /dev/null; then',
            f'        echo "kdbench merge: shard $i/{run.shards} lost its records (see $log)" >&2',
            "        status=2",
            "    fi",
            "done",
            'if [ "${#shards[@]}" -gt 0 ] && '
            f'{kdbench} report "${{shards[@]}}" --out "$run/leaderboard.md"; then',
            '    cat "$run/leaderboard.md"',
            '    echo "kdbench merge: leaderboard $run/leaderboard.md"',
            "else",
            "    status=2",
            "fi",
            *gate,
            'echo "kdbench merge: exit $status"',
            'exit "$status"',
            "",
        ]
    )


def submit_command(shards: Path | str, merge: Path | str) -> str:
    """The shell line that submits the array, then the merge after it."""
    return (
        f"id=$(sbatch --parsable {shards}) && "
        f"sbatch --dependency=afterany:${{id%%;*}} {merge} ${{id%%;*}}"
    )


def write_scripts(run: ShardedRun) -> tuple[Path, Path]:
    (run.results / "logs").mkdir(parents=True, exist_ok=True)  # sbatch --output needs it
    paths = run.results / SHARDS_SCRIPT, run.results / MERGE_SCRIPT
    for path, text in zip(paths, (shards_script(run), merge_script(run))):
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
    return paths


def sbatch(*args: str) -> str:
    """``sbatch --parsable ARGS``: the job id (a ``;cluster`` suffix dropped)."""
    proc = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise KdbenchError(f"sbatch {' '.join(args)} failed: {last}")
    return proc.stdout.strip().split(";")[0]


def main(args: argparse.Namespace) -> int:
    run = plan(args)
    shards_path, merge_path = write_scripts(run)
    print(f"scripts: {shards_path} (array 1-{run.shards}), {merge_path}")
    if args.submit:
        job = sbatch(str(shards_path))
        try:
            merge = sbatch(f"--dependency=afterany:{job}", str(merge_path), job)
        except KdbenchError as exc:
            raise KdbenchError(
                f"{exc}; the shards run as job {job}: submit the merge with "
                f"sbatch --dependency=afterany:{job} {merge_path} {job}"
            ) from None
        print(f"shards: job {job} (array 1-{run.shards})")
        print(f"merge: job {merge} (after every shard: afterany:{job})")
    else:
        job = "<array job id>"
        print(f"submit: {submit_command(shards_path, merge_path)}")
    print(f"records: {run.results / job}/shard-<i>/runs/")
    print(f"leaderboard: {run.results / job}/leaderboard.md")
    if run.baseline:
        print(f"compare: {run.results / job}/compare.md (baseline {run.baseline})")
    print(f"logs: {run.results / 'logs'}/")
    return 0
