"""Fixtures shared by kdbench's own tests: one torch thread, tiny cases on synthetic data,
engines on a temporary cache, and the real benchmark suite run inside ``pytester``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

import kdbench.run.engine
from kdbench.losses import LOSSES
from kdbench.run.engine import Engine
from kdbench.spec import RunSpec, make_spec

# kdbench imports torchvision on first use. pytester's in-process runs drop the modules they
# imported when they end; torchvision re-imported after that registers its torch operators
# twice and fails. Imported here, it is there before any in-process run and stays.
for _module in ("torchvision.datasets", "torchvision.models"):
    importlib.import_module(_module)

SUITE = Path(__file__).resolve().parents[1] / "suites" / "test_cases.py"
TINY_DATA = (("num_test", 64), ("num_train", 256))  # synthetic: 10 classes, 1×8×8


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def script() -> Callable[[str], ModuleType]:
    """A script of the repository (``scripts/readme.py``, ``benchmarks/gate_power.py``) imported
    as a module, by its path from the repository root."""

    def load(path: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_spec() -> Callable[..., RunSpec]:
    """``tiny_spec(loss, **fields)``: a synthetic-data case cnn_t → cnn_s, trained in a blink."""

    def make(loss: str = "kd", **fields) -> RunSpec:
        defaults = {
            "dataset": "synthetic",
            "teacher": "cnn_t",
            "student": "cnn_s",
            "temperature": 4.0 if LOSSES.get(loss).uses_temperature else None,
            "epochs": 2,
            "teacher_epochs": 2,
            "dataset_options": TINY_DATA,
        }
        return make_spec(loss=loss, **{**defaults, **fields})

    return make


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def distill(monkeypatch: pytest.MonkeyPatch) -> Callable[[Engine, RunSpec], dict]:
    """``distill(engine, spec)``: the case's metrics, history and its trained student's weights."""
    built: list[torch.nn.Module] = []
    build = kdbench.run.engine.build_model

    def recording(*args, **kwargs) -> torch.nn.Module:
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(kdbench.run.engine, "build_model", recording)

    def run(engine: Engine, spec: RunSpec) -> dict:
        outcome = engine.distill(spec)  # the student is the last model it builds
        return {
            "metrics": outcome.metrics,
            "history": outcome.info["history"],
            "weights": built[-1].state_dict(),
        }

    return run


@pytest.fixture(scope="session")
def suite_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One teacher cache for every pytester run of the session: the digits teacher trains once."""
    return tmp_path_factory.mktemp("kd-cache")


@pytest.fixture
def kd_suite(pytester: pytest.Pytester, suite_cache: Path):
    """``run(*args, cache=…, results=…, subprocess=False)``: the real ``suites/test_cases.py``
    under the kdbench plugin (loaded by its entry point) on the CPU with one thread."""
    pytester.makepyfile(test_cases=SUITE.read_text())

    def run(
        *args: str, cache: Path = suite_cache, results: Path | None = None, subprocess: bool = False
    ) -> pytest.RunResult:
        base = (
            "--kd-threads",
            "1",
            "--kd-cache",
            str(cache),
            "--kd-results",
            str(results or pytester.path / "results"),
            "-p",
            "no:cacheprovider",
        )
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest_inprocess
        return runner(*base, *args)

    return run
