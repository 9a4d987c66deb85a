"""The regression gate's power, measured on real records: how often it catches a distillation
method that stopped working, and how often it cries wolf.

Input: the records of several runs of one profile (the nightly gate's), each run on its own
seeds (``--kd-first-seed``), and optionally a run on the first run's seeds at another thread
count (a harmless numerical change). The seeds of a case group are pooled over the runs and
split into a baseline and a current side of ``--seeds`` seeds each (disjoint: what a new run
on fresh seeds gives) — every such split where there are at most ``--draws`` of them, else
``--draws`` random ones:

- **false alarms**: ``compare(baseline, current)`` unchanged — the share of draws in which the
  gate fails (the nightly would turn red) and the share of case groups flagged a regression;
  and the thread-count run against the run on the same seeds;
- **detection**: in each draw, every method whose baseline gain over ``ce`` (mean test top-1)
  exceeds twice the pooled seed standard deviation of its pair collapses in the current side:
  its records take the metrics of that side's ``ce`` records of the same seeds — exactly what
  a distillation term that became a no-op gives on the CPU (same seed, same initialisation and
  data order). Caught when the gate calls that method's case a regression.

    python benchmarks/gate_power.py results/baseline-fashion-gate.jsonl \\
        results/gate/seeds-3-5.jsonl --threads-run results/gate/seeds-0-2-threads2.jsonl \\
        --config results/gate/gate.toml
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kdbench.gate.compare import compare
from kdbench.gate.decide import BASELINE
from kdbench.gate.thresholds import Thresholds, parse_assignments
from kdbench.publish.summary import prepare
from kdbench.results import load_records, records_frame

Record = dict[str, Any]


@dataclass
class Pool:
    """Every ok record of every case group, by group and seed, pooled over runs."""

    records: dict[str, dict[int, Record]] = field(default_factory=dict)

    @classmethod
    def of(cls, records: list[Record]) -> "Pool":
        pool = cls()
        for r in records:
            pool.records.setdefault(r["group_id"], {})[r["spec"]["seed"]] = r
        return pool

    def seeds(self) -> list[int]:
        """The seeds every group has."""
        return sorted(set.intersection(*(set(s) for s in self.records.values())))

    def side(self, seeds: list[int]) -> list[Record]:
        return [self.records[g][s] for g in self.records for s in seeds]


def qualifying(records: list[Record]) -> dict[str, str]:
    """Methods whose mean test top-1 gain over ``ce`` exceeds twice the pooled seed std of
    their pair: group_id → the case's name. The pooled std is the root mean of the per-group
    seed variances of every group of the pair."""
    frame = prepare(records_frame(records))
    ok = frame[frame["status"].eq("ok")]
    stats = ok.groupby(["pair", "loss", "T", "group_id"], dropna=False)["top1"].agg(
        ["mean", "var"]).reset_index()
    out = {}
    for pair, rows in stats.groupby("pair"):
        pooled = math.sqrt(rows["var"].mean())
        ce = rows.loc[rows["loss"].eq(BASELINE), "mean"]
        if ce.empty:
            continue
        for row in rows[rows["loss"].ne(BASELINE)].itertuples():
            if row.mean - ce.iloc[0] > 2 * pooled:
                out[row.group_id] = f"{pair} {row.loss}" + ("" if math.isnan(row.T) else
                                                              f" T={row.T:g}")
    return out


SIZES = ("student_params", "teacher_params", "extra_params", "compression", "student_flops")


def collapse(side: list[Record], group: str) -> list[Record]:
    """``side`` with the records of ``group`` carrying what the ``ce`` records of the same
    pair, setting and seed measured — a distillation term that stopped acting: the student
    trains as ``ce`` does, its loss keeps its parts (sizes are the method's own)."""
    ce_of = {(r["spec"]["teacher"], r["spec"]["student"], r["spec"]["seed"]): r
             for r in side if r["spec"]["loss"] == BASELINE}
    out = []
    for r in side:
        if r["group_id"] == group:
            ce = ce_of[r["spec"]["teacher"], r["spec"]["student"], r["spec"]["seed"]]
            sizes = {k: r["metrics"][k] for k in SIZES if k in r["metrics"]}
            r = {**r, "metrics": {**copy.deepcopy(ce["metrics"]), **sizes}}
        out.append(r)
    return out


@dataclass
class Power:
    draws: int = 0
    failed_draws: int = 0  # draws in which the unchanged comparison failed the gate
    flagged_groups: int = 0
    groups: int = 0
    planted: int = 0
    caught: int = 0
    missed: dict[str, int] = field(default_factory=dict)

    @property
    def false_alarm_run_rate(self) -> float:
        return self.failed_draws / self.draws

    @property
    def false_alarm_group_rate(self) -> float:
        return self.flagged_groups / self.groups

    @property
    def detection_rate(self) -> float:
        return self.caught / self.planted if self.planted else math.nan


def splits(seeds: list[int], n: int, draws: int,
           rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """(baseline seeds, current seeds), disjoint, ``n`` each: every ordered split when there are
    at most ``draws`` of them (6 seeds pooled: 20), else ``draws`` random ones."""
    every = [(list(base), sorted(set(both) - set(base)))
             for both in itertools.combinations(seeds, 2 * n)
             for base in itertools.combinations(both, n)]
    if len(every) <= draws:
        return every
    out = []
    for _ in range(draws):
        drawn = rng.sample(seeds, 2 * n)
        out.append((sorted(drawn[:n]), sorted(drawn[n:])))
    return out


def measure(pool: Pool, seeds_per_side: int, draws: int, thresholds: Thresholds,
            rng: random.Random) -> Power:
    seeds = pool.seeds()
    if len(seeds) < 2 * seeds_per_side:
        raise SystemExit(f"{len(seeds)} seeds pooled: need {2 * seeds_per_side} for two "
                         f"disjoint sides of {seeds_per_side}")
    power = Power()
    for base_seeds, cur_seeds in splits(seeds, seeds_per_side, draws, rng):
        base, cur = pool.side(base_seeds), pool.side(cur_seeds)
        result = compare(base, cur, thresholds)
        power.draws += 1
        power.failed_draws += result.failed
        power.flagged_groups += int(result.cases["decision"].eq("regression").sum())
        power.groups += len(result.cases)
        for group, name in qualifying(base).items():
            planted = compare(base, collapse(cur, group), thresholds)
            decision = planted.cases.set_index("group_id").loc[group, "decision"]
            power.planted += 1
            power.caught += decision == "regression"
            if decision != "regression":
                power.missed[name] = power.missed.get(name, 0) + 1
    return power


def report(paths: list[str], threads_run: str | None, thresholds: Thresholds,
           seeds: int | None = None, draws: int = 200, seed: int = 0) -> list[str]:
    """The lines ``main`` prints after its command line (the README shows them)."""
    runs = [load_records([path], warn=False) for path in paths]
    n = seeds or len({r["spec"]["seed"] for r in runs[0]})
    pool = Pool.of([r for run in runs for r in run])
    lines = [f"{len(pool.records)} case groups, {len(pool.seeds())} seeds pooled from "
             f"{len(runs)} run(s); up to {draws} splits into {n} + {n} disjoint seeds (every "
             f"one where there are fewer); gate: α = {thresholds.alpha:g}, minimum effects "
             + ", ".join(f"{m} {thresholds.min_effect[m]:g}" for m in thresholds.metrics)]
    power = measure(pool, n, draws, thresholds, random.Random(seed))
    lines.append(f"false alarms, seeds only: the gate failed {power.failed_draws} of "
                 f"{power.draws} runs ({power.false_alarm_run_rate:.1%}); "
                 f"{power.flagged_groups} of {power.groups} case comparisons flagged "
                 f"({power.false_alarm_group_rate:.2%})")
    if threads_run:
        other = load_records([threads_run], warn=False)
        result = compare(runs[0], other, thresholds, allow_missing=True)  # may be a subset
        threads = sorted({r["env"]["threads"] for r in runs[0]}), \
            sorted({r["env"]["threads"] for r in other})
        compared = result.cases[result.cases["decision"].ne("missing")]
        identical = int((result.metrics["why"] == "identical on every seed").sum())
        lines.append(f"false alarms, threads {threads[0]} → {threads[1]} on the same seeds: "
                     f"{'FAILED' if result.failed else 'passed'}, "
                     f"{int(compared['decision'].eq('regression').sum())} of {len(compared)} "
                     f"case groups run flagged; {identical} of {len(result.metrics)} metric "
                     f"checks identical")
    lines.append(f"detection: {power.caught} of {power.planted} planted collapses caught "
                 f"({power.detection_rate:.1%}) — every method whose baseline gain over ce "
                 f"exceeds 2 × the pooled seed std of its pair, collapsed to ce in the current "
                 f"run")
    lines += [f"  missed {name}: {count} time(s)"
              for name, count in sorted(power.missed.items(), key=lambda kv: -kv[1])]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="records of runs of one profile on disjoint seeds")
    p.add_argument("--threads-run", help="records of a run on the first run's seeds at "
                                         "another thread count (all its cases or some)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds a side (default: as many as the first run has)")
    p.add_argument("--draws", type=int, default=200,
                   help="the most splits (default 200; random ones beyond)")
    p.add_argument("--seed", type=int, default=0, help="of the random splits (default 0)")
    p.add_argument("--config", default=None,
                   help="a TOML file with [tool.kdbench.compare] (the nightly's: "
                        "results/gate/gate.toml; default: the project's, as compare)")
    p.add_argument("--alpha", type=float, default=None, help="over the config's")
    p.add_argument("--min-effect", action="append", default=[], metavar="METRIC=X",
                   help="over the config's (repeatable)")
    args = p.parse_args()
    thresholds = Thresholds.load(args.config, alpha=args.alpha,
                                 min_effect=parse_assignments(args.min_effect, "min effect"))
    print(f"command: {' '.join(['python', *sys.argv])}")
    print("\n".join(report(args.runs, args.threads_run, thresholds, args.seeds, args.draws,
                           args.seed)))
    print(f"numpy {np.__version__}; splits seeded with {args.seed}")


if __name__ == "__main__":
    main()
