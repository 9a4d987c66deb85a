"""Any timm classifier as ``timm:<name>`` (``timm:resnet50``, ``timm:mobilenetv3_small_100``, …),
untrained, with the data set's class count and input channels (timm's ``create_model(name,
num_classes=…, in_chans=…)``). Nothing is downloaded: models are built with ``pretrained=False``;
a user's weights come as a teacher checkpoint (timm's own state dict loads as it is). timm is an
optional extra, imported on first use: ``pip install 'kdbench[timm]'``.

The stage contract comes from timm's own ``feature_info`` (module, channels and reduction of each
feature map ``features_only`` returns): an entry is a stage when, in one probe forward, its module
runs once and returns a (B, C, H, W) map with the declared channels. Vision transformers and
MLP-mixers return tokens (B, N, C) and Swin-style models channels-last maps, so they declare no
stages (their feature losses are N/A; logit losses run). Stage 0 is timm's first feature: the stem
of most CNNs, the first stage of patchify models (ConvNeXt). A stage's pre-activation is the input
of the ``nn.ReLU`` whose output is the stage's output (a timm ResNet's ``act1`` and the last
ReLU of each ``layerN``); a stage without one has ``None``, a model without any declares none.
The classifier is timm's own ``pretrained_cfg["classifier"]``, an ``nn.Linear``. Models that need
the input size when they are built (timm's ``fixed_input_size``: ViT, Swin, …) get ``img_size``.
"""

from __future__ import annotations

import difflib
from collections import Counter
from functools import partial
from typing import Any, cast

import torch
from torch import nn

from kdbench.models.base import PREFIXES, Factory, WrappedModel, build_errors, probe
from kdbench.registry import KdbenchError

PREFIX = "timm"
INSTALL = "pip install 'kdbench[timm]'"


class TimmModel(WrappedModel):
    """A timm model (``net``) with the stages its ``feature_info`` names."""


def _timm():
    try:
        import timm
    except ImportError:
        raise KdbenchError(
            f"{PREFIX}: models need timm, which is not installed: {INSTALL}"
        ) from None
    return timm


def factory(name: str) -> Factory:
    """``timm:<name>`` → factory ``(num_classes, input_shape) → TimmModel``."""
    timm = _timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(f'{PREFIX}:{c}' for c in close)}? " if close else ""
        raise KdbenchError(
            f"unknown timm model {name!r} in {PREFIX}:{name}: {hint}valid: "
            f"{PREFIX}:<name> for any of timm.list_models()"
        )
    return partial(timm_model, name)


def timm_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> TimmModel:
    timm = _timm()
    fixed = timm.models.get_pretrained_cfg_value(name, "fixed_input_size")
    options = {"img_size": tuple(input_shape[1:])} if fixed else {}
    with build_errors(f"{PREFIX}:{name}", input_shape):
        net = timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **options
        )
        stages, preacts = find_stages(net, input_shape)
    classifier = net.pretrained_cfg.get("classifier")
    head = net.get_submodule(classifier) if isinstance(classifier, str) else None
    if not (isinstance(head, nn.Linear) and head.out_features == num_classes):
        found = type(head).__name__ if head is not None else "several heads"
        raise KdbenchError(
            f"{PREFIX}:{name}'s classifier {classifier!r} is {found}, not one "
            f"nn.Linear with {num_classes} outputs; kdbench needs one for the "
            f"logits and embed taps"
        )
    return TimmModel(net, stages, classifier, preacts)


def find_stages(
    net: nn.Module, input_shape: tuple[int, int, int]
) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """(stages, preact_stages) of ``net`` (see the module docstring), from one probe forward in
    eval mode."""
    modules = dict(net.named_modules())
    # timm's list of {"module", "num_chs", "reduction", …} dicts (nn.Module types it loosely)
    feature_info = cast(list[dict[str, Any]], net.feature_info)
    features = [
        (f["module"], f["num_chs"]) for f in feature_info if f["module"] in modules
    ]  # some name a module only features_only builds
    relus = {p for p, m in modules.items() if isinstance(m, nn.ReLU)}
    calls: Counter[str] = Counter()
    seen: dict[str, tuple[torch.Tensor, int]] = {}  # path → (output, its version when returned)
    finished: list[str] = []  # ReLU paths in completion order

    def record(path: str, module: nn.Module, args: tuple, output: object) -> None:
        calls[path] += 1
        if isinstance(output, torch.Tensor):
            seen[path] = (output, output._version)
        if path in relus:
            finished.append(path)

    probe(net, input_shape, {*relus, *(module for module, _ in features)}, record)

    def is_map(path: str, channels: int) -> bool:  # (B, C, H, W), not tokens (B, N, C)
        return (
            calls[path] == 1
            and path in seen
            and seen[path][0].dim() == 4
            and seen[path][0].shape[1] == channels
        )

    def preact(stage: str) -> str | None:  # the last ReLU that returned the stage's output as is
        output, version = seen[stage]
        inside = [
            p
            for p in finished
            if (p == stage or p.startswith(f"{stage}."))
            and calls[p] == 1
            and seen[p][0] is output
            and seen[p][1] == version
        ]
        return inside[-1] if inside else None

    channels_last = getattr(net, "output_fmt", "NCHW") != "NCHW"  # timm's Swin-style models
    stages = (
        ()
        if channels_last
        else tuple(module for module, channels in features if is_map(module, channels))
    )
    preacts = tuple(preact(stage) for stage in stages)
    return stages, preacts if any(preacts) else ()


PREFIXES[PREFIX] = factory
