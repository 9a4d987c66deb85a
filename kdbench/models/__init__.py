"""MODELS registry: one file per family. Importing this package registers every model."""

from kdbench._autoload import import_submodules
from kdbench.models.base import StagedModel, build_model, count_params
from kdbench.registry import MODELS

import_submodules(__name__, __path__)

__all__ = ["MODELS", "StagedModel", "build_model", "count_params"]
