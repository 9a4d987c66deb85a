"""When is a Fashion-MNIST student converged? ``ce`` (the student alone, kdbench's own training
loop and recipe) at E epochs and at 2E, per schedule: converged where the mean test top-1 at E is
within 0.5 points of the mean at 2E (issue 20). Step decay (recipe ``fmnist``), cosine
(``fmnist-cosine``) and one-cycle (``fmnist-onecycle``) side by side, seeds 0 … N−1.

    python benchmarks/convergence.py --students fmnist_m fmnist_s --epochs 4 8 16 --seeds 3

(a run of n epochs serves as E for one line and as 2E for another: 4 8 16 trains 4, 8, 16, 32).

Prints one line per (student, recipe, E): mean ± std test top-1 at E and 2E, the gap, and the
training seconds; and per (student, recipe) the smallest E that converged.
"""

from __future__ import annotations

import statistics
import time

import torch
from _common import footer, header, parser

from kdbench.data import load_dataset
from kdbench.models import build_model
from kdbench.publish.convergence import TOLERANCE
from kdbench.run.loop import Stage, cross_entropy, fit
from kdbench.run.taps import Tapper
from kdbench.spec import make_spec


def ce_top1(data, student: str, recipe: str, epochs: int, seed: int) -> float:
    """Test top-1 (%) of the ``ce`` case after ``epochs``: built and trained as kdbench does."""
    spec = make_spec(
        "fashion_mnist",
        "fmnist_t",
        student,
        "ce",
        seed=seed,
        recipe=recipe,
        epochs=epochs,
        teacher_epochs=15,
        batch_size=128,
    )
    torch.manual_seed(spec.seed)
    model = build_model(student, data.num_classes, data.input_shape)
    with Tapper(model, ()) as tapper:
        stats = fit(
            Stage(tapper, cross_entropy, student, epochs, seed, spec.name),
            spec,
            data,
            lambda message: None,
        )
    return stats.history[-1]["top1"]


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--students", nargs="+", default=["fmnist_m"])
    p.add_argument("--recipes", nargs="+", default=["fmnist", "fmnist-cosine", "fmnist-onecycle"])
    p.add_argument("--epochs", nargs="+", type=int, default=[4])
    p.add_argument("--seeds", type=int, default=1)
    args = p.parse_args()
    header(args)
    data = load_dataset("fashion_mnist")
    runs: dict[tuple, float] = {}  # a run of n epochs is E for one line and 2E for another

    def top1(student: str, recipe: str, epochs: int, seed: int) -> float:
        key = (student, recipe, epochs, seed)
        if key not in runs:
            runs[key] = ce_top1(data, *key)
        return runs[key]

    for student in args.students:
        for recipe in args.recipes:
            first = None
            for e in args.epochs:
                start = time.perf_counter()
                at = {
                    n: [top1(student, recipe, n, s) for s in range(args.seeds)] for n in (e, 2 * e)
                }
                gap = statistics.mean(at[2 * e]) - statistics.mean(at[e])
                ok = abs(gap) <= TOLERANCE
                first = first or (e if ok else None)
                print(
                    f"{student} {recipe} E={e}: {mean_std(at[e])} at E, {mean_std(at[2 * e])} "
                    f"at 2E, gap {gap:+.2f} ({'converged' if ok else 'not converged'}; "
                    f"{time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
            print(f"{student} {recipe}: smallest converged E among {args.epochs}: {first}")
    footer()


if __name__ == "__main__":
    main()
