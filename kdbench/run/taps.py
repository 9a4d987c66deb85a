"""Forward hooks that capture the named features a loss asks for (torchdistill-style).

``Tapper(model, taps)`` hooks exactly the modules those tap names address (see
``kdbench.models.base`` for the names) and ``tapper(x)`` returns ``{tap name: tensor}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from kdbench.losses.base import NotApplicable
from kdbench.models.base import StagedModel

ENGINE_TAPS = ("index",)  # filled by the engine, not by hooks


def _stage_path(model: StagedModel, kind: str, i: int) -> str:
    paths = model.stages if kind == "feat" else model.preact_stages
    path = paths[i] if -len(paths) <= i < len(paths) else None
    if path is None:
        raise NotApplicable(
            f"{type(model).__name__} has no {kind} stage {i} (it declares {len(paths)})"
        )
    return path


def resolve(model: StagedModel, tap: str) -> list[tuple[str, str]]:
    """Tap name → [(module path, 'out' | 'in')] it reads."""
    if tap == "logits":
        return []
    if tap == "embed":
        return [(model.classifier_path, "in")]
    if tap in ("feats", "preacts"):
        kind = "feat" if tap == "feats" else "preact"
        n = len(model.stages if kind == "feat" else model.preact_stages)
        if not n:  # an empty list would make a feature loss a silent zero
            raise NotApplicable(f"{type(model).__name__} declares no {kind} stages")
        return [resolve(model, f"{kind}:{i}")[0] for i in range(n)]
    kind, _, index = tap.partition(":")
    if kind in ("feat", "preact") and index.lstrip("-").isdigit():
        return [(_stage_path(model, kind, int(index)), "out" if kind == "feat" else "in")]
    raise NotApplicable(
        f"unknown tap {tap!r}: valid: logits, embed, feat:i, preact:i, feats, preacts, index"
    )


class Tapper:
    """Runs a model and returns the requested taps; hooks only the modules those taps need.
    With a ``compile_mode`` (a ``torch.compile`` mode) the model runs compiled, hooks inside."""

    def __init__(
        self, model: nn.Module, taps: Iterable[str], compile_mode: str | None = None
    ) -> None:
        self.model = model
        self._forward = torch.compile(model, mode=compile_mode) if compile_mode else model
        self.taps = tuple(t for t in taps if t not in ENGINE_TAPS)
        staged = cast(StagedModel, model)  # every model kdbench builds is one
        self._plan = {tap: resolve(staged, tap) for tap in self.taps}
        self._seen: dict[tuple[str, str], torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []
        for key in {k for keys in self._plan.values() for k in keys}:
            path, where = key
            module = model.get_submodule(path)
            if where == "out":
                self._handles.append(module.register_forward_hook(self._out_hook(key)))
            else:
                self._handles.append(module.register_forward_pre_hook(self._in_hook(key)))

    def _out_hook(self, key: tuple[str, str]) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self._seen[key] = output

        return hook

    def _in_hook(self, key: tuple[str, str]) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            # an in-place activation would overwrite the pre-activation we keep
            self._seen[key] = args[0].clone() if getattr(module, "inplace", False) else args[0]

        return hook

    def __call__(self, x: torch.Tensor) -> dict[str, Any]:
        self._seen.clear()
        logits = self._forward(x)
        out: dict[str, Any] = {}
        for tap, keys in self._plan.items():
            if tap == "logits":
                out[tap] = logits
            elif tap in ("feats", "preacts"):
                out[tap] = [self._seen[k] for k in keys]
            else:
                out[tap] = self._seen[keys[0]]
        out.setdefault("logits", logits)
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> Tapper:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def map_taps(fn: Callable[[torch.Tensor], Any], taps: dict[str, Any]) -> dict[str, Any]:
    """``taps`` with ``fn`` applied to every tensor (a tap is a tensor or a list of tensors)."""
    return {k: [fn(t) for t in v] if isinstance(v, list) else fn(v) for k, v in taps.items()}


def shapes(taps: dict[str, Any]) -> dict[str, Any]:
    return map_taps(lambda t: t.shape, taps)
