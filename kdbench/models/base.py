"""The stage contract every model follows, so that loss taps can address features by name.

A model is an ``nn.Module`` whose ``forward(x)`` returns logits ``(B, num_classes)`` and which
declares, in one place:

- ``stages``: dotted paths of submodules whose *outputs* are its convolutional feature maps
  ``(B, C, H, W)``, shallow → deep, post-activation. ``stages[0]`` is the stem, as RepDistiller's
  ``feat[0]``; RepDistiller's last ``feat`` (the pooled vector) is the ``embed`` tap here.
  Each path must name a module called exactly once per forward (no shared ReLU objects);
- ``preact_stages``: for each stage, the dotted path of a submodule whose *input* is that
  stage's pre-activation feature (the tensor before the final ReLU), or ``None`` where the
  reference implementation has none; an empty tuple when the model has none at all;
- ``classifier_path``: dotted path of the final linear layer; its input is the penultimate
  embedding ``(B, D)`` and its output the logits. (A path, not ``classifier``: RepDistiller names
  the VGG and MobileNetV2 heads ``classifier``, and the models keep its parameter names.)

Tap names a loss may ask for (see ``kdbench.taps``): ``logits``, ``embed`` (classifier input),
``feat:i`` and ``preact:i`` (stage ``i``, negative indices allowed), ``feats`` and ``preacts``
(lists over all stages), ``index`` (the batch's dataset indices).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from kdbench.registry import MODELS


class StagedModel(nn.Module):
    stages: tuple[str, ...] = ()
    preact_stages: tuple[str | None, ...] = ()
    classifier_path: str
    num_classes: int = 0
    native_input: tuple[int, int, int] = (3, 32, 32)  # the input it was designed for (listings)

    def classifier_module(self) -> nn.Module:
        return self.get_submodule(self.classifier_path)


Factory = Callable[..., StagedModel]

PREFIXES: dict[str, Callable[[str], Factory]] = {}
"""Model-name prefixes resolved by a function instead of the registry: ``PREFIXES["tv"]`` turns
``tv:<name>`` into a factory (set by ``kdbench.models.torchvision_models``)."""


def model_factory(name: str) -> Factory:
    """The factory of a registered name or of a prefixed one (``tv:resnet18``); an unknown name
    raises ``KdbenchError``."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix](rest)
    return MODELS.get(name)


def build_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> StagedModel:
    """Instantiate a registered model; every factory takes ``num_classes`` and ``input_shape``
    (C, H, W)."""
    model = model_factory(name)(num_classes=num_classes, input_shape=tuple(input_shape))
    model.num_classes = num_classes
    return model


def count_params(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
