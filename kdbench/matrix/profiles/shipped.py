"""The profiles kdbench ships, registered in ``PROFILES`` when ``kdbench.matrix.profiles`` is
imported. Each adapted setting is measured: docs/profiles.md ("Adapted settings")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from kdbench.losses import LOSSES
from kdbench.matrix.paper_settings import (
    CIFAR100_PAIR_SETTINGS,
    REPDISTILLER_CROSS,
    REPDISTILLER_SAME,
)
from kdbench.matrix.profiles.profile import Profile, Settings, register_profile
from kdbench.spec import RunSpec, stable_hash

# Settings adapted to the digits CNNs, each measured: docs/profiles.md ("Adapted settings").
DIGITS_LOSS_OPTIONS: dict[str, Settings] = {
    "at": {"beta": 100.0},
    "dkd": {"warmup": 1 / 3},
    "crd": {"beta": 0.1},
    "rld": {"warmup": 1 / 3},
    "mlkd": {"alpha": 0.5},
}
DIGITS_BATCH = 32

register_profile(
    Profile(
        "quick",
        "digits (bundled, no download): cnn_t (151k) → cnn_s (2.6k) and cnn_m (9.8k), "
        "every loss, kd swept over T, 3 seeds; CPU minutes",
        dataset="digits",
        pairs=(("cnn_t", "cnn_s"), ("cnn_t", "cnn_m")),
        recipe="digits",
        epochs=15,
        teacher_epochs=15,
        batch_size=DIGITS_BATCH,
        sweep=("kd",),
        loss_options=DIGITS_LOSS_OPTIONS,
    )
)
register_profile(
    Profile(
        "smoke",
        "digits, one pair, every loss at its paper temperature, 1 seed, 8 epochs: "
        "checks an installation in under a minute",
        dataset="digits",
        pairs=(("cnn_t", "cnn_m"),),
        recipe="digits",
        epochs=8,
        teacher_epochs=8,
        batch_size=DIGITS_BATCH,
        seeds=1,
        sweep=(),
        loss_options=DIGITS_LOSS_OPTIONS,
    )
)
# Fashion-MNIST's budget and adapted settings, each measured: docs/profiles.md ("Adapted
# settings").
FASHION_PAIRS = (("fmnist_t", "fmnist_m"), ("fmnist_t", "fmnist_s"))
FASHION_LOSS_OPTIONS: dict[str, Settings] = {
    "at": {"beta": 10.0},
    "ft": {"beta": 20.0},
    "fitnet": {"beta": 1.0},
    "dkd_ls": {"tckd_weight": 1.0, "nckd_weight": 8.0},
    "crd": {"nce_k": 1024},
}
FASHION: dict[str, Any] = dict(
    dataset="fashion_mnist",
    recipe="fmnist",
    epochs=2,
    teacher_epochs=15,
    batch_size=128,
    loss_options=FASHION_LOSS_OPTIONS,
)

register_profile(
    Profile(
        "fashion",
        "Fashion-MNIST (Debian's dataset-fashion-mnist or torchvision files): fmnist_t "
        "(61k) → fmnist_m (6.3k) and fmnist_s (1.7k), every loss, kd swept over T, 3 seeds; "
        "an hour on 2 CPU cores",
        pairs=FASHION_PAIRS,
        sweep=("kd",),
        **FASHION,
    )
)
register_profile(
    Profile(
        "fashion-gate",
        "the nightly regression gate: fashion's fmnist_t → fmnist_m cases (the "
        "same settings, so the same case ids), 3 seeds; half an hour on 2 CPU cores",
        pairs=FASHION_PAIRS[:1],
        sweep=("kd",),
        **FASHION,
    )
)
# The converged, equally tuned leaderboard (issue 20; docs/profiles.md, "fashion-tuned"):
# - teacher fmnist_tl (279k parameters), 30 epochs on crop+flip seen by it alone, so that its
#   students' batches are the images as they are and its outputs and taps stay cached;
# - students of 0.5k to 24k parameters (48×), each trained for the epochs after which `ce` gains
#   under 0.5 points at twice as many (3 seeds; fashion-tuned-2x runs the doubled `ce`);
# - every method on fmnist_tl → fmnist_m, tuned on validation with 4 trials each (its paper
#   setting among them: T and the main weight where it has a T, else the main weight in
#   decades); the other sizes run ce, kd and the three best methods of that table, tuned alike;
# - students channels_last on the CPU except fmnist_xs (benchmarks/cpu_formats.py).
TUNED_TEACHER = "fmnist_tl"
TUNED_EPOCHS = {"fmnist_xs": 48, "fmnist_s": 48, "fmnist_m": 24, "fmnist_l": 24}
TUNED_PAIRS = tuple((TUNED_TEACHER, s) for s in ("fmnist_m", "fmnist_xs", "fmnist_s", "fmnist_l"))
TUNED_SWEEP = ("ce", "kd")  # on every size besides the main pair's three best methods
# The main pair's three best on validation (tuned.best on its committed records, 3 seeds each;
# tests/test_converged_leaderboard.py keeps them equal) run on every size.
TUNED_BEST = ("wttm", "dist", "ttm")
FEATURE_WEIGHTS = {  # the main weight of each method without a temperature, and its paper value
    "at": ("beta", 1000.0),
    "catkd": ("beta", 15.0),
    "cc": ("beta", 0.02),
    "crd": ("beta", 0.8),
    "fitnet": ("beta", 100.0),
    "fsp": ("beta", 50.0),
    "ft": ("beta", 200.0),
    "ickd": ("beta", 2.5),
    "kdsvd": ("beta", 1.0),
    "nst": ("beta", 50.0),
    "ofd": ("beta", 0.001),
    "pkt": ("beta", 30000.0),
    "reviewkd": ("beta", 1.0),
    "rkd": ("beta", 1.0),
    "sp": ("beta", 3000.0),
    "srd": ("beta_sr", 1.0),
    "vid": ("beta", 1.0),
}
TUNED_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "kd": {"temperature": (4.0, 2.0), "alpha": (0.9, 0.5)},
    "kd_ls": {"temperature": (2.0, 4.0), "kd_weight": (9.0, 3.0)},
    "dkd": {"temperature": (4.0, 2.0), "nckd_weight": (8.0, 2.0)},
    "dkd_ls": {"tckd_weight": (9.0, 1.0), "nckd_weight": (81.0, 8.0)},
    "dist": {"temperature": (4.0, 1.0), "beta": (1.0, 2.0)},
    "mlkd": {"temperature": (4.0, 2.0), "alpha": (0.9, 0.5)},
    "nkd": {"temperature": (3.0, 1.0), "gamma": (3.5, 1.5)},
    "rld": {"temperature": (4.0, 2.0), "mcd_weight": (8.0, 2.0)},
    "sdd": {"temperature": (4.0, 2.0), "nckd_weight": (8.0, 2.0)},
    "ttm": {"temperature": (10.0, 4.0), "beta": (45.0, 15.0)},
    "wttm": {"temperature": (5.0, 2.0), "beta": (4.0, 1.0)},
    # AB distils in its initialisation stage alone, unweighted (β acts only with main_stage=1):
    # its knobs are that stage's length and the activation boundaries' margin
    "ab": {"init": (30 / 240, 60 / 240), "margin": (1.0, 0.5)},
    "ctkd": {"alpha": (0.9, 0.7, 0.5, 0.3)},
    "mse_logits": {"alpha": (0.02, 0.1, 0.5, 0.9)},
    **{
        loss: {key: (10 * paper, paper, paper / 10, paper / 100)}
        for loss, (key, paper) in FEATURE_WEIGHTS.items()
    },
}
FASHION_TUNED = register_profile(
    Profile(
        "fashion-tuned",
        "the converged leaderboard: Fashion-MNIST, fmnist_tl (279k) → 4 students of 0.5k to "
        "24k, every method on fmnist_m tuned on validation (4 trials each), ce, kd and the "
        "three best on every size, 3 seeds",
        dataset="fashion_mnist",
        pairs=TUNED_PAIRS,
        recipe="fmnist-cosine",
        epochs=TUNED_EPOCHS["fmnist_m"],
        teacher_epochs=30,
        batch_size=128,
        sweep=(),
        dataset_options=(("teacher_augment", True),),
        loss_options={"crd": {"nce_k": 1024}},
        tuning=TUNED_GRIDS,
        paper_cases=False,
        pair_epochs={pair: TUNED_EPOCHS[pair[1]] for pair in TUNED_PAIRS},
        pair_losses={pair: (*TUNED_SWEEP, *TUNED_BEST) for pair in TUNED_PAIRS[1:]},
        channels_last=("fmnist_s", "fmnist_m", "fmnist_l"),
    )
)
register_profile(
    replace(
        FASHION_TUNED,
        name="fashion-tuned-2x",
        description="fashion-tuned's ce at twice its epochs on every student, 3 seeds: "
        "converged where ce gains under 0.5 points",
        losses=("ce",),
        tuning={},
        pair_losses={},
        epochs=2 * FASHION_TUNED.epochs,
        pair_epochs={pair: 2 * e for pair, e in FASHION_TUNED.pair_epochs.items()},
    )
)
register_profile(
    Profile(
        "mnist",
        "MNIST 28×28 (torchvision files): cnn_t → cnn_s, resnet20 → resnet8, kd swept over T",
        dataset="mnist",
        pairs=(("cnn_t", "cnn_s"), ("resnet20", "resnet8")),
        recipe="digits",
        epochs=10,
        teacher_epochs=10,
        batch_size=128,
        sweep=("kd",),
    )
)
register_profile(
    Profile(
        "cifar10",
        "CIFAR-10 (torchvision files), CRD recipe: resnet56 → resnet20, "
        "resnet32x4 → resnet8x4; GPU hours",
        dataset="cifar10",
        pairs=(("resnet56", "resnet20"), ("resnet32x4", "resnet8x4")),
        recipe="crd",
        epochs=240,
        teacher_epochs=240,
        sweep=("kd",),
    )
)
register_profile(
    Profile(
        "cifar100-crd",
        "CIFAR-100, the CRD/DKD tables: 7 same- and 6 cross-architecture pairs, "
        "CRD recipe (240 epochs), every loss at its paper temperature, each published "
        "(pair, method) "
        "at its authors' settings; GPU days",
        dataset="cifar100",
        pairs=REPDISTILLER_SAME + REPDISTILLER_CROSS,
        recipe="crd",
        epochs=240,
        teacher_epochs=240,
        sweep=(),
        pair_settings=CIFAR100_PAIR_SETTINGS,
    )
)


@dataclass(frozen=True)
class GpuEstimate:
    """GPU time of a profile's cases run one after another (no gain from running several at
    once is assumed): every epoch passes ``images`` (the training images, and the validation
    and test images evaluated after it counted as if trained on) at ``case_rate`` samples/s in
    a case, initialisation stages included, and at ``teacher_rate`` in the training of each
    teacher not given as a checkpoint; each case adds ``case_overhead_s``."""

    case_rate: float
    teacher_rate: float
    images: int
    case_overhead_s: float

    def hours(self, specs: Iterable[RunSpec]) -> float:
        specs = list(specs)
        seconds = 0.0
        for s in specs:
            loss = LOSSES.get(s.loss)(temperature=s.temperature, **dict(s.loss_options))
            epochs = s.epochs + loss.pretrain_epochs(s.epochs)
            seconds += epochs * self.images / self.case_rate + self.case_overhead_s
        teachers = {
            stable_hash(s.teacher_key()): s.teacher_epochs for s in specs if s.teacher_ckpt is None
        }
        seconds += sum(teachers.values()) * self.images / self.teacher_rate
        return seconds / 3600


# cifar100-nightly's GPU time on one H200, estimated (no GPU was lent to measure it) from the
# figures measured on an H200 (README, "Performance → GPU"): kdbench trained resnet32x4 →
# resnet8x4 under KD with the teacher online (CIFAR augmentation), AMP, batch 64, at 4,718
# samples/s, one case alone.
# - cases: 3,500 samples/s = 0.75 × 4,718, a margin for the feature losses' extra kernels
#   (FitNet's regressor, AT's maps, CRD's embeddings and 16,384 negatives); vgg13 → vgg8 has
#   fewer layers (kernel launches, which bound these nets at batch 64) and FLOPs than
#   resnet32x4 → resnet8x4, so the same rate is a bound for it;
# - teachers: 2,500 samples/s. A teacher's step is its forward and backward (≈ 3 forwards of
#   launches), a KD step the teacher's forward plus the 4×-shallower student's forward and
#   backward: (1 + 3/4) / 3 ≈ 0.58 × 4,718 ≈ 2,750, rounded down;
# - 60,000 images an epoch: 45,000 training images after the 5,000-image validation split,
#   plus the 15,000 validation and test images evaluated after every epoch;
# - 30 s per case for start-up, data on the GPU, cuDNN warm-up, FLOPs and inference timing.
# 12 cases × (24 × 60,000 / 3,500 + 30 s) + 2 teachers × 24 × 60,000 / 2,500 = 5,297 + 1,152 s
# ≈ 1.8 h one case at a time. Teachers are cached: later nights with the same cache skip them
# (≈ 1.5 h). Run with `-n K --kd-cases-per-gpu K`, the run takes that divided by the gain of
# K concurrent cases (target ≥ 3× at K = 4, unmeasured).
CIFAR100_NIGHTLY_GPU_HOURS = 1.8
CIFAR100_NIGHTLY_ESTIMATE = GpuEstimate(
    case_rate=3_500, teacher_rate=2_500, images=60_000, case_overhead_s=30
)

register_profile(
    Profile(
        "cifar100-nightly",
        "CIFAR-100 nightly for a GPU runner: resnet32x4 → resnet8x4 and vgg13 → "
        "vgg8, ce/kd/dkd/fitnet/at/crd at the authors' per-pair settings, CRD recipe scaled to 24 "
        f"epochs, 1 seed; ≈ {CIFAR100_NIGHTLY_GPU_HOURS:g} GPU-hours on one H200, one case at a "
        "time (estimated)",
        dataset="cifar100",
        pairs=(("resnet32x4", "resnet8x4"), ("vgg13", "vgg8")),
        recipe="crd",
        epochs=24,
        teacher_epochs=24,
        seeds=1,
        losses=("ce", "kd", "dkd", "fitnet", "at", "crd"),
        sweep=(),
        pair_settings=CIFAR100_PAIR_SETTINGS,
    )
)
