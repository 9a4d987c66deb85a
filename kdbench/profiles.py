"""Named matrices: a profile expands into the RunSpecs a suite runs.

Every registered loss is picked up automatically (``losses`` are name patterns over the LOSSES
registry); losses with a temperature are swept over ``temperatures`` when they match
``sweep``, the others run at their paper's default temperature.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from kdbench.losses import LOSSES
from kdbench.registry import KdbenchError, Registry
from kdbench.spec import DEVICES, RunSpec, make_spec

PROFILES = Registry("profiles")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    dataset: str
    pairs: tuple[tuple[str, str], ...]
    recipe: str
    epochs: int
    teacher_epochs: int
    batch_size: int = 64
    seeds: int = 3
    losses: tuple[str, ...] = ("*",)
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    sweep: tuple[str, ...] = ("*",)
    dataset_options: tuple[tuple[str, object], ...] = ()
    loss_options: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()  # per-loss overrides

    def loss_names(self) -> list[str]:
        return [n for n in LOSSES.names() if any(fnmatch.fnmatchcase(n, p) for p in self.losses)]

    def temperatures_for(self, loss: str) -> tuple[float | None, ...]:
        cls = LOSSES.get(loss)
        if not cls.uses_temperature:
            return (None,)
        if any(fnmatch.fnmatchcase(loss, p) for p in self.sweep):
            return self.temperatures
        return (cls.default_temperature,)

    def specs(self, devices: tuple[str, ...] = DEVICES, seeds: int | None = None,
              epochs: int | None = None, precision: str = "auto",
              compile: bool = False, teacher_ckpts: dict[str, str] | None = None
              ) -> list[RunSpec]:
        """Every case: pair × loss × temperature × device × seed (ids readable, order stable).

        ``precision="auto"`` runs CUDA cases with AMP and CPU cases in fp32; ``teacher_ckpts``
        maps teacher names to checkpoints that replace training them."""
        ckpts = teacher_ckpts or {}
        n_seeds = self.seeds if seeds is None else seeds
        if not isinstance(n_seeds, int) or n_seeds < 1:
            raise KdbenchError(f"invalid number of seeds {n_seeds!r}: must be an integer ≥ 1")
        return [
            make_spec(self.dataset, teacher, student, loss, temperature=t, seed=seed,
                      device=device, recipe=self.recipe, batch_size=self.batch_size,
                      epochs=self.epochs if epochs is None else epochs,
                      teacher_epochs=self.teacher_epochs, dataset_options=self.dataset_options,
                      precision=_precision(precision, device), compile=compile,
                      loss_options=dict(self.loss_options).get(loss, ()),
                      teacher_ckpt=ckpts.get(teacher))
            for teacher, student in self.pairs
            for loss in self.loss_names()
            for t in self.temperatures_for(loss)
            for device in devices
            for seed in range(n_seeds)
        ]


def _precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "amp" if device == "cuda" else "fp32"
    return precision


def register_profile(profile: Profile) -> Profile:
    PROFILES.register(profile.name)(profile)
    return profile


# Two paper defaults are adapted to short runs of the BN-free 8×8 digits CNNs, measured:
# AT's β = 1000 is tuned for CIFAR's 32×32 → 8×8 maps; on the 4×4 maps of the digits CNNs it
# collapsed every cnn_s seed to chance (10.3 / 10.0 / 10.3 % top-1, 15 epochs; cnn_m 10.0 % at
# 8 epochs); β = 100: 88.6–94.2 %.
# DKD's warm-up is 20 of 240 epochs; scaled to 15 epochs that is 1.25, and β = 8 then
# collapsed cnn_m seeds 0 and 3 to chance (9.7 %); over 5 epochs: 92.5–96.9 % on 12 runs.
DIGITS_LOSS_OPTIONS = (("at", (("beta", 100.0),)), ("dkd", (("warmup", 1 / 3),)))

register_profile(Profile(
    "quick", "digits (bundled, no download): cnn_t (151k) → cnn_s (2.6k) and cnn_m (9.8k), "
    "every loss, kd swept over T, 3 seeds; CPU minutes",
    dataset="digits", pairs=(("cnn_t", "cnn_s"), ("cnn_t", "cnn_m")), recipe="digits",
    epochs=15, teacher_epochs=15, sweep=("kd",), loss_options=DIGITS_LOSS_OPTIONS,
))
register_profile(Profile(
    "smoke", "digits, one pair, every loss at its paper temperature, 1 seed, 8 epochs: "
    "checks an installation in under a minute",
    dataset="digits", pairs=(("cnn_t", "cnn_m"),), recipe="digits", epochs=8,
    teacher_epochs=8, seeds=1, sweep=(), loss_options=DIGITS_LOSS_OPTIONS,
))
register_profile(Profile(
    "mnist", "MNIST 28×28 (torchvision files): cnn_t → cnn_s, resnet20 → resnet8",
    dataset="mnist", pairs=(("cnn_t", "cnn_s"), ("resnet20", "resnet8")), recipe="digits",
    epochs=10, teacher_epochs=10, batch_size=128,
))
register_profile(Profile(
    "cifar10", "CIFAR-10 (torchvision files), CRD recipe: resnet56 → resnet20, "
    "resnet32x4 → resnet8x4; GPU hours",
    dataset="cifar10", pairs=(("resnet56", "resnet20"), ("resnet32x4", "resnet8x4")),
    recipe="crd", epochs=240, teacher_epochs=240, sweep=("kd",),
))
CRD_SAME = (("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
            ("resnet110", "resnet20"), ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"),
            ("vgg13", "vgg8"))
CRD_CROSS = (("vgg13", "mobilenetv2"), ("resnet50", "mobilenetv2"), ("resnet50", "vgg8"),
             ("resnet32x4", "shufflenetv1"), ("resnet32x4", "shufflenetv2"),
             ("wrn_40_2", "shufflenetv1"))
register_profile(Profile(
    "cifar100-crd", "CIFAR-100, the CRD/DKD tables: 7 same- and 6 cross-architecture pairs, "
    "CRD recipe (240 epochs), every loss at its paper temperature; GPU days",
    dataset="cifar100", pairs=CRD_SAME + CRD_CROSS, recipe="crd", epochs=240,
    teacher_epochs=240, sweep=(),
))
