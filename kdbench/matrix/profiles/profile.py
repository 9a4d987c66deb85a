"""Named matrices: a profile expands into the RunSpecs a suite runs.

Every registered loss is picked up automatically (``losses`` are name patterns over the LOSSES
registry); losses with a temperature are swept over ``temperatures`` when they match
``sweep``, the others run at their paper's default temperature.
"""

from __future__ import annotations

import fnmatch
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kdbench.losses import LOSSES
from kdbench.matrix import tuning as tuning_stage
from kdbench.matrix.tuning import WEIGHTS
from kdbench.registry import KdbenchError, Registry
from kdbench.spec import DEVICES, RunSpec, make_spec, pair_name

PROFILES = Registry("profiles")
WARN_CASES = 10_000  # a matrix this large is announced: its count and its time
MAX_CASES = 100_000  # and one larger is refused unless the user raises the limit

Pair = tuple[str, str]
Settings = Mapping[str, float]


@dataclass(frozen=True)
class Profile:
    """A matrix of cases. ``loss_options`` (loss → options) apply to every pair;
    ``pair_settings`` ((teacher, student) → loss → settings) override them for one pair, where a
    setting is ``temperature`` (then not swept), ``alpha``, ``ce_weight`` or a loss option.
    ``tuning`` (loss → setting → a few values) gives every method the same tuning budget on
    validation, its trials run on ``tuning_seed`` (``kdbench.matrix.tuning``); with
    ``paper_cases`` False a tuned profile runs no plain cases at the paper settings on its
    seeds (the paper setting is one of each method's trials). Per pair: ``pair_epochs`` (the
    students' epochs, else ``epochs``) and ``pair_losses`` (loss name patterns, else
    ``losses``). ``channels_last``: the students trained in that memory format on the CPU."""

    name: str
    description: str
    dataset: str
    pairs: tuple[Pair, ...]
    recipe: str
    epochs: int
    teacher_epochs: int
    batch_size: int = 64
    seeds: int = 3
    losses: tuple[str, ...] = ("*",)
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    sweep: tuple[str, ...] = ("*",)
    dataset_options: tuple[tuple[str, Any], ...] = ()
    loss_options: Mapping[str, Settings] = field(default_factory=dict)
    pair_settings: Mapping[Pair, Mapping[str, Settings]] = field(default_factory=dict)
    tuning: Mapping[str, tuning_stage.Grid] = field(default_factory=dict)
    tuning_seed: int = 100
    paper_cases: bool = True
    pair_epochs: Mapping[Pair, int] = field(default_factory=dict)
    pair_losses: Mapping[Pair, tuple[str, ...]] = field(default_factory=dict)
    channels_last: tuple[str, ...] = ()

    def loss_names(self, pair: Pair | None = None) -> list[str]:
        """The losses of ``pair``, or of every pair."""
        patterns = (
            [p for pr in self.pairs for p in self.pair_losses.get(pr, self.losses)]
            if pair is None
            else self.pair_losses.get(pair, self.losses)
        )
        return [n for n in LOSSES.names() if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    def plain_cases(self) -> bool:
        """Whether the cases at the paper settings run on the profile's seeds."""
        return self.paper_cases or not self.tuning

    def settings(self, pair: Pair, loss: str) -> dict[str, float]:
        """The loss's options and weights for one pair: the profile's, then the pair's."""
        return {**self.loss_options.get(loss, {}), **self.pair_settings.get(pair, {}).get(loss, {})}

    def temperatures_for(self, loss: str, settings: Settings) -> tuple[float | None, ...]:
        cls = LOSSES.get(loss)
        if not cls.uses_temperature:
            return (None,)
        if "temperature" in settings:
            return (settings["temperature"],)
        if any(fnmatch.fnmatchcase(loss, p) for p in self.sweep):
            return self.temperatures
        return (cls.default_temperature,)

    def check_tuning(self) -> None:
        """A one-line ``KdbenchError`` for tuning grids that break the equal budget."""
        tuning_stage.check(
            self.tuning,
            self.tuning_seed,
            self.loss_names(),
            lambda loss: (
                (pair_name(*pair), self.settings(pair, loss))
                for pair in self.pairs
                if loss in self.loss_names(pair)
            ),
        )

    def check_pairs(self) -> None:
        """A one-line ``KdbenchError`` for per-pair epochs or losses of a pair not in ``pairs``,
        or per-pair losses that name none."""
        for what, table in (("pair_epochs", self.pair_epochs), ("pair_losses", self.pair_losses)):
            for pair in table:
                if pair not in self.pairs:
                    raise KdbenchError(
                        f"{what}: pair {pair_name(*pair)} is not among the profile's pairs: "
                        f"valid: {', '.join(pair_name(*p) for p in self.pairs)}"
                    )
        for pair in self.pair_losses:
            if not self.loss_names(pair):
                raise KdbenchError(
                    f"pair_losses: {', '.join(self.pair_losses[pair])} names no loss of pair "
                    f"{pair_name(*pair)}: valid: {', '.join(LOSSES.names())}"
                )

    def size(self, devices: tuple[str, ...] = DEVICES, seeds: int | None = None) -> int:
        """How many cases ``specs`` makes, counted without making them."""
        configurations = sum(
            len(self.temperatures_for(loss, self.settings(pair, loss)))
            for pair in self.pairs
            for loss in self.loss_names(pair)
            if self.plain_cases()
        )
        if self.tuning:  # a tuned configuration per loss
            configurations += sum(len(self.loss_names(pair)) for pair in self.pairs)
        trials = sum(
            len(tuning_stage.points(self.tuning[loss]))
            for pair in self.pairs
            for loss in self.loss_names(pair)
            if loss in self.tuning
        )
        return (configurations * (self.seeds if seeds is None else seeds) + trials) * len(devices)

    def specs(
        self,
        devices: tuple[str, ...] = DEVICES,
        seeds: int | None = None,
        epochs: int | None = None,
        precision: str = "auto",
        first_seed: int = 0,
        compile: bool = False,
        teacher_ckpts: dict[str, str] | None = None,
    ) -> list[RunSpec]:
        """Every case: pair × loss × temperature × device × seed (ids readable, order stable);
        with ``tuning``, the trials first and a tuned case per pair × loss × device × seed.

        Seeds are ``first_seed`` … ``first_seed + seeds − 1`` (another run of the same
        configuration on fresh seeds: ``first_seed=seeds``).
        ``precision="auto"`` runs CUDA cases with AMP and CPU cases in fp32; ``teacher_ckpts``
        maps teacher names to checkpoints that replace training them. Each spec is validated as
        it is made (``RunSpec``), the loss's own constraints included: a profile that cannot
        run fails here, before any training."""
        ckpts = teacher_ckpts or {}
        n_seeds = self.seeds if seeds is None else seeds
        if not isinstance(n_seeds, int) or n_seeds < 1:
            raise KdbenchError(f"invalid number of seeds {n_seeds!r}: must be an integer ≥ 1")
        self.check_pairs()
        self.check_tuning()
        seed_range = range(first_seed, first_seed + n_seeds)
        trials, specs = [], []
        for pair in self.pairs:
            for loss in self.loss_names(pair):
                settings = self.settings(pair, loss)

                def cases(
                    setting: Settings,
                    t: float | None,
                    seeds: Iterable[int],
                    tune: str = "",
                    pair: Pair = pair,
                    loss: str = loss,
                ) -> list[RunSpec]:
                    options = {k: v for k, v in setting.items() if k not in WEIGHTS}
                    return [
                        make_spec(
                            self.dataset,
                            *pair,
                            loss,
                            temperature=t,
                            seed=seed,
                            device=device,
                            recipe=self.recipe,
                            batch_size=self.batch_size,
                            epochs=self.pair_epochs.get(pair, self.epochs)
                            if epochs is None
                            else epochs,
                            teacher_epochs=self.teacher_epochs,
                            dataset_options=self.dataset_options,
                            precision=_precision(precision, device),
                            compile=compile,
                            loss_options=tuple(sorted(options.items())),
                            teacher_ckpt=ckpts.get(pair[0]),
                            alpha=setting.get("alpha"),
                            ce_weight=setting.get("ce_weight"),
                            tune=tune,
                            channels_last=device == "cpu" and pair[1] in self.channels_last,
                        )
                        for device in devices
                        for seed in seeds
                    ]

                for t in self.temperatures_for(loss, settings) if self.plain_cases() else ():
                    specs += cases(settings, t, seed_range)
                if not self.tuning:
                    continue
                paper = (
                    {**settings, **tuning_stage.paper_setting(loss, settings, WEIGHTS[:1])}
                    if LOSSES.get(loss).uses_temperature
                    else settings
                )
                for point in tuning_stage.points(self.tuning[loss]) if loss in self.tuning else []:
                    trial = {**paper, **point}
                    trials += cases(trial, trial.get("temperature"), [self.tuning_seed], "trial")
                specs += cases(paper, paper.get("temperature"), seed_range, "tuned")
        return trials + specs  # trials first: the tuned cases read their records


def size_check(
    profile: Profile,
    devices: tuple[str, ...],
    seeds: int | None = None,
    records: Iterable[dict[str, Any]] = (),
    max_cases: int = MAX_CASES,
    **expand: Any,
) -> str | None:
    """Refuse a profile of more than ``max_cases`` cases (a one-line ``KdbenchError``, counted
    before any case is made); above ``WARN_CASES``, the line to warn with: the count and the
    training time estimated from ``records`` (earlier runs' ``train_s``: the median of each
    configuration's records, else the median of all); None for a smaller profile. ``expand``:
    ``specs``' other arguments (epochs, precision, …), which make a configuration."""
    n = profile.size(devices, seeds)
    if n > max_cases:
        raise KdbenchError(
            f"profile {profile.name!r} makes {n:,} cases, more than the limit of "
            f"{max_cases:,}: pass --kd-max-cases {n} to run them all, or fewer "
            f"seeds (--kd-seeds) or devices"
        )
    if n <= WARN_CASES:
        return None
    configurations = profile.specs(devices, seeds=1, **expand)  # a group_id is seed-free
    durations: dict[str, list[float]] = {}
    for r in records:
        train_s = r.get("metrics", {}).get("train_s")
        if r.get("status") == "ok" and isinstance(train_s, (int, float)):
            durations.setdefault(r["group_id"], []).append(train_s)
    head = f"profile {profile.name!r} makes {n:,} cases"
    if not durations:
        return f"{head}; no recorded durations to estimate their time from"
    every = statistics.median(t for ts in durations.values() for t in ts)
    seconds = (
        n
        // len(configurations)
        * sum(statistics.median(durations.get(c.group_id, [every])) for c in configurations)
    )
    time = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
    return (
        f"{head}: about {time} of training one after another, from the train_s of "
        f"{sum(map(len, durations.values())):,} recorded case(s) (a configuration without "
        f"records at their median)"
    )


def _precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "amp" if device == "cuda" else "fp32"
    return precision


def register_profile(profile: Profile) -> Profile:
    PROFILES.register(profile.name)(profile)
    return profile
