"""The students of ``fashion-tuned`` trained channels_last on the CPU vs. contiguous (the code
before the change), on the same cases: each of the profile's cases of the given losses and
students runs alternately contiguous and channels_last, ``--rounds`` times, for ``--epochs``
epochs. Printed per case: ``train_s`` of each side, their ratio (contiguous / channels_last: > 1
means channels_last is faster) and the test top-1 of each side (the same arithmetic in another
order: equal up to rounding, not bit for bit).

    python benchmarks/cpu_channels_last.py --students fmnist_xs fmnist_m --losses ce kd at

The teacher (fmnist_tl, 30 epochs) is read from ``--cache``, trained there when missing.
"""

from __future__ import annotations

from dataclasses import replace

from _common import footer, header, median, parser

from kdbench.matrix.profiles import PROFILES
from kdbench.run.engine import Engine


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--students", nargs="+", default=["fmnist_xs", "fmnist_s", "fmnist_m"])
    p.add_argument("--losses", nargs="+", default=["ce", "kd", "at"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--cache", default=".kdbench_cache")
    args = p.parse_args()
    header(args)
    specs = PROFILES.get("fashion-tuned").specs(("cpu",), seeds=1, epochs=args.epochs)
    engine = Engine(args.cache)
    for student in args.students:
        ratios = []
        for loss in args.losses:
            spec = next(s for s in specs if s.loss == loss and s.student == student)
            sides: dict[bool, list[dict]] = {False: [], True: []}
            for _ in range(args.rounds):
                for channels_last in sides:
                    case = replace(spec, channels_last=channels_last, tune="")
                    sides[channels_last].append(engine.distill(case).metrics)
            train = {side: median([m["train_s"] for m in runs]) for side, runs in sides.items()}
            ratios.append(train[False] / train[True])
            print(
                f"{student} {loss}: train_s contiguous {train[False]:.1f} s, channels_last "
                f"{train[True]:.1f} s: contiguous / channels_last = {ratios[-1]:.2f} (top-1 "
                f"{sides[False][0]['top1']:.2f} / {sides[True][0]['top1']:.2f})",
                flush=True,
            )
        print(f"{student}: median ratio over {len(ratios)} loss(es): {median(ratios):.2f}")
    footer()


if __name__ == "__main__":
    main()
