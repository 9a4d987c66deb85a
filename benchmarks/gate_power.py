"""The regression gate's power, measured on real records: how often it catches a distillation
method that stopped working, and how often it cries wolf.

Input: the records of runs of one profile (the nightly gate's), each on its own seeds
(``--kd-first-seed``), and optionally a run on the first run's seeds at another thread count
(a harmless numerical change). The seeds of every case group are pooled over the runs (the
seeds ``ce`` has; a group without all of them is left out and named) and split into a
baseline and a current side of ``--seeds`` seeds each (disjoint: what a new run on fresh seeds
gives) — every such split where there are at most ``--draws`` of them, else ``--draws`` random
ones:

- **false alarms**: ``compare(baseline, current)`` unchanged — the share of splits in which the
  gate fails (the nightly would turn red) and the share of case groups flagged a regression;
  and the thread-count run against the run on the same seeds;
- **detection**, per method: in each split every method collapses in the current side — its
  records take the metrics of that side's ``ce`` records of the same seeds (sizes stay its
  own): what a distillation term that stopped acting gives on the CPU where the method keeps
  CE at weight 1 (same seed, same initialisation and data order: tests/test_gate.py zeroes
  AT's term in a real run and gets ce to the bit); where its CE weight is smaller (kd: 0.1)
  the student is a weaker one than ce, a larger drop. Caught when the gate calls that method's
  case a regression. A second plant puts the collapse one test image above ``ce`` (+0.01
  points of top-1 and agreement): not identical, so only the statistical checks can catch it.

The target counts the methods that clearly beat ``ce`` on the pooled seeds: a gain of at least
``QUALIFYING_GAIN`` points of test top-1, and more than twice the method's own seed std.
``--grid`` measures a set of candidate thresholds instead (how results/gate/gate.toml was
chosen: on seeds 0–5; the rates it reports are measured on seeds 6–11):

    python benchmarks/gate_power.py results/gate/seeds-6-11.jsonl --config results/gate/gate.toml \\
        --threads-run results/baseline-fashion-gate.jsonl results/gate/seeds-0-2-threads2.jsonl
    python benchmarks/gate_power.py results/baseline-fashion-gate.jsonl \\
        results/gate/seeds-3-5.jsonl --config results/gate/gate.toml --grid
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kdbench.gate.compare import Side, compare
from kdbench.gate.decide import BASELINE
from kdbench.gate.thresholds import RELATIVE, Thresholds, parse_assignments
from kdbench.results import load_records

Record = dict[str, Any]
QUALIFYING_GAIN = 1.0  # points of test top-1 over ce
NEAR = 0.01  # one test image of 10,000, in points
SIZES = ("student_params", "teacher_params", "extra_params", "compression", "student_flops")


@dataclass
class Pool:
    """Every record of every case group, by group and seed, pooled over runs; the seeds are
    those of the ``ce`` groups, and only groups that have every one of them take part."""

    records: dict[str, dict[int, Record]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # group → its name and seeds

    @classmethod
    def of(cls, records: list[Record]) -> Pool:
        by_group: dict[str, dict[int, Record]] = {}
        for r in records:
            by_group.setdefault(r["group_id"], {})[r["spec"]["seed"]] = r
        ce = [
            g for g, rs in by_group.items() if next(iter(rs.values()))["spec"]["loss"] == BASELINE
        ]
        if not ce:
            raise SystemExit("no ce records: nothing to measure a gain or a collapse against")
        seeds = set.intersection(*(set(by_group[g]) for g in ce))
        pool = cls()
        for group, rs in by_group.items():
            if seeds <= set(rs):
                pool.records[group] = {s: rs[s] for s in seeds}
            else:
                pool.left_out[group] = f"{name(next(iter(rs.values())))} (seeds {_span(rs)})"
        return pool

    def seeds(self) -> list[int]:
        return sorted(next(iter(self.records.values())))

    def side(self, seeds: list[int]) -> list[Record]:
        return [self.records[g][s] for g in self.records for s in seeds]


def name(record: Record) -> str:
    """The case's name without its data set and seed: ``fmnist_t/fmnist_m-kd-T4-cpu``."""
    return record["name"].removeprefix(f"{record['spec']['dataset']}-").rsplit("-s", 1)[0]


@dataclass(frozen=True)
class Method:
    group: str
    name: str
    gain: float  # mean per-seed gain of test top-1 over ce, points
    std: float  # the method's own seed std of test top-1

    @property
    def qualifies(self) -> bool:
        return self.gain >= QUALIFYING_GAIN and self.gain > 2 * self.std


