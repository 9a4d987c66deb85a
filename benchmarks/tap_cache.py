"""Feature methods with the teacher's taps memory-mapped from the cache vs. the teacher run
online, on the same cases: the `fashion` profile's fmnist_t → fmnist_m cases of methods whose
taps (fmnist_t's ``feats``: 4.5 GiB for 55,000 images) exceed the in-memory budget.

"online" is the code before the change: taps above ``TEACHER_OUTPUT_BUDGET`` ran the teacher on
every batch; it is that same code path, reached here by setting ``TEACHER_DISK_BUDGET`` to 0.
"mapped" is the change. Each case runs alternately online and mapped, ``--rounds`` times; the
one-time cost of writing the mapped entry (a teacher forward over the training set plus its
checksums) is timed apart. Printed: ``train_s`` per side, their ratio (online / mapped: > 1 means
the cache is faster) and whether both sides reached the same test top-1 and final loss.

    python benchmarks/tap_cache.py --losses at fitnet --epochs 1 --cache /tmp/kdcache
"""

from __future__ import annotations

import time

from _common import footer, header, median, parser

import kdbench.run.teachers as teachers
from kdbench.losses import LOSSES
from kdbench.matrix.profiles import PROFILES
from kdbench.run.engine import Engine

DISK_BUDGET = teachers.TEACHER_DISK_BUDGET


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--losses", nargs="+", default=["at", "fitnet"])
    p.add_argument("--student", default="fmnist_m")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--cache",
        default=".kdbench_cache",
        help="teacher cache (the teacher of the "
        "fashion profile trains 15 epochs, about 7 minutes, when it is not there)",
    )
    args = p.parse_args()
    header(args)
    specs = PROFILES.get("fashion").specs(("cpu",), seeds=1, epochs=args.epochs)
    ratios = []
    for loss in args.losses:
        spec = next(s for s in specs if s.loss == loss and s.student == args.student)
        taps = tuple(t for t in LOSSES.get(loss).taps if t != "index")
        engine = Engine(args.cache)
        start = time.perf_counter()
        engine.teachers.outputs(spec, taps, engine.data(spec))  # the mapped entry, written once
        print(
            f"{spec.name}: mapped entry of taps {', '.join(taps)} ready in "
            f"{time.perf_counter() - start:.1f} s (written if new, else checked and mapped)"
        )
        sides: dict[str, list[dict]] = {"online": [], "mapped": []}
        for _ in range(args.rounds):
            for side, budget in (("online", 0), ("mapped", DISK_BUDGET)):
                teachers.TEACHER_DISK_BUDGET = budget
                sides[side].append(Engine(args.cache).distill(spec).metrics)
        teachers.TEACHER_DISK_BUDGET = DISK_BUDGET
        train = {side: median([m["train_s"] for m in runs]) for side, runs in sides.items()}
        ratio = train["online"] / train["mapped"]
        ratios.append(ratio)
        same = all(
            a["top1"] == b["top1"] and a["final_loss"] == b["final_loss"]
            for a, b in zip(sides["online"], sides["mapped"])
        )
        print(
            f"  train_s online {train['online']:.1f} s ({sides['online'][0]['teacher_outputs']})"
            f", mapped {train['mapped']:.1f} s ({sides['mapped'][0]['teacher_outputs']}): "
            f"online / mapped = {ratio:.2f}; same top-1 and final loss: {same} "
            f"(top-1 {sides['online'][0]['top1']:.2f} / {sides['mapped'][0]['top1']:.2f})"
        )
    print(f"median ratio online / mapped over {len(ratios)} case(s): {median(ratios):.2f}")
    footer()


if __name__ == "__main__":
    main()
