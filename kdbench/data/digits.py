"""scikit-learn's bundled handwritten digits: 1,797 real 8×8 images, 10 classes, no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdbench.data.base import SPLIT_SEED, TensorData, carve_validation
from kdbench.registry import DATASETS

VAL_SIZE = 360  # 60 / 20 / 20: 1,077 train, 360 validation, 360 test


@DATASETS.register("digits")
def digits(root: Path | None = None, download: bool = False) -> TensorData:
    """scikit-learn digits: fixed stratified 60/20/20 train/validation/test split (1,077 / 360 /
    360), normalised by the training part's mean and std."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=0.2, stratify=bunch.target, random_state=SPLIT_SEED
    )
    x_tr, y_tr, x_val, y_val = carve_validation(
        torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(), VAL_SIZE
    )
    mean, std = x_tr.mean(), x_tr.std()
    return TensorData(
        name="digits",
        x_train=(x_tr - mean) / std,
        y_train=y_tr,
        x_val=(x_val - mean) / std,
        y_val=y_val,
        x_test=(torch.from_numpy(x_te) - mean) / std,
        y_test=torch.from_numpy(y_te).long(),
        num_classes=10,
        description="scikit-learn handwritten digits, 1×8×8, 1,077 train / 360 val / 360 test",
    )
