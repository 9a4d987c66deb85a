"""The pytest plugin through ``pytester``: options, records, verbose lines, the leaderboard, CUDA
skips and pytest-xdist, running the real ``suites/test_distill.py`` on the smoke profile."""

from __future__ import annotations

import json
import re

import pytest
import torch

from kdbench.losses import LOSSES
from kdbench.matrix.profiles import PROFILES
from kdbench.results import load_records

EPOCHS = 5  # with 3 (17 steps of 64 of digits' 1,077 training images) kd stayed at chance
SMOKE = ("--kd-profile", "smoke", "--kd-device", "cpu", "--kd-epochs", str(EPOCHS))
RECORD_KEYS = {"schema", "case_id", "group_id", "status", "spec", "metrics", "env", "created_at"}
SPEC_KEYS = {
    "dataset",
    "teacher",
    "student",
    "loss",
    "temperature",
    "alpha",
    "seed",
    "device",
    "epochs",
}
METRIC_KEYS = {
    "top1",
    "top5",
    "val_top1",
    "best_top1",
    "teacher_top1",
    "student_params",
    "teacher_params",
    "extra_params",
    "student_flops",
    "train_throughput",
    "train_throughput_online",
    "infer_throughput",
    "latency_ms",
    "peak_mem_mb",
    "agreement",
    "fidelity_kl",
    "train_s",
}
ENV_KEYS = {"torch", "python", "device_name", "threads", "git_sha", "kdbench_version"}


def smoke_ids(losses: set[str], seeds: int) -> set[str]:
    specs = PROFILES.get("smoke").specs(("cpu",), seeds=seeds, epochs=EPOCHS)
    return {s.name for s in specs if s.loss in losses}


def test_help_lists_every_kd_option(kd_suite, request):
    options = {
        "--" + dest.replace("_", "-")
        for dest in vars(request.config.option)
        if dest.startswith("kd_")
    }
    assert {"--kd-profile", "--kd-device", "--kd-seeds", "--kd-epochs", "--kd-results"} <= options
    out = kd_suite("--help").stdout.str()
    assert sorted(o for o in options if o not in out) == []


def test_tiny_run_writes_records_and_leaderboard(kd_suite, pytester):
    result = kd_suite(*SMOKE, "-v", "-k", "cnn_m-ce- or cnn_m-kd-")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert len(re.findall(r"PASSED top1 \d+\.\d\d% \d+\.\ds", out)) == 2

    runs = list((pytester.path / "results" / "runs").glob("*.jsonl"))
    assert len(runs) == 1
    records = load_records(runs)
    assert {r["name"] for r in records} == smoke_ids({"ce", "kd"}, 1)
    for record in records:
        assert RECORD_KEYS <= set(record) and record["status"] == "ok"
        assert SPEC_KEYS <= set(record["spec"])
        assert METRIC_KEYS <= set(record["metrics"])
        assert ENV_KEYS <= set(record["env"])
        assert record["spec"]["epochs"] == EPOCHS and record["env"]["threads"] == 1

    assert {r["metrics"].get("teacher_outputs") for r in records} == {None, "cached"}  # ce, kd
    leaderboard = runs[0].with_suffix(".md").read_text()  # next to its records
    for r in records:
        t = r["spec"]["temperature"]
        row = rf"\| cnn_t/cnn_m \| {r['spec']['loss']} +\| {'' if t is None else f'{t:g}'} +\| +"
        assert re.search(row + re.escape(f"{r['metrics']['top1']:.2f}"), leaderboard), row
    assert "kdbench leaderboard" in out
    assert all(line in out for line in leaderboard.strip().splitlines())
    assert not (pytester.path / "results" / "leaderboard.md").exists()  # no shared file


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip on a machine without a GPU")
def test_cuda_cases_skip_with_a_reason_without_gpu(kd_suite, pytester):
    result = kd_suite("--kd-profile", "smoke", "--kd-device", "all", "-rs", "-k", "cnn_m-ce-cuda")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*no CUDA GPU*"])
    assert not list(pytester.path.glob("results/runs/*.jsonl"))


def test_xdist_workers_write_every_case_once_to_one_run_file(kd_suite, pytester):
    result = kd_suite(
        *SMOKE, "--kd-seeds", "2", "-n", "2", "-k", "cnn_m-ce- or cnn_m-kd-", subprocess=True
    )
    expected = smoke_ids({"ce", "kd"}, 2)
    result.assert_outcomes(passed=len(expected))
    runs = list((pytester.path / "results" / "runs").glob("*.jsonl"))
    assert len(runs) == 1
    lines = runs[0].read_text().splitlines()
    records = load_records(runs)
    assert len(lines) == len(records) == len(expected)
    assert sorted(r["name"] for r in records) == sorted(expected)
    assert len({r["case_id"] for r in records}) == len(expected)
    assert {(r["env"]["workers"], r["env"]["threads"]) for r in records} == {(2, 1)}


