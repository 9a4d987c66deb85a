"""Any torchvision classification model as ``tv:<name>`` (``tv:resnet18``,
``tv:mobilenet_v3_small``, …), untrained (no weights are downloaded), with the data set's class
count and input shape.

The stage contract is filled in by probing the model once, as torchvision's feature-extraction
examples pick their return nodes and timm's ``feature_info`` does: a forward hook on every
submodule records which ones run exactly once and return a (B, C, H, W) map; walking the module
tree from the root, a container whose children change resolution is opened up, and each run of
consecutive outputs at one resolution contributes its last module as a stage (so
``tv:resnet18`` gets ``relu, layer1 … layer4`` and ``tv:mobilenet_v2`` the last block of each
resolution in ``features``). Global (adaptive) pooling and the classifier head are not stages.
The classifier is the last ``nn.Linear`` with ``num_classes`` outputs. torchvision blocks share
their ReLU modules, so these models declare no pre-activation stages. Swin transformers keep
their feature maps channels-last, (B, H, W, C), and declare no stages either.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import cast

import torch
from torch import nn

from kdbench.models.base import PREFIXES, Factory, WrappedModel, build_errors, probe
from kdbench.registry import KdbenchError

PREFIX = "tv"
# torchvision's defaults add auxiliary classifiers to the training output
BUILD_OPTIONS: dict[str, dict[str, bool | int]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
NOT_STAGES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
TRUNK_RESOLUTIONS = 3  # a container is opened when its children run at this many resolutions


class TorchvisionModel(WrappedModel):
    """A torchvision model (``net``) with the stage paths found for it."""


def classification_models() -> list[str]:
    import torchvision  # imported on first use: ≈2 s that runs without tv: models skip

    return torchvision.models.list_models(module=torchvision.models)


def factory(name: str) -> Factory:
    """``tv:<name>`` → factory ``(num_classes, input_shape) → TorchvisionModel``."""
    if name not in classification_models():
        raise KdbenchError(
            f"unknown torchvision model {name!r} in {PREFIX}:{name}: valid: "
            f"{PREFIX}:<name> for any of {', '.join(classification_models())}"
        )
    return partial(torchvision_model, name)


def torchvision_model(
    name: str, num_classes: int, input_shape: tuple[int, int, int]
) -> TorchvisionModel:
    options: dict[str, bool | int] = dict(BUILD_OPTIONS.get(name, {}))
    if name.startswith("vit_"):
        options["image_size"] = input_shape[1]
    import torchvision

    with build_errors(f"{PREFIX}:{name}", input_shape):
        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
        if input_shape[0] != 3:
            _set_in_channels(net, input_shape[0])
        classifier = [
            p
            for p, m in net.named_modules()
            if isinstance(m, nn.Linear) and m.out_features == num_classes
        ]
        if not classifier:
            raise KdbenchError(
                f"{PREFIX}:{name} has no nn.Linear classifier with {num_classes} "
                f"outputs; kdbench needs one for the logits and embed taps"
            )
        stages = find_stages(net, classifier[-1], input_shape)
    return TorchvisionModel(net, stages, classifier[-1])


def _set_in_channels(net: nn.Module, channels: int) -> None:
    """Replace the first convolution by one that reads ``channels`` input channels."""
    path, conv = next((p, m) for p, m in net.named_modules() if isinstance(m, nn.Conv2d))
    # torch types a Conv2d's sizes as tuple[int, ...]: they are pairs
    kernel_size, stride, dilation = (
        cast(tuple[int, int], t) for t in (conv.kernel_size, conv.stride, conv.dilation)
    )
    padding = cast("str | tuple[int, int]", conv.padding)
    net.set_submodule(
        path,
        nn.Conv2d(
            channels,
            conv.out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        ),
    )


def find_stages(
    net: nn.Module, classifier: str, input_shape: tuple[int, int, int]
) -> tuple[str, ...]:
    """Stage paths of ``net`` (see the module docstring), from one probe forward in eval mode."""
    from torchvision.models import SwinTransformer

    if isinstance(net, SwinTransformer):  # channels-last feature maps: no conv stages to tap
        return ()
    calls: Counter[str] = Counter()
    done: dict[str, int] = {}  # path → completion order of its (single) call
    size: dict[str, tuple[int, int]] = {}  # path → (H, W) of its 4-D output

    def record(path: str, module: nn.Module, args: tuple, output: object) -> None:
        calls[path] += 1
        done[path] = len(done)
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            size[path] = (output.shape[-2], output.shape[-1])

    head = classifier.rpartition(".")[0]  # the classifier's container (none when at the root)
    modules = dict(net.named_modules())
    probe(net, input_shape, [p for p in modules if p], record)

    def children(path: str) -> list[str]:  # candidate children in call order
        prefix = f"{path}." if path else ""
        found = [
            prefix + name
            for name, m in modules[path].named_children()
            if calls[prefix + name] == 1
            and prefix + name in size
            and not isinstance(m, NOT_STAGES)
            and not (head and prefix + name == head)
        ]
        return sorted(found, key=done.__getitem__)

    def walk(path: str) -> list[str]:  # candidates in call order, trunk containers opened
        found = []
        for child in children(path):
            opens = len({size[c] for c in children(child)}) >= TRUNK_RESOLUTIONS
            found += walk(child) if opens else [child]
        return found

    candidates = walk("")
    return tuple(
        path
        for path, nxt in zip(candidates, [*candidates[1:], None])
        if nxt is None or size[nxt] != size[path]
    )


PREFIXES[PREFIX] = factory