def methods(pool: Pool) -> list[Method]:
    """Every distillation method whose seeds are all ok, with its gain over ce of the same
    pair and setting and its own seed std (over every pooled seed), best gain first."""
    records = [r for rs in pool.records.values() for r in rs.values()]
    ce_of = Side(records).ce_groups()
    out = []
    for group, rs in pool.records.items():
        ce = pool.records.get(ce_of.get(group, ""))
        if not ce or not all(r["status"] == "ok" for r in [*rs.values(), *ce.values()]):
            continue
        top1 = np.array([rs[s]["metrics"]["top1"] for s in sorted(rs)])
        gain = top1 - np.array([ce[s]["metrics"]["top1"] for s in sorted(rs)])
        out.append(
            Method(
                group, name(next(iter(rs.values()))), float(gain.mean()), float(top1.std(ddof=1))
            )
        )
    return sorted(out, key=lambda m: -m.gain)


def collapse(side: list[Record], groups: set[str], shift: float = 0.0) -> list[Record]:
    """``side`` with the records of ``groups`` carrying what the ``ce`` records of the same
    pair, setting and seed measured (``shift`` points added to top-1 and agreement) — a
    distillation term that stopped acting: the student trains as ``ce`` does, its loss keeps
    its parts (sizes are the method's own)."""
    ce_of = {
        (r["spec"]["teacher"], r["spec"]["student"], r["spec"]["seed"]): r
        for r in side
        if r["spec"]["loss"] == BASELINE
    }
    out = []
    for r in side:
        if r["group_id"] in groups:
            ce = ce_of[r["spec"]["teacher"], r["spec"]["student"], r["spec"]["seed"]]
            metrics = {
                **copy.deepcopy(ce["metrics"]),
                **{k: r["metrics"][k] for k in SIZES if k in r["metrics"]},
            }
            for metric in RELATIVE:
                if metrics.get(metric) is not None:
                    metrics[metric] += shift
            r = {**r, "metrics": metrics}
        out.append(r)
    return out


@dataclass
class Power:
    draws: int = 0
    failed_draws: int = 0  # splits in which the unchanged comparison failed the gate
    flagged_groups: int = 0
    groups: int = 0
    planted: dict[str, int] = field(default_factory=dict)  # group → collapses planted
    caught: dict[str, int] = field(default_factory=dict)  # identical to ce
    caught_near: dict[str, int] = field(default_factory=dict)  # one test image off ce

    @property
    def false_alarm_run_rate(self) -> float:
        return self.failed_draws / self.draws

    @property
    def false_alarm_group_rate(self) -> float:
        return self.flagged_groups / self.groups

    def detection(self, groups: list[str], near: bool = False) -> tuple[int, int]:
        """(caught, planted) over ``groups``."""
        caught = self.caught_near if near else self.caught
        return sum(caught.get(g, 0) for g in groups), sum(self.planted.get(g, 0) for g in groups)


def splits(
    seeds: list[int], n: int, draws: int, rng: random.Random
) -> list[tuple[list[int], list[int]]]:
    """(baseline seeds, current seeds), disjoint, ``n`` each: every ordered split when there are
    at most ``draws`` of them (6 seeds pooled: 20), else ``draws`` random ones."""
    every = [
        (list(base), sorted(set(both) - set(base)))
        for both in itertools.combinations(seeds, 2 * n)
        for base in itertools.combinations(both, n)
    ]
    if len(every) <= draws:
        return every
    out = []
    for _ in range(draws):
        drawn = rng.sample(seeds, 2 * n)
        out.append((sorted(drawn[:n]), sorted(drawn[n:])))
    return out


def _regressions(result) -> set[str]:
    return set(result.cases.loc[result.cases["decision"].eq("regression"), "group_id"])


def measure(
    pool: Pool, seeds_per_side: int, draws: int, thresholds: Thresholds, rng: random.Random
) -> Power:
    """Both rates over the splits of ``pool``; every method with ok seeds collapses in every
    split (each method's decision is its own: one comparison plants them all)."""
    seeds = pool.seeds()
    if len(seeds) < 2 * seeds_per_side:
        raise SystemExit(
            f"{len(seeds)} seeds pooled ({seeds}): need {2 * seeds_per_side} for "
            f"two disjoint sides of {seeds_per_side}"
        )
    planted = {m.group for m in methods(pool)}
    power = Power()
    for base_seeds, cur_seeds in splits(seeds, seeds_per_side, draws, rng):
        base, cur = pool.side(base_seeds), pool.side(cur_seeds)
        result = compare(base, cur, thresholds)
        power.draws += 1
        power.failed_draws += result.failed
        power.flagged_groups += len(_regressions(result))
        power.groups += len(result.cases)
        for shift, caught in ((0.0, power.caught), (NEAR, power.caught_near)):
            flagged = _regressions(compare(base, collapse(cur, planted, shift), thresholds))
            for group in planted:
                caught[group] = caught.get(group, 0) + (group in flagged)
        for group in planted:
            power.planted[group] = power.planted.get(group, 0) + 1
    return power


