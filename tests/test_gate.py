"""The regression gate catches a distillation method that stopped working and stays quiet on
runs that differ only in seeds or threads: planted collapses in real records, a real run whose
KD term was zeroed, and the detection and false-alarm rates of benchmarks/gate_power.py on the
committed records of the nightly gate's profile."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from kdbench.cli import main
from kdbench.compare import Thresholds, compare
from kdbench.results import append_record, load_records

REPO = Path(__file__).resolve().parents[1]
GATE = REPO / "results" / "gate"
ZERO_KD = """
import kdbench.losses.kd as kd

forward = kd.KD.forward
kd.KD.forward = lambda self, s, t, y: 0.0 * forward(self, s, t, y)  # the term stopped acting
"""


def _power():
    spec = importlib.util.spec_from_file_location("gate_power",
                                                  REPO / "benchmarks" / "gate_power.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_real_run_whose_kd_term_was_zeroed_fails_the_gate(kd_suite, pytester):
    args = ("--kd-profile", "quick", "--kd-device", "cpu", "--kd-seeds", "3", "--kd-epochs", "8",
            "-k", "cnn_t/cnn_s-kd-T4 or cnn_t/cnn_s-ce-")
    kd_suite(*args, results=pytester.path / "base").assert_outcomes(passed=6)
    pytester.makeconftest(ZERO_KD)  # a subprocess: the patch must not outlive the run
    kd_suite(*args, results=pytester.path / "broken", subprocess=True)
    status = main(["compare", str(pytester.path / "base" / "runs"),
                   str(pytester.path / "broken" / "runs")])
    assert status == 1
