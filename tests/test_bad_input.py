"""Bad input: a one-line error naming the bad value and the valid choices, before any training,
with no traceback and no record written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from kdbench.matrix.profiles import PROFILES
from kdbench.models import MODELS, build_model
from kdbench.models.cnn import DigitsCNN
from kdbench.recipes import Recipe
from kdbench.registry import KdbenchError
from kdbench.results import make_record
from kdbench.run.engine import Engine
from kdbench.spec import RunSpec

USAGE_ERROR = int(pytest.ExitCode.USAGE_ERROR)


@pytest.mark.parametrize(
    "args, names",
    [
        (("--kd-profile", "nope"), ["'nope'", *PROFILES.names()]),
        (("--kd-seeds", "0"), ["--kd-seeds 0", "≥ 1"]),
        (("--kd-first-seed", "-1"), ["--kd-first-seed -1", "≥ 0"]),
        (("--kd-epochs", "0"), ["--kd-epochs 0", "≥ 1"]),
        (("--kd-threads", "0"), ["--kd-threads 0", "≥ 1"]),
        (("--kd-stop-after", "2h"), ["--kd-stop-after '2h'", "hours:minutes:seconds"]),
        (("--kd-device", "gpu"), ["'gpu'", "'cpu'", "'cuda'", "'all'"]),
        pytest.param(
            ("--kd-device", "cuda"),
            ["--kd-device cuda", "no CUDA GPU", "cpu", "all"],
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU"),
        ),
        (("--kd-results", "{old_record}/sub"), ["old.jsonl/sub", "not writable", "--kd-results"]),
        (("--kd-baseline", "/no/baseline.jsonl"), ["'/no/baseline.jsonl'", "no such file"]),
        (("--kd-teacher-ckpt", "cnn_x=/w.pt"), ["'cnn_x=/w.pt'", "NAME=PATH", "cnn_t"]),
        (("--kd-teacher-ckpt", "cnn_t=/no/w.pt"), ["'cnn_t=/no/w.pt'", "no file at '/no/w.pt'"]),
        (
            ("--kd-profile", "mnist", "--kd-data-root", "{old_record}.d"),
            ["mnist: no usable data set files", "old.jsonl.d", "--kd-download", "KDBENCH_DATA"],
        ),
        (
            ("--kd-profile", "mnist", "--kd-data-root", "{damaged_mnist}"),
            ["mnist: the data set files", "are damaged", "delete them"],
        ),
        (("--kd-cache", "{old_record}"), ["--kd-cache", "old.jsonl", "is a file", "KDBENCH_CACHE"]),
        (("--kd-cache", "{old_record}/sub"), ["--kd-cache", "old.jsonl is a file"]),
        (("--kd-baseline", "{empty}"), ["--kd-baseline", "empty.jsonl", "no records"]),
        (
            ("--kd-baseline", "{garbage}"),
            ["--kd-baseline", "garbage.bin", "1 corrupt", "cannot decide"],
        ),
        (("--kd-baseline", "{schema1}"), ["--kd-baseline", "schema [1]", "refresh the baseline"]),
        (("--kd-teacher-ckpt", "cnn_t={garbage}"), ["teacher checkpoint", "garbage.bin"]),
        (
            ("--kd-teacher-ckpt", "cnn_t={student_weights}"),
            ["does not fit model 'cnn_t'", "the file lacks", "the model lacks"],
        ),
    ],
    ids=[
        "profile",
        "seeds",
        "first-seed",
        "epochs",
        "threads",
        "stop-after",
        "device",
        "cuda-without-gpu",
        "results-under-a-file",
        "baseline-missing",
        "ckpt-unknown-teacher",
        "ckpt-missing-file",
        "data-root-without-files",
        "data-files-damaged",
        "cache-is-a-file",
        "cache-under-a-file",
        "baseline-empty",
        "baseline-garbage",
        "baseline-old-schema",
        "ckpt-garbage",
        "ckpt-wrong-architecture",
    ],
)
def test_bad_option_is_one_line_usage_error_before_training(kd_suite, pytester, args, names):
    results = pytester.path / "results"
    old_record = results / "runs" / "old.jsonl"
    old_record.parent.mkdir(parents=True)
    old_record.write_text('{"case_id": "old"}\n')
    (results / "runs" / "old.md").write_text("old leaderboard\n")
    before = {p: p.read_bytes() if p.is_file() else None for p in results.rglob("*")}
    cache = pytester.path / "cache"
    files = bad_files(pytester.path)

    result = kd_suite(
        "--kd-device",
        "cpu",
        *(a.format(old_record=old_record, **files) for a in args),
        cache=cache,
        results=results,
    )

    assert result.ret == USAGE_ERROR
    lines = [line for line in result.outlines + result.errlines if names[0] in line]
    assert len(lines) == 1 and "error" in lines[0].lower(), lines
    assert all(name in lines[0] for name in names), lines[0]
    assert "Traceback" not in str(result.stdout) + str(result.stderr)
    assert {p: p.read_bytes() if p.is_file() else None for p in results.rglob("*")} == before
    assert not cache.exists()


def bad_files(folder: Path) -> dict[str, Path]:
    """Files a user may pass by mistake: empty, garbage, a record of an old schema, weights of
    another architecture (resnet8), an MNIST folder whose files are damaged."""
    files = {
        name: folder / name
        for name in ("empty.jsonl", "garbage.bin", "schema1.jsonl", "student_weights.pt")
    }
    files["empty.jsonl"].write_text("")
    files["garbage.bin"].write_bytes(b"\x80\x04garbage, not a record\n")
    spec = RunSpec(**KD_CASE)
    files["schema1.jsonl"].write_text(
        json.dumps({**make_record(spec, "ok", {"top1": 90.0}, {}), "schema": 1}) + "\n"
    )
    torch.save(
        {"model": build_model("resnet8", 10, (1, 8, 8)).state_dict(), "epoch": 240},
        files["student_weights.pt"],
    )
    raw = folder / "damaged_mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(b"\x00\x00\x08\x03 truncated")
    return {name.split(".")[0]: path for name, path in files.items()} | {
        "damaged_mnist": raw.parents[1]
    }


def test_download_without_a_network_is_one_line_before_training(kd_suite, pytester, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)  # no test touches the network
    result = kd_suite(
        "--kd-device",
        "cpu",
        "--kd-profile",
        "mnist",
        "--kd-download",
        "--kd-data-root",
        str(pytester.path / "data"),
    )
    assert result.ret == USAGE_ERROR
    lines = [line for line in result.outlines + result.errlines if "could not download" in line]
    assert len(lines) == 1 and "mnist" in lines[0] and "network" in lines[0], lines
    assert "Traceback" not in str(result.stdout) + str(result.stderr)
    assert not list((pytester.path / "results").rglob("*.jsonl"))


NAN, INF = math.nan, math.inf
KD_CASE = {
    "dataset": "digits",
    "teacher": "cnn_t",
    "student": "cnn_s",
    "loss": "kd",
    "temperature": 4.0,
    "alpha": 0.9,
    "ce_weight": 0.1,
}


@pytest.mark.parametrize(
    "field, value, names",
    [
        ("dataset", "digts", ["'digts'", "digits", "`kdbench list datasets`"]),
        ("teacher", "cnn_x", ["'cnn_x'", "cnn_t", "`kdbench list models`"]),
        ("student", "cnn_q", ["'cnn_q'", "cnn_s", "`kdbench list models`"]),
        ("loss", "kdd", ["'kdd'", "kd", "`kdbench list losses`"]),
        ("temperature", 0.0, ["0.0", "> 0"]),
        ("temperature", -4.0, ["-4.0", "> 0"]),
        ("temperature", NAN, ["nan", "finite"]),
        ("temperature", INF, ["inf", "finite"]),
        ("temperature", None, ["None", "> 0"]),
        ("alpha", -0.1, ["-0.1", "[0, 1]"]),
        ("alpha", 1.5, ["1.5", "[0, 1]"]),
        ("alpha", NAN, ["nan", "[0, 1]"]),
        ("seed", -1, ["-1", "≥ 0"]),
        ("epochs", 0, ["epochs 0", "≥ 1"]),
        ("teacher_epochs", 0, ["teacher_epochs 0", "≥ 1"]),
        ("batch_size", 0, ["batch_size 0", "≥ 1"]),
        ("device", "gpu", ["'gpu'", "cpu", "cuda"]),
        ("precision", "fp8", ["'fp8'", "fp32", "amp"]),
        ("recipe", "adamw", ["'adamw'", "digits", "`kdbench list recipes`"]),
        ("loss_options", (("beta", 1.0),), ["'beta'", "'kd'", "none"]),
    ],
)
def test_bad_spec_field_is_one_line_error(field, value, names):
    RunSpec(**KD_CASE)
    with pytest.raises(KdbenchError) as info:
        RunSpec(**{**KD_CASE, field: value})
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in names), message


@pytest.mark.parametrize(
    "loss, options, names",
    [
        ("at", (("beta", -1.0),), ["beta=-1.0", "≥ 0"]),
        ("fitnet", (("beta", math.inf),), ["beta=inf", "finite"]),
        ("dkd", (("nckd_weight", math.nan),), ["nckd_weight=nan", "finite"]),
        ("dkd", (("warm", 1.0),), ["'warm'", "warmup", "nckd_weight"]),
    ],
)
def test_bad_loss_option_is_one_line_error(loss, options, names):
    temperature = 4.0 if loss == "dkd" else None
    case = {**KD_CASE, "loss": loss, "temperature": temperature, "loss_options": options}
    with pytest.raises(KdbenchError) as info:
        RunSpec(**case)
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in names), message


@pytest.mark.parametrize(
    "field, value",
    [("lr", -0.1), ("lr", math.nan), ("momentum", 1.0), ("weight_decay", -1e-4), ("gamma", 0.0)],
)
def test_bad_recipe_number_is_one_line_error(field, value):
    with pytest.raises(KdbenchError) as info:
        Recipe(**{"name": "mine", "lr": 0.1, field: value})
    message = str(info.value)
    assert "\n" not in message and f"invalid {field} {value!r} in recipe 'mine'" in message


def test_a_checkpoint_that_does_not_fit_the_teacher_is_one_line_error(
    tiny_spec, cache_dir, tmp_path
):
    ckpt = tmp_path / "wrong.pt"
    torch.save({"model": build_model("cnn_s", 10, (1, 8, 8)).state_dict()}, ckpt)
    with pytest.raises(KdbenchError) as info:
        Engine(cache_dir).distill(tiny_spec("kd", teacher_ckpt=str(ckpt)))
    message = str(info.value)
    assert "\n" not in message and "does not fit model 'cnn_t'" in message, message


@pytest.mark.parametrize("seeds", [0, -2])
def test_profile_with_fewer_than_one_seed(seeds):
    with pytest.raises(KdbenchError, match=f"seeds {seeds}.*≥ 1"):
        PROFILES.get("smoke").specs(("cpu",), seeds=seeds)


@pytest.fixture
def five_class_model():
    """A test-only model that ignores ``num_classes``: always 5 outputs."""
    MODELS.register("five_classes")(
        lambda num_classes, input_shape: DigitsCNN(4, 8, 16, 5, input_shape)
    )
    yield "five_classes"
    MODELS._entries.pop("five_classes")


@pytest.mark.parametrize("side", ["student", "teacher"])
def test_class_count_mismatch_fails_before_any_training(
    tiny_spec, cache_dir, five_class_model, side
):
    engine = Engine(cache_dir)
    spec = tiny_spec("kd", **{side: five_class_model})
    with pytest.raises(KdbenchError) as info:
        engine.distill(spec)
    message = str(info.value)
    assert "\n" not in message and "five_classes has 5" in message and "10" in message, message
    assert engine.teachers_trained == 0
    assert not list(cache_dir.rglob("*.pt"))
