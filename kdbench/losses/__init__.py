"""LOSSES registry: one file per paper, one class per file. Importing registers every loss."""

from kdbench._autoload import import_submodules
from kdbench.losses.base import DistillLoss, LossContext, NotApplicable
from kdbench.registry import LOSSES

import_submodules(__name__, __path__)

__all__ = ["LOSSES", "DistillLoss", "LossContext", "NotApplicable"]