def _rate(caught: int, planted: int) -> str:
    return f"{caught}/{planted} ({caught / planted:.0%})" if planted else "none planted"


def report(
    paths: list[str],
    threads_run: str | tuple[str, str] | None,
    thresholds: Thresholds,
    seeds: int | None = None,
    draws: int = 200,
    seed: int = 0,
) -> list[str]:
    """The lines ``main`` prints after its command line (the README shows them): the rates of
    ``thresholds`` on the runs of ``paths`` pooled, and per method its gain over ce, its own
    seed std and how often its collapse was caught. ``threads_run``: a run on the seeds of the
    first of ``paths`` at another thread count, or (a run, that run at another thread count)."""
    runs = [load_records([path], warn=False) for path in paths]
    pool = Pool.of([r for run in runs for r in run])
    n = seeds or len(pool.seeds()) // 2
    lines = [
        f"{len(pool.records)} case groups, seeds {_span(pool.seeds())} pooled from "
        f"{len(runs)} run(s); up to {draws} splits into {n} + {n} disjoint seeds (every "
        f"one where there are fewer); gate: {describe(thresholds)}"
    ]
    if pool.left_out:
        lines.append(
            "left out, without every seed of ce: " + ", ".join(sorted(pool.left_out.values()))
        )
    power = measure(pool, n, draws, thresholds, random.Random(seed))
    lines.append(
        f"false alarms, seeds only: the gate failed {power.failed_draws} of "
        f"{power.draws} runs ({power.false_alarm_run_rate:.1%}); "
        f"{power.flagged_groups} of {power.groups} case comparisons flagged "
        f"({power.false_alarm_group_rate:.2%})"
    )
    if threads_run:
        run, other = (paths[0], threads_run) if isinstance(threads_run, str) else threads_run
        lines.append(
            _threads(load_records([run], warn=False), load_records([other], warn=False), thresholds)
        )
    every = methods(pool)
    for what, groups in (
        (
            f"gain over ce ≥ {QUALIFYING_GAIN:g} point and > 2 × own seed std (the target)",
            [m.group for m in every if m.qualifies],
        ),
        (
            f"gain over ce ≥ {QUALIFYING_GAIN:g} point",
            [m.group for m in every if m.gain >= QUALIFYING_GAIN],
        ),
    ):
        lines.append(
            f"detection of a collapse to ce, methods with {what}, {len(groups)}: "
            f"identical to ce {_rate(*power.detection(groups))}; one test image off "
            f"ce (statistical checks alone) {_rate(*power.detection(groups, near=True))}"
        )
    lines.append(
        "per method (gain over ce ± its own seed std, test top-1 points, over the "
        "pooled seeds; * counted by the target): collapse caught identical / near"
    )
    width = max((len(m.name) for m in every), default=0)
    lines += [
        f"  {'*' if m.qualifies else ' '} {m.name:<{width}} {m.gain:+6.2f} ± {m.std:4.2f}"
        f"   {_rate(*power.detection([m.group]))} / "
        f"{_rate(*power.detection([m.group], near=True))}"
        for m in every
    ]
    return lines


def _span(seeds) -> str:
    seeds = sorted(seeds)
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _threads(run: list[Record], other: list[Record], thresholds: Thresholds) -> str:
    """The run against itself at another thread count (paired: the same seeds), unchanged and
    with every method of ``other`` collapsed to ce, identical and one test image off."""
    result = compare(run, other, thresholds, allow_missing=True)  # may be a subset
    threads = (
        sorted({r["env"]["threads"] for r in run}),
        sorted({r["env"]["threads"] for r in other}),
    )
    compared = result.cases[result.cases["decision"].ne("missing")]
    identical = int((result.metrics["why"] == "identical on every seed").sum())
    planted = {m.group for m in methods(Pool.of(other))}
    caught = [
        len(
            planted
            & _regressions(
                compare(run, collapse(other, planted, shift), thresholds, allow_missing=True)
            )
        )
        for shift in (0.0, NEAR)
    ]
    return (
        f"threads {threads[0]} → {threads[1]} on the same seeds (paired): "
        f"{'FAILED' if result.failed else 'passed'}, "
        f"{int(compared['decision'].eq('regression').sum())} of {len(compared)} case "
        f"groups run flagged; {identical} of {len(result.metrics)} metric checks identical; "
        f"its {len(planted)} methods collapsed: caught {caught[0]} identical to ce, "
        f"{caught[1]} one test image off"
    )


