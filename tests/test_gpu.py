"""Several cases on one GPU (``--kd-cases-per-gpu``) and compile modes (``--kd-compile-mode``),
checked on the CPU: the worker → GPU mapping, option errors, what each record says about its
share of the hardware, and the compile mode reaching ``torch.compile``."""

from __future__ import annotations

import gc
import types
import weakref

import pytest
import torch

import kdbench.plugin
from kdbench.registry import KdbenchError
from kdbench.results import load_records
from kdbench.run.engine import Engine
from kdbench.scale.gpu_share import (
    check_cases_per_gpu,
    claim_gpu,
    gpu_for_worker,
    workers_on_gpu,
)

SMOKE = ("--kd-profile", "smoke", "--kd-device", "cpu", "--kd-epochs", "2")
ONE_CASE = ("-k", "cnn_m-ce-")


@pytest.mark.parametrize(
    "per_gpu,devices,expected",
    [
        (1, 2, [0, 1]),  # one worker per GPU
        (2, 2, [0, 0, 1, 1]),
        (4, 1, [0, 0, 0, 0]),
        (2, 3, [0, 0, 1, 1, 2, 2]),
        (3, 2, [0, 0, 0, 1, 1, 1]),
    ],
)
def test_k_consecutive_workers_share_a_gpu(per_gpu, devices, expected):
    workers = len(expected)
    assert [gpu_for_worker(w, per_gpu, devices) for w in range(workers)] == expected
    assert {workers_on_gpu(w, workers, per_gpu, devices) for w in range(workers)} == {per_gpu}


def test_workers_on_gpu_counts_what_round_robin_piles_up():
    # the default (K = 1) with more workers than GPUs is a round robin: 5 on 2 GPUs are 3 + 2
    assert [gpu_for_worker(w, 1, 2) for w in range(5)] == [0, 1, 0, 1, 0]
    assert [workers_on_gpu(w, 5, 1, 2) for w in range(5)] == [3, 2, 3, 2, 3]


