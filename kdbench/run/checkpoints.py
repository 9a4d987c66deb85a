"""Teacher checkpoints from outside kdbench (``--kd-teacher-ckpt``), read and loaded one way.

A checkpoint is a ``torch.save`` file (zip, or the format before torch 1.6) that holds:

- a state dict (parameter and buffer names → tensors), or
- a dict with one under ``"model"``: RepDistiller's teachers (``{"model", "epoch", …}``) and its
  ``train_teacher.py`` ``<model>_last.pth`` (``{"opt": argparse.Namespace, "model",
  "optimizer"}``), or under ``"state_dict"`` (torchvision's reference scripts, Lightning).

Files are read with ``weights_only=True``: tensors, containers and plain values, plus
``argparse.Namespace`` for RepDistiller's options; no other code runs on load. Loading is strict.
Whatever goes wrong is one ``KdbenchError`` line that names the file and what is wrong with it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench.registry import KdbenchError
from kdbench.run.cache import sha256_file

NESTED_UNDER = ("model", "state_dict")  # keys under which trainers save the state dict
SAFE_GLOBALS = (argparse.Namespace,)  # RepDistiller's `_last.pth` keeps its options as one
SHOWN = 4  # names shown per list in an error


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict a checkpoint file holds, as it is or under ``"model"`` / ``"state_dict"``."""
    where = f"teacher checkpoint {str(path)!r}"
    if not os.path.isfile(path):
        raise KdbenchError(f"{where}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise KdbenchError(f"{where} is empty (0 bytes): expected a file written by torch.save")
    try:
        with torch.serialization.safe_globals([*SAFE_GLOBALS]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # on arbitrary bytes torch.load raises anything, KeyError included
        raise KdbenchError(f"{where} ({size} bytes): {_unreadable(path, exc)}") from None
    for key in NESTED_UNDER:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not (
        isinstance(obj, dict)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise KdbenchError(
            f"{where} holds no state dict (name → tensor), as it is or under "
            f"{' or '.join(map(repr, NESTED_UNDER))}: it holds {_describe(obj)}"
        )
    return obj


def load_into(
    model: nn.Module, state: dict[str, torch.Tensor], name: str, path: str | os.PathLike
) -> None:
    """Load ``state`` into ``model`` (architecture ``name``) strictly; on a mismatch, one line
    naming the keys the model expects and the file lacks, those the file holds and the model
    lacks, and the tensors whose shapes differ."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise KdbenchError(
            f"teacher checkpoint {str(path)!r} does not fit model {name!r}: "
            f"{_mismatch(model.state_dict(), state, exc)}"
        ) from None


def load_checkpoint(path: str, name: str, model: nn.Module) -> tuple[dict, dict]:
    """A user's teacher weights loaded into ``model``: its state dict and where it came from."""
    load_into(model, read_state_dict(path), name, path)
    return model.state_dict(), {"source": path, "sha256_source": sha256_file(Path(path))}


def _unreadable(path: str | os.PathLike, exc: Exception) -> str:
    """Why ``torch.load`` failed, without its pickle internals and its advice to unpickle code."""
    if isinstance(exc, pickle.UnpicklingError) and zipfile.is_zipfile(path):
        objects = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if objects:
            return (
                f"holds pickled Python objects of {_few(objects)}, which kdbench does not "
                f"load; save the weights alone: torch.save(model.state_dict(), path)"
            )
    return (
        f"torch.load cannot read it ({type(exc).__name__}): truncated, corrupted, not written "
        f"by torch.save, or pickled objects other than tensors"
    )


def _describe(obj: Any) -> str:
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    if not obj:
        return "an empty dict"
    others = [
        f"{k!r} ({type(v).__name__})"
        for k, v in obj.items()
        if not (isinstance(k, str) and isinstance(v, torch.Tensor))
    ]
    return f"a dict whose entries include {_few(others)}"


def _mismatch(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], exc: RuntimeError
) -> str:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    resized = [
        f"{k} {tuple(found[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    parts = [
        f"the model expects {_keys(missing)} that the file lacks" if missing else "",
        f"the file holds {_keys(unexpected)} that the model lacks" if unexpected else "",
        f"shapes differ (file vs model) for {_keys(resized)}" if resized else "",
    ]
    lines = str(exc).splitlines()  # "Error(s) in loading state_dict for …:", then one per line
    return "; ".join(filter(None, parts)) or (lines[1] if len(lines) > 1 else str(exc)).strip()


def _keys(names: list[str]) -> str:
    return f"{len(names)} key{'' if len(names) == 1 else 's'} ({_few(names)})"


def _few(names: list[str]) -> str:
    """At most ``SHOWN`` names, then an ellipsis."""
    return ", ".join(names[:SHOWN]) + (", …" if len(names) > SHOWN else "")