def describe(th: Thresholds) -> str:
    gated = [m for m in th.metrics if th.min_effect[m] > 0]
    return (
        f"α = {th.alpha:g}, minimum effects "
        + ", ".join(f"{m} {th.min_effect[m]:g}" for m in gated)
        + f"; gain over ce α = {th.alpha_gain:g}, "
        "minimum effects "
        + ", ".join(f"{m} {th.gain_min_for(m):g}" for m in RELATIVE if m in th.metrics)
    )


GRID = {
    "alpha": (0.01, 0.05),
    "top1": (1.0, 1.5),
    "gain_alpha": (0.01, 0.02, 0.05),
    "gain_top1": (0.5, 1.0, 1.5),
}


def grid(
    paths: list[str],
    thresholds: Thresholds,
    seeds: int | None,
    draws: int,
    seed: int,
    candidates: dict[str, tuple[float, ...]] = GRID,
) -> list[str]:
    """Every combination of ``candidates`` (α and top-1's minimum effect of the value check,
    α and top-1's minimum effect of the gain check) over ``thresholds``: false alarms and the
    detection of the qualifying collapses, identical to ce and one test image off."""
    pool = Pool.of([r for path in paths for r in load_records([path], warn=False)])
    n = seeds or len(pool.seeds()) // 2
    target = [m.group for m in methods(pool) if m.qualifies]
    lines = [
        f"seeds {_span(pool.seeds())}, {len(pool.records)} groups, {len(target)} "
        f"qualifying methods; runs failed, collapses caught (identical / near ce)"
    ]
    for alpha, top1, gain_alpha, gain_top1 in itertools.product(*candidates.values()):
        th = thresholds.updated(
            alpha=alpha,
            gain_alpha=gain_alpha,
            min_effect={"top1": top1},
            gain_min_effect={"top1": gain_top1},
        )
        power = measure(pool, n, draws, th, random.Random(seed))
        lines.append(
            f"α {alpha:g}, top1 {top1:g}, gain α {gain_alpha:g}, gain {gain_top1:g}: "
            f"failed {power.failed_draws}/{power.draws}; "
            f"{_rate(*power.detection(target))} / "
            f"{_rate(*power.detection(target, near=True))}"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="records of runs of one profile on disjoint seeds")
    p.add_argument(
        "--threads-run",
        nargs="+",
        metavar="RUN",
        help="records of a run on the first run's seeds at another thread count (all "
        "its cases or some); or two: a run, then that run at another count",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds a side (default: half the pooled seeds)"
    )
    p.add_argument(
        "--draws", type=int, default=200, help="the most splits (default 200; random ones beyond)"
    )
    p.add_argument("--seed", type=int, default=0, help="of the random splits (default 0)")
    p.add_argument(
        "--config",
        default=None,
        help="a TOML file with [tool.kdbench.compare] (the nightly's: "
        "results/gate/gate.toml; default: the project's, as compare)",
    )
    p.add_argument("--alpha", type=float, default=None, help="over the config's")
    p.add_argument(
        "--min-effect",
        action="append",
        default=[],
        metavar="METRIC=X",
        help="over the config's (repeatable)",
    )
    p.add_argument(
        "--grid",
        action="store_true",
        help="measure every candidate of GRID over the config instead",
    )
    args = p.parse_args()
    thresholds = Thresholds.load(
        args.config, alpha=args.alpha, min_effect=parse_assignments(args.min_effect, "min effect")
    )
    print(f"command: {' '.join(['python', *sys.argv])}")
    if len(args.threads_run or ()) > 2:
        p.error("--threads-run takes one run or two")
    threads = (
        tuple(args.threads_run)
        if len(args.threads_run or ()) == 2
        else (args.threads_run or [None])[0]
    )
    lines = (
        grid(args.runs, thresholds, args.seeds, args.draws, args.seed)
        if args.grid
        else report(args.runs, threads, thresholds, args.seeds, args.draws, args.seed)
    )
    print("\n".join(lines))
    print(f"numpy {np.__version__}; splits seeded with {args.seed}")


if __name__ == "__main__":
    main()
