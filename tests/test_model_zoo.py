"""Every registered model, and torchvision models through ``tv:``: forward and backward, output
shape, the stage contract through ``Tapper``, and parameter counts (after timm's
``tests/test_models.py``: parametrized over the registry, so a new model is tested as it lands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from kdbench.losses import NotApplicable
from kdbench.models import MODELS, build_model, count_params
from kdbench.models.base import model_factory
from kdbench.registry import KdbenchError
from kdbench.run.taps import Tapper

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)
TORCHVISION = ("tv:resnet18", "tv:mobilenet_v3_small", "tv:shufflenet_v2_x0_5")
ALL = (*MODELS.names(), *TORCHVISION)

# parameter counts for 100 classes as published with the CRD/DKD tables
PUBLISHED_PARAMS = {
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_40_2": 2_255_156,
    "resnet56": 861_620,
    "vgg13": 9_462_180,
}
# (channels, height) of each stage on 3×32×32 inputs: RepDistiller's feature lists minus the
# pooled vector
STAGE_SHAPES = {
    "resnet8x4": [(32, 32), (64, 32), (128, 16), (256, 8)],
    "resnet56": [(16, 32), (16, 32), (32, 16), (64, 8)],
    "wrn_40_2": [(16, 32), (32, 32), (64, 16), (128, 8)],
    "vgg13": [(64, 32), (128, 16), (256, 8), (512, 4), (512, 4)],
    "resnet50": [(64, 32), (256, 32), (512, 16), (1024, 8), (2048, 4)],
    "mobilenetv2": [(16, 16), (12, 16), (16, 8), (48, 4), (160, 2)],
    "shufflenetv1": [(24, 32), (240, 16), (480, 8), (960, 4)],
    "shufflenetv2": [(24, 32), (116, 16), (232, 8), (464, 4)],
}


def _calls(model: nn.Module, paths: set[str]) -> dict[str, int]:
    """Runs counted per module path during the next forwards (hooks stay on the model)."""
    counts = dict.fromkeys(paths, 0)
    for path in paths:
        model.get_submodule(path).register_forward_pre_hook(
            lambda module, args, path=path: counts.__setitem__(path, counts[path] + 1)
        )
    return counts


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_and_stages(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, CIFAR)
    classifier = model.classifier_module()
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 10
    assert len(model.stages) >= 1
    assert len(model.preact_stages) in (0, len(model.stages))
    calls = _calls(model, {*model.stages, *filter(None, model.preact_stages)})
    taps = ["feats", "embed", "logits", *(["preacts"] if model.preact_stages else [])]

    with Tapper(model, taps) as tapper:
        out = tapper(torch.randn(2, *CIFAR))

    assert all(n == 1 for n in calls.values()), calls  # each stage module runs once
    assert out["logits"].shape == (2, 10)
    assert out["embed"].shape == (2, classifier.in_features)
    feats = out["feats"]
    assert all(f.dim() == 4 and f.shape[0] == 2 for f in feats)
    heights = [f.shape[2] for f in feats]
    assert heights == sorted(heights, reverse=True)  # shallow → deep
    if model.preact_stages:
        assert [p.shape for p in out["preacts"]] == [f.shape for f in feats]
    if name in STAGE_SHAPES:
        assert [(f.shape[1], f.shape[2]) for f in feats] == STAGE_SHAPES[name]

    (out["logits"].square().mean() + sum(f.mean() for f in feats)).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_one_channel_28px_input(name: str) -> None:
    model = build_model(name, 7, MNIST).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *MNIST)).shape == (2, 7)


@pytest.mark.parametrize("name", ALL)
def test_parameter_counts(name: str) -> None:
    """10 and 100 classes differ by exactly the classifier rows; published counts match."""
    small, large = (build_model(name, k, CIFAR) for k in (10, 100))
    embed = small.classifier_module().in_features
    assert count_params(large) - count_params(small) == 90 * (embed + 1)
    if name in PUBLISHED_PARAMS:
        assert count_params(large) == PUBLISHED_PARAMS[name]
    if name.startswith("tv:"):  # the architecture is torchvision's own (1,000 classes there)
        meta = torchvision.models.get_model_weights(name[3:]).DEFAULT.meta
        assert count_params(small) == meta["num_params"] - 990 * (embed + 1)


def test_torchvision_names_resolve_outside_the_registry() -> None:
    assert not any(name.startswith("tv:") for name in MODELS.names())
    assert callable(model_factory("tv:resnet18"))
    with pytest.raises(KdbenchError, match=r"unknown torchvision model 'resnet9'.*resnet18"):
        model_factory("tv:resnet9")
    with pytest.raises(KdbenchError, match=r"tv:squeezenet1_0 has no nn\.Linear classifier"):
        build_model("tv:squeezenet1_0", 10, CIFAR)


def test_preact_losses_are_not_applicable_to_models_without_preacts() -> None:
    """An empty ``preacts`` list would turn AB, OFD and ReviewKD into a silent zero term."""
    with pytest.raises(NotApplicable, match="TorchvisionModel declares no preact stages"):
        Tapper(build_model("tv:resnet18", 10, CIFAR), ["preacts"])


def test_torchvision_state_dict_loads_into_tv_models() -> None:
    """A user's torchvision weights (no ``net.`` prefix) load as they are, e.g. as a teacher."""
    net = torchvision.models.resnet18(num_classes=10)
    model = build_model("tv:resnet18", 10, CIFAR)
    model.load_state_dict(net.state_dict())
    assert all(
        torch.equal(model.state_dict()[f"net.{key}"], value)
        for key, value in net.state_dict().items()
    )
    model.load_state_dict(model.state_dict())  # kdbench's own (cached teachers) still loads


def test_fashion_students_span_ten_to_a_hundred_times_fewer_params_and_flops() -> None:
    from kdbench.run.measure import flops_per_sample

    sizes = {}
    for name in ("fmnist_t", "fmnist_m", "fmnist_s"):
        model = build_model(name, 10, MNIST)
        sizes[name] = count_params(model), flops_per_sample(model, MNIST, torch.device("cpu"))
    assert [p for p, _ in sizes.values()] == [61_050, 6_274, 1_702]
    (p_t, f_t), (p_m, f_m), (p_s, f_s) = sizes.values()
    assert 7 < f_t / f_m < p_t / p_m < 12 and 20 < f_t / f_s < p_t / p_s < 40


def test_fashion_students_for_a_size_sweep_span_over_thirty_times_in_params() -> None:
    sweep = ("fmnist_xs", "fmnist_s", "fmnist_m", "fmnist_l")
    params = [count_params(build_model(name, 10, MNIST)) for name in sweep]
    assert params == [496, 1_702, 6_274, 24_058]  # increasing: one student per size
    assert params[-1] / params[0] > 30
    page = (Path(__file__).parents[1] / "docs" / "models-and-data.md").read_text()
    for name, count in zip(("fmnist_t", *sweep), (61_050, *params)):
        assert f"`{name}` {count:,}" in page  # the models page states each count
