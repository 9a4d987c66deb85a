"""Named matrices: the ``Profile`` model and its registry (``profile``), and the profiles
kdbench ships (``shipped``), registered when this package is imported."""

from kdbench.matrix.profiles.profile import (
    MAX_CASES,
    PROFILES,
    WARN_CASES,
    Pair,
    Profile,
    register_profile,
    size_check,
)
from kdbench.matrix.profiles.shipped import (
    CIFAR100_NIGHTLY_ESTIMATE,
    CIFAR100_NIGHTLY_GPU_HOURS,
    GpuEstimate,
)

__all__ = [
    "CIFAR100_NIGHTLY_ESTIMATE",
    "CIFAR100_NIGHTLY_GPU_HOURS",
    "MAX_CASES",
    "PROFILES",
    "WARN_CASES",
    "GpuEstimate",
    "Pair",
    "Profile",
    "register_profile",
    "size_check",
]
