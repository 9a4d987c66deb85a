"""Data: the bundled digits split and normalisation, synthetic sets, batching of in-memory sets."""

from __future__ import annotations

import pytest
import torch

from kdbench.data import DATASETS, TensorData, load_dataset
from kdbench.data.base import TENSORS

DIGITS_PER_CLASS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # scikit-learn's digits
DIGITS_FINGERPRINT = "2923363736ac24f4"  # the fixed split's tensors: changes break baselines


@pytest.fixture(scope="module")
def digits() -> TensorData:
    return load_dataset("digits")


def test_digits_sizes_shapes_and_types(digits):
    assert (digits.num_train, digits.num_val, digits.num_test) == (1077, 360, 360)
    assert digits.num_train + digits.num_val + digits.num_test == sum(DIGITS_PER_CLASS) == 1797
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.x_train.shape == (1077, 1, 8, 8) and digits.x_val.shape == (360, 1, 8, 8)
    assert digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert not digits.augmented


def test_digits_split_is_stratified_60_20_20(digits):
    parts = [torch.bincount(y, minlength=10) for y in (digits.y_train, digits.y_val, digits.y_test)]
    assert sum(parts).tolist() == DIGITS_PER_CLASS
    for part in parts[1:]:
        for n, n_all in zip(part.tolist(), DIGITS_PER_CLASS):
            assert abs(n - 0.2 * n_all) <= 1


def test_validation_split_is_disjoint_from_training_and_test(digits):
    rows = {
        name: {tuple(x.flatten().tolist()) for x in getattr(digits, f"x_{name}")}
        for name in ("train", "val", "test")
    }
    # sklearn's digits hold a few identical images; none may be both trained on and validated
    assert len(rows["val"] & rows["train"]) <= 2 and len(rows["val"] & rows["test"]) <= 2
    seen = torch.cat([i for _, _, i in digits.train_batches(64, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(digits.num_train))  # training never sees val


def test_digits_normalised_by_training_statistics(digits):
    assert abs(digits.x_train.mean().item()) < 1e-5
    assert abs(digits.x_train.std().item() - 1) < 1e-3
    assert abs(digits.x_test.mean().item()) < 0.1  # same affine map, not refitted on test


def test_digits_split_is_fixed(digits):
    again = load_dataset("digits")
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(again, name), getattr(digits, name)), name
    assert digits.fingerprint() == again.fingerprint() == DIGITS_FINGERPRINT


@pytest.mark.parametrize("channels, size, classes", [(1, 8, 10), (3, 16, 7), (2, 5, 3)])
def test_synthetic_any_shape_and_class_count(channels, size, classes):
    data = load_dataset(
        "synthetic",
        channels=channels,
        size=size,
        num_classes=classes,
        num_train=10 * classes,
        num_test=4 * classes,
    )
    assert data.input_shape == (channels, size, size) and data.num_classes == classes
    assert data.x_train.shape == (10 * classes, channels, size, size)
    assert torch.bincount(data.y_train).tolist() == [10] * classes
    assert torch.bincount(data.y_test).tolist() == [4] * classes
    assert torch.isfinite(data.x_train).all()


def test_synthetic_is_seeded():
    a, b, c = (load_dataset("synthetic", seed=s) for s in (3, 3, 4))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_augment_crops_and_flips_training_batches_only():
    plain, aug = (load_dataset("synthetic", channels=3, size=32, augment=a) for a in (False, True))
    assert (plain.augmented, aug.augmented) == (False, True)
    assert plain.fingerprint() != aug.fingerprint()  # caches never mix the two
    g = torch.Generator().manual_seed(0)
    x, _, index = next(iter(aug.train_batches(64, g)))
    assert x.shape == (64, 3, 32, 32) and not torch.equal(x, plain.x_train[index])
    x_test, _, _ = next(iter(aug.test_batches(128)))
    assert torch.equal(x_test, plain.x_test)


def test_synthetic_classes_are_separable_by_their_mean_image():
    data = load_dataset("synthetic", noise=0.3)
    means = torch.stack([data.x_train[data.y_train == k].mean(0) for k in range(10)])
    nearest = torch.cdist(data.x_test.flatten(1), means.flatten(1)).argmin(1)
    assert (nearest == data.y_test).float().mean() > 0.9


def test_train_batches_are_a_seeded_permutation(digits):
    def epoch(seed: int) -> list[tuple]:
        return list(digits.train_batches(100, torch.Generator().manual_seed(seed)))

    batches = epoch(0)
    assert [len(y) for _, y, _ in batches] == [100] * 10 + [77]
    index = torch.cat([i for _, _, i in batches])
    assert sorted(index.tolist()) == list(range(1077))
    for x, y, i in batches:
        assert torch.equal(x, digits.x_train[i]) and torch.equal(y, digits.y_train[i])
    assert torch.equal(index, torch.cat([i for _, _, i in epoch(0)]))
    assert not torch.equal(index, torch.cat([i for _, _, i in epoch(1)]))


@pytest.mark.parametrize("split", ["val", "test"])
def test_held_out_batches_cover_their_split_in_order(digits, split):
    batches = list(getattr(digits, f"{split}_batches")(128))
    assert torch.equal(torch.cat([x for x, _, _ in batches]), getattr(digits, f"x_{split}"))
    assert torch.equal(torch.cat([i for _, _, i in batches]), torch.arange(360))


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_in_memory_sets_move_to_the_case_device(name):
    data = DATASETS.get(name)()
    moved = data.to("meta")
    assert isinstance(data, TensorData) and isinstance(moved, TensorData)
    assert {getattr(moved, name).device.type for name in TENSORS} == {"meta"}
    assert data.x_train.device.type == "cpu"
