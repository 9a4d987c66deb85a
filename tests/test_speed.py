"""``kdbench speed``: every student configuration of a run measured once more, apart from the
run, and the reports showing those numbers instead of the ones the cases measured beside other
workers (``kdbench.run.speed``)."""

from __future__ import annotations

import json

import pytest
import torch

from kdbench.cli import main
from kdbench.publish.summary import summarize
from kdbench.results import append_record, load_records, make_record, records_frame
from kdbench.run import measure, speed
from kdbench.spec import make_spec

TINY = (("num_test", 64), ("num_train", 256))


def case(student, loss, seed, infer, status="ok", device="cpu", augment=False):
    """A record of the synthetic data set whose in-run inference speed is ``infer``."""
    options = (*TINY, ("augment", True)) if augment else TINY
    spec = make_spec(
        "synthetic",
        "cnn_t",
        student,
        loss,
        temperature=4.0 if loss == "kd" else None,
        seed=seed,
        device=device,
        dataset_options=options,
    )
    metrics = {"top1": 50.0 + seed, "val_top1": 50.0, "infer_throughput": infer, "latency_ms": 9.0}
    return make_record(spec, status, metrics if status == "ok" else {}, {"threads": 1})


@pytest.fixture
def run(tmp_path):
    """A run's folder: cnn_s under two losses, two seeds and with or without augmentation
    (training batches only), its in-run speeds far apart; cnn_m once; one n/a case."""
    folder = tmp_path / "run"
    records = [
        case("cnn_s", "ce", 0, 1.0),
        case("cnn_s", "ce", 1, 50_000.0),
        case("cnn_s", "kd", 0, 7.0),
        case("cnn_s", "kd", 1, 3.0, augment=True),
        case("cnn_m", "ce", 0, 2.0),
        case("cnn_m", "fsp", 0, 0.0, status="n/a"),
    ]
    for r in records:
        append_record(folder / "runs" / "a.jsonl", r)
    return folder


def test_each_configuration_is_measured_once_and_the_reports_show_it(run, capsys):
    before = (run / "runs" / "a.jsonl").read_bytes()
    assert main(["speed", str(run)]) == 0
    out = capsys.readouterr().out
    entries = json.loads((run / speed.FILE).read_text())["entries"]
    assert sorted(e["student"] for e in entries) == ["cnn_m", "cnn_s"]  # augment: same input
    assert all(e["infer_throughput"] > 100 and e["latency_ms"] > 0 for e in entries)
    assert {e["device_name"] for e in entries} == {measure.cpu_name()}
    assert out.count("| cnn_s ") == 1 and out.count("| cnn_m ") == 1
    assert "1–50,000" in out and "| 2–2 " in out  # what the cases measured in the run
    assert (run / "runs" / "a.jsonl").read_bytes() == before  # the records stay as run

    records = load_records([run])
    shown = summarize(records_frame(speed.applied(records, [run])))
    by_student = {e["student"]: e for e in entries}
    for _, row in shown[shown["n"].gt(0)].iterrows():
        entry = by_student[row["pair"].split("/")[1]]
        assert row["infer_throughput_mean"] == pytest.approx(entry["infer_throughput"])
        assert row["latency_ms_mean"] == pytest.approx(entry["latency_ms"])
        assert row["infer_throughput_std"] == 0 or row["n"] == 1

    assert main(["report", str(run), "--baseline", str(run.parent / "base.jsonl")]) == 0
    report = capsys.readouterr().out
    date = entries[0]["measured_at"][:10]
    assert f"**inference speed**: kdbench speed on {measure.cpu_name()}, {date}\n" in report
    kept = load_records([run.parent / "base.jsonl"])  # what the gate compares: as run
    assert sorted(r["metrics"].get("infer_throughput", 0) for r in kept) == sorted(
        r["metrics"].get("infer_throughput", 0) for r in records
    )


def test_without_a_speed_file_reports_say_nothing_of_it(run, capsys):
    assert main(["report", str(run)]) == 0
    assert "inference speed" not in capsys.readouterr().out
    records = load_records([run])
    assert speed.applied(records, [run]) is records


def test_a_cuda_configuration_without_a_gpu_is_left_as_run(run, capsys, monkeypatch):
    append_record(run / "runs" / "a.jsonl", case("cnn_s", "ce", 0, 11.0, device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["speed", str(run)]) == 0
    assert "no CUDA GPU here: left as run" in capsys.readouterr().out
    entries = json.loads((run / speed.FILE).read_text())["entries"]
    assert {e["device"] for e in entries} == {"cpu"}
    shown = speed.applied(load_records([run]), [run])
    cuda = [r for r in shown if r["spec"]["device"] == "cuda"]
    assert cuda[0]["metrics"]["infer_throughput"] == 11.0
    assert cuda[0]["env"]["infer_measured"] == speed.AS_RUN


def test_a_second_measurement_keeps_the_entries_it_did_not_measure_again(run):
    assert main(["speed", str(run)]) == 0
    path = run / speed.FILE
    doc = json.loads(path.read_text())
    planted = {**doc["entries"][0], "student": "resnet8", "infer_throughput": 123.0}
    path.write_text(json.dumps({"entries": [*doc["entries"], planted]}))
    assert main(["speed", str(run)]) == 0
    entries = json.loads(path.read_text())["entries"]
    assert [e["student"] for e in entries].count("resnet8") == 1
    assert len(entries) == 3


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "JSONDecodeError"),
        ('{"entries": [{"student": "cnn_s"}]}', "entry 1: infer_throughput missing or not float"),
        ('{"rows": []}', "KeyError"),
    ],
)
def test_a_broken_speed_file_is_a_one_line_error_naming_it(run, capsys, text, why):
    (run / speed.FILE).write_text(text)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(run / speed.FILE) in err and why in err and "kdbench speed" in err


def test_bad_folders_are_one_line_errors(tmp_path, capsys):
    assert main(["speed", str(tmp_path / "nowhere")]) == 2
    assert "no results folder at" in capsys.readouterr().err
    append_record(tmp_path / "na" / "a.jsonl", case("cnn_m", "fsp", 0, 0.0, status="n/a"))
    assert main(["speed", str(tmp_path / "na")]) == 2
    assert "no ok records" in capsys.readouterr().err
