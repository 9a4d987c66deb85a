"""DATASETS registry: one file per source. Importing this package registers every data set."""

from kdbench._autoload import import_submodules
from kdbench.data.base import DataSource, TensorData, load_dataset
from kdbench.registry import DATASETS

import_submodules(__name__, __path__)

__all__ = ["DATASETS", "DataSource", "TensorData", "load_dataset"]
