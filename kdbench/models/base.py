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

Tap names a loss may ask for (see ``kdbench.run.taps``): ``logits``, ``embed`` (classifier input),
``feat:i`` and ``preact:i`` (stage ``i``, negative indices allowed), ``feats`` and ``preacts``
(lists over all stages), ``index`` (the batch's dataset indices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from kdbench.registry import MODELS, KdbenchError


class StagedModel(nn.Module):
    """The model contract every loss relies on: a classifier whose feature stages are named
    module paths (``stages``: each stage's output; ``preact_stages``: its input before the last
    ReLU, ``None`` where a stage has none) and whose head is ``classifier_path`` (its input is
    the embedding, its output the logits). Paths, not modules, so that published checkpoints
    load with their own parameter names; ``kdbench.run.taps`` reads the stages through hooks."""

    stages: tuple[str, ...] = ()
    preact_stages: tuple[str | None, ...] = ()
    classifier_path: str
    num_classes: int = 0
    native_input: tuple[int, int, int] = (3, 32, 32)  # the input it was designed for (listings)

    def classifier_module(self) -> nn.Module:
        return self.get_submodule(self.classifier_path)


class WrappedModel(StagedModel):
    """A model of another library (``net``) with the stage paths found for it. Its weights load
    from that library's own state dict as well as from kdbench's (keys prefixed ``net.``)."""

    def __init__(
        self,
        net: nn.Module,
        stages: tuple[str, ...],
        classifier: str,
        preact_stages: tuple[str | None, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self.stages = tuple(f"net.{path}" for path in stages)
        self.preact_stages = tuple(path and f"net.{path}" for path in preact_stages)
        self.classifier_path = f"net.{classifier}"
        self.register_load_state_dict_pre_hook(_prefix_bare_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, classes)
        return self.net(x)


def _prefix_bare_keys(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """A state dict of the wrapped model itself (no ``net.`` keys) is read as the wrapper's."""
    own = f"{prefix}net."
    if not any(key.startswith(own) for key in state_dict):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            state_dict[own + key[len(prefix) :]] = state_dict.pop(key)


def probe(
    net: nn.Module,
    input_shape: tuple[int, int, int],
    paths: Iterable[str],
    record: Callable[[str, nn.Module, tuple, object], None],
) -> None:
    """One forward of a zero batch of one through ``net`` in eval mode without gradients, with
    ``record(path, module, args, output)`` hooked on each submodule in ``paths``; the mode is
    restored and the hooks removed afterwards."""
    handles = [net.get_submodule(p).register_forward_hook(partial(record, p)) for p in paths]
    training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    finally:
        net.train(training)
        for h in handles:
            h.remove()


@contextmanager
def build_errors(name: str, input_shape: tuple[int, int, int]) -> Iterator[None]:
    """A library's error while building or probing model ``name`` as a one-line ``KdbenchError``."""
    try:
        yield
    except (RuntimeError, ValueError, AssertionError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise KdbenchError(
            f"{name} does not run on inputs of shape {input_shape}: {first}"
        ) from None


Factory = Callable[..., StagedModel]

PREFIXES: dict[str, Callable[[str], Factory]] = {}
"""Model-name prefixes resolved by a function instead of the registry: ``PREFIXES["tv"]`` turns
``tv:<name>`` into a factory (set by ``kdbench.models.torchvision_models``), ``PREFIXES["timm"]``
``timm:<name>`` (``kdbench.models.timm_models``)."""


def model_factory(name: str) -> Factory:
    """The factory of a registered name or of a prefixed one (``tv:resnet18``,
    ``timm:resnet50``); an unknown name raises ``KdbenchError``."""
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
