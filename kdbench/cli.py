"""``kdbench list | report | speed | compare | history | slurm | watch``.

    kdbench list losses|models|datasets|profiles|recipes
    kdbench report PATH... [--format md|csv|json|latex|html] [--out FILE] [--plots DIR]
                   [--baseline OUT] [--benchmark-action DIR]
    kdbench speed FOLDER... [--data-root DIR]
    kdbench compare BASELINE CURRENT [--format md|json] [--out FILE] [--alpha A]
                    [--metrics M,...] [--min-effect METRIC=VALUE ...] [--tolerance METRIC=VALUE ...]
                    [--allow-missing] [--config pyproject.toml]
    kdbench history RUN... [--format md|csv] [--out DIR] [--alpha A] [--metrics M,...]
                    [--min-effect ...] [--tolerance ...] [--config pyproject.toml]
    kdbench slurm [--kd-profile NAME] [--shards N] [--gpus G] [--kd-cases-per-gpu K] [--cpus C]
                  [--time LIMIT] [--stop-before S] [--partition P] [--results DIR]
                  [--baseline JSONL] [--submit]
                  [-- PYTEST_ARGS...]
    kdbench watch RESULTS [--interval S] [--once]

``list`` prints one name per line, then a details table. ``compare`` exits 0 without a
regression, 1 with one or with baseline cases missing from CURRENT (unless ``--allow-missing``),
2 on unusable input (corrupt lines included); ``history`` orders runs by date and marks the
steps ``compare`` decides between consecutive runs (``kdbench.gate.history``); ``slurm`` writes (and
submits) a sharded run as a SLURM job array and a merge job (``kdbench.scale.slurm``); ``watch``
follows a run until it ends (``kdbench.observe.watch``); ``speed`` measures a run's students
apart from the run, for its reports (``kdbench.run.speed``). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kdbench.gate.thresholds import add_options as add_threshold_options
from kdbench.publish.catalog import LISTERS
from kdbench.registry import KdbenchError
from kdbench.scale.time_limit import STOP_BEFORE

# ---------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    names, details = LISTERS[args.kind]()
    print("\n".join(names), flush=True)
    if names and not args.names_only:
        table = pd.DataFrame([{"name": n, **details(n)} for n in names])
        print()
        print(table.to_markdown(index=False))
    return 0


# ---------------------------------------------------------------- report / compare


def _load(paths: Sequence[str], *, strict: bool = False) -> tuple[list[dict], list[str]]:
    """(records of files/folders — the newest per case —, notes on what was left out). With
    ``strict`` a corrupt line makes the input unusable (the gate must not decide on part of
    it); otherwise skipped lines and superseded records are notes, also on stderr."""
    from kdbench.results import notes, read

    loaded = read(paths)
    if strict and loaded.bad_lines:
        raise KdbenchError(f"{loaded.skipped()}: unusable input")
    if not loaded.records:
        raise KdbenchError(f"no records in {', '.join(paths)}")
    for note in notes(loaded):
        print(f"kdbench: note: {note}", file=sys.stderr)
    return loaded.records, notes(loaded)


def _emit(text: str, out: str | None) -> None:
    if out:
        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text, encoding="utf-8")
        except OSError as exc:  # a folder, a path under a file, no permission, a full disk
            raise KdbenchError(
                f"cannot write {out} ({exc.strerror or exc}): choose another --out"
            ) from None
    else:
        sys.stdout.write(text)


def cmd_report(args: argparse.Namespace) -> int:
    from kdbench.publish.convergence import leaderboard_summary
    from kdbench.publish.formats import render
    from kdbench.publish.summary import load_published
    from kdbench.results import records_frame
    from kdbench.run.speed import applied

    records, notes = _load(args.paths)
    frame, published = records_frame(applied(records, args.paths)), load_published()
    _emit(render(frame, args.format, published, notes), args.out)
    summary = leaderboard_summary(frame) if args.benchmark_action or args.plots else None
    if args.benchmark_action:
        from kdbench.gate.history import write_benchmark_action

        for path in write_benchmark_action(summary, args.benchmark_action):
            print(f"kdbench: wrote {path}", file=sys.stderr)
    if args.plots:
        from kdbench.publish.plots import write_plots

        for path in write_plots(summary, args.plots):
            print(f"kdbench: wrote {path}", file=sys.stderr)
    if args.baseline:
        from kdbench.gate.compare import write_baseline

        count = write_baseline(records, args.baseline)
        print(f"kdbench: wrote baseline {args.baseline} ({count} records)", file=sys.stderr)
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from kdbench.run import speed

    return speed.main(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from kdbench.gate.compare import compare
    from kdbench.gate.thresholds import Thresholds

    thresholds = Thresholds.from_args(args)
    (baseline, _), (current, _) = (
        _load([path], strict=True) for path in (args.baseline, args.current)
    )
    result = compare(baseline, current, thresholds, allow_missing=args.allow_missing)
    _emit(result.to_json() + "\n" if args.format == "json" else result.to_markdown(), args.out)
    return 1 if result.failed else 0


def cmd_history(args: argparse.Namespace) -> int:
    from kdbench.gate.history import history
    from kdbench.gate.thresholds import Thresholds

    result = history(
        [(path, _load([path], strict=True)[0]) for path in args.runs], Thresholds.from_args(args)
    )
    for note in result.notes:
        print(f"kdbench: note: {note}", file=sys.stderr)
    if not args.out:
        _emit(result.to_csv() if args.format == "csv" else result.to_markdown(), None)
        return 0
    out = Path(args.out)
    _emit(result.to_markdown(), str(out / "history.md"))
    _emit(result.to_csv(), str(out / "history.csv"))
    written = [out / "history.md", out / "history.csv"]
    from kdbench.publish.plots import write_history_plots

    try:
        written += write_history_plots(result.trend, out)
    except KdbenchError as exc:
        print(f"kdbench: note: no plots: {exc}", file=sys.stderr)
    for path in written:
        print(f"kdbench: wrote {path}", file=sys.stderr)
    return 0


def cmd_slurm(args: argparse.Namespace) -> int:
    from kdbench.scale import slurm

    return slurm.main(args)


def cmd_watch(args: argparse.Namespace) -> int:
    from kdbench.observe import watch

    return watch.main(args)


def parser() -> argparse.ArgumentParser:
    from kdbench.publish.formats import FORMATS

    p = argparse.ArgumentParser(
        prog="kdbench",
        description="Knowledge-distillation benchmark: "
        "list registries, report records, compare against a baseline, "
        "run sharded on SLURM.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="registered names, one per line, then details")
    ls.add_argument("kind", choices=list(LISTERS))
    ls.add_argument("--names-only", action="store_true", help="only the names")
    ls.set_defaults(func=cmd_list)

    rp = sub.add_parser("report", help="leaderboards from record files or folders")
    rp.add_argument("paths", nargs="+", metavar="PATH", help="*.jsonl files or folders of them")
    rp.add_argument(
        "--format",
        choices=list(FORMATS),
        default="md",
        help="md, csv, json; latex: the paper table (booktabs); html: one "
        "self-contained page with sortable tables and the plots",
    )
    rp.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    rp.add_argument("--plots", metavar="DIR", help="write PNG plots here (needs matplotlib)")
    rp.add_argument(
        "--benchmark-action",
        metavar="DIR",
        help="also write bigger-is-better.json and smaller-is-better.json for "
        "github-action-benchmark (customBiggerIsBetter/customSmallerIsBetter)",
    )
    rp.add_argument(
        "--baseline",
        metavar="OUT",
        help="also write these records (newest per case) as a refreshed baseline, "
        "e.g. results/baseline.jsonl",
    )
    rp.set_defaults(func=cmd_report)

    sp = sub.add_parser(
        "speed",
        help="measure the inference speed of every student configuration of a run's records "
        "again, one at a time in this process, into FOLDER/speed.json; reports of FOLDER "
        "show these instead of what the cases measured beside the other workers",
    )
    from kdbench.run.speed import add_arguments as add_speed_arguments

    add_speed_arguments(sp)
    sp.set_defaults(func=cmd_speed)

    cp = sub.add_parser(
        "compare",
        help="regressions of CURRENT against BASELINE; "
        "exit 0: none, 1: regression, 2: unusable input",
    )
    cp.add_argument("baseline", metavar="BASELINE", help="baseline records (file or folder)")
    cp.add_argument("current", metavar="CURRENT", help="current records (file or folder)")
    cp.add_argument("--format", choices=("md", "json"), default="md")
    cp.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    add_threshold_options(cp)
    cp.add_argument(
        "--allow-missing",
        action="store_true",
        help="decide only on the cases CURRENT has (an intentional subset); by "
        "default baseline cases missing from CURRENT fail the gate (exit 1)",
    )
    cp.set_defaults(func=cmd_compare)

    hi = sub.add_parser(
        "history",
        help="trend of top-1 and training speed over runs, steps "
        "marked where kdbench compare decides one",
    )
    hi.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="the records of one run each (file or folder); ordered by date",
    )
    hi.add_argument(
        "--format", choices=("md", "csv"), default="md", help="what goes to stdout without --out"
    )
    hi.add_argument(
        "--out",
        metavar="DIR",
        help="write history.md, history.csv and <pair>-history.png plots here",
    )
    add_threshold_options(hi)
    hi.set_defaults(func=cmd_history)

    sl = sub.add_parser(
        "slurm",
        help="a sharded run as a SLURM job array (one pytest-split "
        "group per task) and a merge job: leaderboard, shard check, gate",
    )
    sl.add_argument("--kd-profile", default="quick", metavar="NAME", help="profile (quick)")
    sl.add_argument(
        "--shards", type=int, default=4, metavar="N", help="array tasks = pytest-split groups (4)"
    )
    sl.add_argument("--gpus", type=int, default=0, metavar="G", help="GPUs per task (0: CPU)")
    sl.add_argument(
        "--kd-cases-per-gpu",
        type=int,
        metavar="K",
        help="K pytest-xdist workers share each GPU (-n K·G); passed to pytest",
    )
    sl.add_argument("--cpus", type=int, metavar="C", help="CPUs per task (default: one per worker)")
    sl.add_argument(
        "--time",
        metavar="LIMIT",
        help="time limit per task, e.g. 4:00:00 (default: the partition's)",
    )
    sl.add_argument(
        "--stop-before",
        type=int,
        metavar="S",
        help="S seconds before the time limit a shard records its running cases and starts "
        f"no other (SIGUSR1); 0: never ({STOP_BEFORE}, at most half of --time)",
    )
    sl.add_argument("--partition", metavar="P", help="SLURM partition (default: the cluster's)")
    sl.add_argument(
        "--results",
        default="results/slurm",
        metavar="DIR",
        help="scripts, logs/ and <array job id>/ with the records (results/slurm)",
    )
    sl.add_argument(
        "--baseline",
        metavar="JSONL",
        help="the merge job gates the merged records against it (kdbench compare)",
    )
    sl.add_argument(
        "--submit",
        action="store_true",
        help="submit with sbatch: the array, then the merge after it",
    )
    sl.add_argument(
        "pytest_args",
        nargs="*",
        metavar="-- PYTEST_ARGS",
        help="more pytest options for every shard, e.g. -- --kd-epochs 2 -k kd",
    )
    sl.set_defaults(func=cmd_slurm)

    wa = sub.add_parser(
        "watch",
        help="follow a run going on elsewhere (a terminal, a SLURM "
        "array): cases done per shard, failures, ETA, the leaderboard; exits "
        "when the run ends (0: every session passed, 1: one failed)",
    )
    from kdbench.observe.watch import add_arguments

    add_arguments(wa)
    wa.set_defaults(func=cmd_watch)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        return args.func(args)
    except KdbenchError as exc:
        print(f"kdbench: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:  # `kdbench list losses | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