@pytest.mark.parametrize(
    "per_gpu,workers,devices,message",
    [
        (0, 0, 1, "invalid --kd-cases-per-gpu 0: must be an integer ≥ 1"),
        (-2, 4, 1, "invalid --kd-cases-per-gpu -2: must be an integer ≥ 1"),
        (2, 2, 0, "--kd-cases-per-gpu 2: no CUDA GPU is available"),
        (4, 0, 1, "--kd-cases-per-gpu 4 with 1 GPU(s) needs -n 4 (or -n auto), got no -n"),
        (4, 3, 2, "--kd-cases-per-gpu 4 with 2 GPU(s) needs -n 8 (or -n auto), got -n 3"),
        (1, 4, 2, "--kd-cases-per-gpu 1 with 2 GPU(s) needs -n 2 (or -n auto), got -n 4"),
    ],
)
def test_cases_per_gpu_needs_k_times_gpus_workers(per_gpu, workers, devices, message):
    with pytest.raises(KdbenchError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        check_cases_per_gpu(per_gpu, workers, devices)


@pytest.mark.parametrize("per_gpu,workers,devices", [(4, 4, 1), (2, 4, 2), (1, 0, 1), (1, 1, 1)])
def test_cases_per_gpu_accepts_k_times_gpus_processes(per_gpu, workers, devices):
    check_cases_per_gpu(per_gpu, workers, devices)  # -n 0 is one process: K × GPUs = 1


@pytest.fixture
def fake_gpus(monkeypatch):
    """``fake_gpus(n)``: torch.cuda sees n GPUs; set_device and the memory cap are recorded."""
    calls: dict[str, list] = {"device": [], "fraction": []}

    def install(n: int) -> dict[str, list]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", calls["device"].append)
        monkeypatch.setattr(
            torch.cuda,
            "set_per_process_memory_fraction",
            lambda fraction, device: calls["fraction"].append((fraction, device)),
        )
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        return calls

    return install


def test_a_worker_claims_its_gpu_and_a_kth_of_its_memory(fake_gpus):
    calls = fake_gpus(2)
    share = claim_gpu(5, 8, 4, cap_memory=True)  # gw5 of -n 8 --kd-cases-per-gpu 4
    assert share == {"gpu_index": 1, "workers_per_gpu": 4, "gpu_memory_fraction": 0.25}
    assert calls == {"device": [1], "fraction": [(0.25, 1)]}


def test_without_the_option_workers_go_round_robin_uncapped(fake_gpus):
    calls = fake_gpus(2)
    share = claim_gpu(3, 4, 1, cap_memory=False)
    assert share == {"gpu_index": 1, "workers_per_gpu": 2, "gpu_memory_fraction": None}
    assert calls == {"device": [1], "fraction": []}


def test_a_cuda_record_says_which_gpu_and_how_many_shared_it(fake_gpus):
    fake_gpus(1)
    session = kdbench.session.state.KdSession(None, [], None, None)
    assert session.share("cpu") == {"workers": 1}
    assert session.share("cuda") == {
        "workers": 1,
        "gpu_index": 0,
        "workers_per_gpu": 1,
        "gpu_memory_fraction": None,
    }
    session.workers, session.gpu_share = 4, claim_gpu(2, 4, 4, cap_memory=True)
    assert session.share("cpu") == {"workers": 4}
    assert session.share("cuda") == {
        "workers": 4,
        "gpu_index": 0,
        "workers_per_gpu": 4,
        "gpu_memory_fraction": 0.25,
    }


@pytest.mark.parametrize(
    "gpus,per_gpu,expected", [(2, 4, 8), (1, 3, 3), (0, 4, None), (2, None, None)]
)
def test_n_auto_starts_k_times_gpus_workers(fake_gpus, gpus, per_gpu, expected):
    fake_gpus(gpus)
    config = types.SimpleNamespace(getoption=lambda name: {"kd_cases_per_gpu": per_gpu}[name])
    assert kdbench.plugin.pytest_xdist_auto_num_workers(config) == expected


@pytest.mark.parametrize(
    "args,message",
    [
        (("--kd-cases-per-gpu", "0"), "invalid --kd-cases-per-gpu 0: must be an integer ≥ 1"),
        (
            ("--kd-cases-per-gpu", "2"),
            "--kd-cases-per-gpu 2: no CUDA GPU is available; CPU cases "
            "share the cores through -n and --kd-threads",
        ),
        (
            ("--kd-compile-mode", "reduce-overhead"),
            "--kd-compile-mode reduce-overhead applies to compiled students: add --kd-compile",
        ),
    ],
)
def test_gpu_options_fail_with_one_usage_line(kd_suite, args, message):
    result = kd_suite(*SMOKE, *args, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.startswith("ERROR:")] == [f"ERROR: {message}"]


def test_an_unknown_compile_mode_is_refused(kd_suite, tiny_spec):
    result = kd_suite(*SMOKE, "--kd-compile", "--kd-compile-mode", "fast", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "invalid choice: 'fast'" in result.stderr.str()
    with pytest.raises(
        KdbenchError,
        match="invalid compile mode 'fast': valid: default, reduce-overhead, max-autotune",
    ):
        Engine(compile_mode="fast")


def test_records_say_how_many_workers_shared_the_machine(kd_suite, pytester):
    kd_suite(*SMOKE, *ONE_CASE).assert_outcomes(passed=1)
    (record,) = load_records(list((pytester.path / "results" / "runs").glob("*.jsonl")))
    assert record["env"]["workers"] == 1 and record["env"]["threads"] == 1
    assert record["env"]["compile_mode"] is None
    assert "gpu_index" not in record["env"]  # a CPU case


@pytest.fixture
def compiled(monkeypatch):
    """The modes ``torch.compile`` is called with; the model runs uncompiled."""
    modes: list[str | None] = []

    def fake_compile(model, mode=None):
        modes.append(mode)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    return modes


def test_the_compile_mode_reaches_torch_compile_and_the_record(kd_suite, pytester, compiled):
    kd_suite(
        *SMOKE, *ONE_CASE, "--kd-compile", "--kd-compile-mode", "reduce-overhead"
    ).assert_outcomes(passed=1)
    assert compiled == ["reduce-overhead", "reduce-overhead"]  # training student, speed timing
    (record,) = load_records(list((pytester.path / "results" / "runs").glob("*.jsonl")))
    assert record["spec"]["compile"] is True and record["env"]["compile_mode"] == "reduce-overhead"


def test_only_compiled_cases_call_torch_compile(cache_dir, tiny_spec, compiled):
    engine = Engine(cache_dir=cache_dir, compile_mode="max-autotune")
    plain, feature_taps = tiny_spec("at"), tiny_spec("at", compile=True)
    engine.distill(plain)
    assert compiled == [] and engine.compile_mode_for(plain) is None
    engine.distill(feature_taps)
    assert compiled == ["max-autotune", "max-autotune"]
    assert engine.compile_mode_for(feature_taps) == "max-autotune"


def test_a_failed_case_leaves_its_tensors_to_the_next_case(kd_suite, pytester, monkeypatch):
    """CUDA out of memory is recorded and the session goes on; pytest keeps the failure's
    traceback, which must not keep the failed case's tensors (its GPU memory) alive."""
    alive = []

    def out_of_memory(self, spec):
        activations = torch.zeros(1000)
        alive.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Engine, "distill", out_of_memory)
    kd_suite(*SMOKE, "-k", "cnn_m-ce- or cnn_m-kd-").assert_outcomes(failed=2)
    gc.collect()
    assert len(alive) == 2 and all(ref() is None for ref in alive)
    records = load_records(list((pytester.path / "results" / "runs").glob("*.jsonl")))
    assert [r["status"] for r in records] == ["error", "error"]
    assert all(r["error"].startswith("torch.OutOfMemoryError: CUDA out of memory") for r in records)