def test_kd_baseline_fails_the_session_on_a_regression_only(kd_suite, pytester):
    # Gate what a rerun reproduces; latency and throughput vary between sessions on a shared box.
    pytester.makepyprojecttoml('[tool.kdbench.compare]\nmetrics = ["top1", "agreement"]\n')
    kd_suite(*SMOKE, "-k", "cnn_m-ce-").assert_outcomes(passed=1)
    (record,) = load_records(list((pytester.path / "results" / "runs").glob("*.jsonl")))
    same, better = pytester.path / "same.jsonl", pytester.path / "better.jsonl"
    same.write_text(json.dumps(record) + "\n")
    planted = {**record, "metrics": {**record["metrics"], "top1": record["metrics"]["top1"] + 5}}
    better.write_text(json.dumps(planted) + "\n")  # the baseline was 5 points better

    ok = kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-baseline", str(same))
    assert ok.ret == 0 and f"baseline {same}: no regression" in ok.stdout.str()
    assert "latency_ms" not in ok.stdout.str().split("kdbench regression gate")[1]
    worse = kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-baseline", str(better))
    worse.assert_outcomes(passed=1)  # every case passed, yet the session fails
    assert worse.ret == int(pytest.ExitCode.TESTS_FAILED)
    assert "kdbench regression gate" in worse.stdout.str()
    assert f"baseline {better}: REGRESSION" in worse.stdout.str()


@pytest.mark.parametrize("marker", ["logits_only", "hidden_layers", "student_alone"])
def test_loss_kind_markers_select_by_declared_taps(kd_suite, marker):
    result = kd_suite(*SMOKE, "-m", marker, "--collect-only", "-q")
    ids = [line for line in result.outlines if "test_case[" in line]
    losses = {line.split("-")[2] for line in ids}  # digits-cnn_t/cnn_m-<loss>-…
    logit_only = {n for n in LOSSES.names() if set(LOSSES.get(n).taps) <= {"logits"}} - {"ce"}
    expected = {
        "logits_only": logit_only,
        "student_alone": {"ce"},
        "hidden_layers": set(LOSSES.names()) - logit_only - {"ce"},
    }[marker]
    assert losses == expected


@pytest.mark.parametrize("loss", LOSSES.names())
def test_k_on_a_loss_name_selects_exactly_the_losses_that_contain_it(kd_suite, pytester, loss):
    """`-k` matches names, ids and markers as substrings: no marker, file or function name may
    contain a loss name, or `-k <loss>` selects every case."""
    # --rootdir: the names of folders between the rootdir and the suite count for -k too
    result = kd_suite(*SMOKE, "-k", loss, "--collect-only", "-q", "--rootdir", str(pytester.path))
    ids = [line for line in result.outlines if "::" in line]
    assert ids and all("test_case[" in line for line in ids)
    assert {line.split("-")[2] for line in ids} == {n for n in LOSSES.names() if loss in n}


def test_kd_baseline_fails_on_missing_cases_unless_a_subset_is_allowed(kd_suite, pytester):
    pytester.makepyprojecttoml('[tool.kdbench.compare]\nmetrics = ["top1"]\n')
    kd_suite(*SMOKE, "-k", "cnn_m-ce- or cnn_m-kd-").assert_outcomes(passed=2)
    (baseline,) = (pytester.path / "results" / "runs").glob("*.jsonl")
    subset = kd_suite(*SMOKE, "-k", "cnn_m-ce-", "--kd-baseline", str(baseline))
    assert subset.ret == int(pytest.ExitCode.TESTS_FAILED)
    assert "1 baseline case(s) missing from the current run" in subset.stdout.str()
    allowed = kd_suite(
        *SMOKE, "-k", "cnn_m-ce-", "--kd-baseline", str(baseline), "--kd-allow-missing"
    )
    assert allowed.ret == 0, allowed.stdout.str()
    assert "no regression (1 baseline case(s) not run, allowed)" in allowed.stdout.str()
    folder = kd_suite(
        *SMOKE, "-k", "cnn_m-ce- or cnn_m-kd-", "--kd-baseline", str(baseline.parent)
    )  # a folder of records is a baseline too
    assert folder.ret == 0, folder.stdout.str()


def test_one_torch_thread_per_process_by_default(pytester):
    """A second intra-op thread was up to 5× slower on a shared 2-core machine
    (docs/performance.md)."""
    pytester.makepyfile(
        test_threads="import torch\n\ndef test_threads():\n"
        "    assert torch.get_num_threads() == 1\n"
    )
    pytester.runpytest_subprocess("-n", "0", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider").assert_outcomes(passed=1)
