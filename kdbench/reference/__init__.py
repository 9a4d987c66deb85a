"""Reference data shipped with kdbench: the published CIFAR-100 top-1 accuracies of the CRD
(RepDistiller README), DKD (mdistiller README), logit-standardisation and DIST tables."""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

PUBLISHED_CIFAR100 = "published_cifar100.csv"


def published() -> pd.DataFrame:
    """One row per (source, method, teacher, student): ``top1`` in percent (NaN where the source
    reports the method as not applicable) and a free-text ``note``."""
    with files(__package__).joinpath(PUBLISHED_CIFAR100).open(encoding="utf-8") as f:
        return pd.read_csv(f)
