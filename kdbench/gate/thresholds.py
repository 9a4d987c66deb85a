"""What the gate decides on: the metrics, their directions and units, the significance level,
the minimum effects and one-seed tolerances (defaults ← ``[tool.kdbench.compare]`` of the
project's pyproject.toml ← command-line overrides)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kdbench.matrix.config import find_pyproject, read_table
from kdbench.registry import KdbenchError

# metric → (direction: +1 higher is better, −1 lower is better; unit of its thresholds)
DIRECTIONS: dict[str, tuple[int, str]] = {
    "top1": (1, "points"),
    "top5": (1, "points"),
    "val_top1": (1, "points"),
    "best_top1": (1, "points"),
    "agreement": (1, "points"),
    "fidelity_kl": (-1, "%"),
    "train_throughput": (1, "%"),
    "train_throughput_online": (1, "%"),
    "infer_throughput": (1, "%"),
    "latency_ms": (-1, "%"),
    "peak_mem_mb": (-1, "%"),
    "train_s": (-1, "%"),
    "student_params": (-1, "%"),
    "extra_params": (-1, "%"),
    "student_flops": (-1, "%"),
}


# The default gate: what does not depend on the machine or its load. Speed and memory moved
# 30–60 % between two sessions of the same code on a shared CPU; gate them only between runs on
# one quiet machine (`--metrics top1,train_throughput,…`).
GATED = ("top1", "agreement", "fidelity_kl", "student_params", "extra_params", "student_flops")


RELATIVE = ("top1", "agreement")  # also checked as a gain over ce of the same pair and seed


MIN_EFFECT = {
    "top1": 1.0,
    "top5": 1.0,
    "val_top1": 1.0,
    "best_top1": 1.0,
    "agreement": 1.0,
    "fidelity_kl": 25.0,
    "train_throughput": 15.0,
    "train_throughput_online": 15.0,
    "infer_throughput": 15.0,
    "latency_ms": 15.0,
    "peak_mem_mb": 15.0,
    "train_s": 15.0,
    "student_params": 0.0,
    "extra_params": 0.0,
    "student_flops": 0.0,
}


TABLE = "tool.kdbench.compare"
KEYS = ("alpha", "metrics", "min_effect", "tolerance", "gain_alpha", "gain_min_effect")


def _check_metrics(names: Iterable[str], what: str) -> None:
    for name in names:
        if name not in DIRECTIONS:
            raise KdbenchError(f"unknown metric {name!r} in {what}: valid: {', '.join(DIRECTIONS)}")


@dataclass(frozen=True)
class Thresholds:
    """What counts as a change: significance level, gated metrics, minimum effects, tolerances
    for sides without a noise estimate."""

    alpha: float = 0.01
    metrics: tuple[str, ...] = GATED
    min_effect: dict[str, float] = field(default_factory=lambda: dict(MIN_EFFECT))
    tolerance: dict[str, float] = field(default_factory=dict)  # default 2 × min_effect
    # the gain over ce check's own (its per-seed gains are another quantity than the metric)
    gain_alpha: float | None = None  # default alpha
    gain_min_effect: dict[str, float] = field(default_factory=dict)  # default min_effect

    def tolerance_for(self, metric: str) -> float:
        return self.tolerance.get(metric, 2.0 * self.min_effect[metric])

    @property
    def alpha_gain(self) -> float:
        return self.alpha if self.gain_alpha is None else self.gain_alpha

    def gain_min_for(self, metric: str) -> float:
        return self.gain_min_effect.get(metric, self.min_effect[metric])

    def updated(
        self,
        alpha: float | None = None,
        metrics: Iterable[str] | None = None,
        min_effect: dict[str, float] | None = None,
        tolerance: dict[str, float] | None = None,
        gain_alpha: float | None = None,
        gain_min_effect: dict[str, float] | None = None,
    ) -> Thresholds:
        for what, names in (
            ("metrics", metrics or ()),
            ("min_effect", min_effect or {}),
            ("tolerance", tolerance or {}),
            ("gain_min_effect", gain_min_effect or {}),
        ):
            _check_metrics(names, what)
        for name, value in (("alpha", alpha), ("gain_alpha", gain_alpha)):
            if value is not None and not 0.0 < value < 1.0:
                raise KdbenchError(f"invalid {name} {value!r}: must be in (0, 1)")
        return replace(
            self,
            alpha=self.alpha if alpha is None else float(alpha),
            metrics=self.metrics if metrics is None else tuple(metrics),
            min_effect={**self.min_effect, **(min_effect or {})},
            tolerance={**self.tolerance, **(tolerance or {})},
            gain_alpha=self.gain_alpha if gain_alpha is None else float(gain_alpha),
            gain_min_effect={**self.gain_min_effect, **(gain_min_effect or {})},
        )

    @classmethod
    def load(cls, where: Path | str | None = None, **overrides: Any) -> Thresholds:
        """Defaults, then ``[tool.kdbench.compare]`` of the project's pyproject.toml, then
        ``overrides`` (keyword arguments of ``updated``; the command line). ``where`` is a
        pyproject.toml, or a folder to look from (default: the current one): the nearest
        pyproject.toml with that table in it or above it (``find_pyproject``)."""
        start = Path(where or ".")
        if not start.exists():
            raise KdbenchError(
                f"no config file or folder at {str(start)!r}: give a "
                f"pyproject.toml with [tool.kdbench.compare]"
            )
        path = start if start.is_file() else find_pyproject(start, TABLE)
        config = read_table(path, TABLE) if path else {}
        unknown = sorted(set(config) - set(KEYS))
        if unknown:
            raise KdbenchError(
                f"unknown key {unknown[0]!r} in [tool.kdbench.compare]: valid: " + ", ".join(KEYS)
            )
        return cls().updated(**config).updated(**overrides)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Thresholds:
        """``load`` with the options of ``add_options`` (``--config`` first, the rest over it)."""
        return cls.load(
            args.config,
            alpha=args.alpha,
            metrics=args.metrics.split(",") if args.metrics else None,
            min_effect=parse_assignments(args.min_effect, "--min-effect"),
            tolerance=parse_assignments(args.tolerance, "--tolerance"),
        )


def parse_assignments(items: Iterable[str], what: str) -> dict[str, float]:
    """``["top1=0.5", "infer_throughput=20%"]`` → ``{"top1": 0.5, "infer_throughput": 20.0}``."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value.strip().rstrip("%"))
        except ValueError:
            raise KdbenchError(
                f"invalid {what} {item!r}: expected METRIC=NUMBER, "
                "e.g. top1=1.0 or infer_throughput=15"
            ) from None
    return out


def add_options(p: argparse.ArgumentParser) -> None:
    """The command-line options of ``kdbench compare`` and ``kdbench history`` that
    ``Thresholds.from_args`` reads."""
    p.add_argument("--alpha", type=float, help="significance level of the t-test (0.01)")
    p.add_argument(
        "--metrics",
        metavar="M,...",
        help="gated metrics (default: "
        "kdbench.gate.compare.GATED, the machine-independent ones: accuracy, agreement, "
        "fidelity, sizes)",
    )
    p.add_argument(
        "--min-effect",
        nargs="+",
        default=[],
        metavar="METRIC=VALUE",
        help="minimum effect: points for top1/agreement, percent for the others",
    )
    p.add_argument(
        "--tolerance",
        nargs="+",
        default=[],
        metavar="METRIC=VALUE",
        help="one-seed tolerance (default: twice the minimum effect)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="pyproject.toml with [tool.kdbench.compare] (default: the nearest one "
        "with that table, from the current folder upwards)",
    )
