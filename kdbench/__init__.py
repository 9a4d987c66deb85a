"""kdbench: a pytest-native benchmark suite for knowledge distillation in PyTorch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kdbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
