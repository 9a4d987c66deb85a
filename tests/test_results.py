"""The record store: whole lines under concurrent writers, a tolerant loader, the DataFrame."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from kdbench.registry import KdbenchError
from kdbench.results import (
    SCHEMA,
    append_record,
    check_writable,
    load_records,
    make_record,
    newest,
    read,
    records_frame,
)
from kdbench.spec import make_spec

WRITERS, PER_WRITER = 4, 60
PADDING = 20_000  # characters per record: far beyond one atomic pipe-sized write

WRITER = """
import os, sys, time
from pathlib import Path
from kdbench.results import append_record
path, go, writer, count, padding = Path(sys.argv[1]), Path(sys.argv[2]), *map(int, sys.argv[3:])
while not go.exists():
    time.sleep(0.001)
for i in range(count):
    append_record(path, {"case_id": f"{writer}-{i}", "created_at": "t", "spec": {}, "metrics": {},
                         "pad": str(writer) * padding})
"""


def test_concurrent_writers_lose_and_garble_nothing(tmp_path):
    path, go = tmp_path / "runs" / "run.jsonl", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(path),
                str(go),
                str(w),
                str(PER_WRITER),
                str(PADDING),
            ]
        )
        for w in range(WRITERS)
    ]
    time.sleep(0.2)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * WRITERS

    lines = path.read_text().splitlines()
    assert len(lines) == WRITERS * PER_WRITER
    records = [json.loads(line) for line in lines]
    assert all(r["pad"] == r["case_id"].split("-")[0] * PADDING for r in records)
    assert sorted(r["case_id"] for r in records) == sorted(
        f"{w}-{i}" for w in range(WRITERS) for i in range(PER_WRITER)
    )


@pytest.fixture
def spec():
    return make_spec("digits", "cnn_t", "cnn_s", "kd", temperature=4.0, epochs=2)


@pytest.fixture
def record(spec):
    return make_record(
        spec,
        "ok",
        {"top1": 91.5, "agreement": 88.0},
        {"torch": "2.x", "threads": 1},
        history=[{"epoch": 1}],
    )


def test_make_record_carries_ids_and_spec(record, spec):
    assert record["schema"] == SCHEMA and record["status"] == "ok"
    assert (record["case_id"], record["group_id"], record["name"]) == (
        spec.case_id,
        spec.group_id,
        spec.name,
    )
    assert record["spec"] == spec.to_dict() and record["history"] == [{"epoch": 1}]
    assert record["created_at"].endswith("+00:00")
    with pytest.raises(ValueError, match="'fine'"):
        make_record(spec, "fine", {}, {})


def test_loader_skips_a_torn_last_line_and_counts_it(tmp_path, record):
    path = tmp_path / "run.jsonl"
    for seed in range(3):
        append_record(path, {**record, "case_id": f"case{seed}"})
    full = path.read_text().splitlines()[0]
    with open(path, "a") as fh:
        fh.write(full[: len(full) // 2])
    with pytest.warns(UserWarning, match=r"skipped 1 corrupt or torn record line\(s\)"):
        records = load_records([path])
    assert sorted(r["case_id"] for r in records) == ["case0", "case1", "case2"]


def test_loader_counts_lines_without_the_record_shape(tmp_path, record):
    path = tmp_path / "run.jsonl"
    append_record(path, record)
    with open(path, "a") as fh:
        fh.write('\n[1, 2]\n{"case_id": "x"}\n')
    with pytest.warns(UserWarning, match="skipped 2 "):
        assert len(load_records([path])) == 1


def test_loader_keeps_the_newest_record_of_a_case(tmp_path, record):
    append_record(tmp_path / "a" / "one.jsonl", record)
    append_record(tmp_path / "b" / "copy.jsonl", record)  # the same record in two folders
    rerun = {**record, "created_at": "2099-01-01T00:00:00", "metrics": {"top1": 1.0}}
    append_record(tmp_path / "b" / "copy.jsonl", rerun)
    loaded = read([tmp_path])
    assert loaded.records == [rerun] and loaded.superseded == 1 and loaded.bad_lines == 0
    with pytest.warns(UserWarning, match="1 older record"):
        assert load_records([tmp_path]) == [rerun]
    assert len(load_records([tmp_path / "a" / "one.jsonl", tmp_path / "a"])) == 1


def test_a_tie_of_timestamps_goes_to_the_later_record(tmp_path, record):
    first, second = ({**record, "metrics": {"top1": v}} for v in (1.0, 2.0))
    append_record(tmp_path / "a.jsonl", first)
    append_record(tmp_path / "b.jsonl", second)
    assert read([tmp_path]).records == [second]
    assert newest([second, first]) == ([first], 1)


def test_loader_names_a_missing_path(tmp_path):
    with pytest.raises(KdbenchError, match="nowhere"):
        load_records([tmp_path / "nowhere"])


def test_nan_metrics_are_refused_and_the_file_untouched(tmp_path, record):
    path = tmp_path / "run.jsonl"
    append_record(path, record)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        append_record(path, {**record, "metrics": {"top1": float("nan")}})
    assert path.read_bytes() == before


def test_records_frame_columns(record, spec):
    frame = records_frame([record, {**record, "status": "diverged", "metrics": {}}])
    identity = {"case_id", "group_id", "status", "name", "created_at", "schema"}
    assert identity | set(spec.to_dict()) | {
        "top1",
        "agreement",
        "env.torch",
        "env.threads",
    } <= set(frame.columns)
    assert frame["loss"].tolist() == ["kd", "kd"] and frame["temperature"].tolist() == [4.0, 4.0]
    assert frame["top1"].iloc[0] == 91.5 and frame["top1"].isna().iloc[1]
    assert frame["status"].tolist() == ["ok", "diverged"] and frame["env.threads"].iloc[0] == 1


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new" / "runs")
    assert list((tmp_path / "new" / "runs").iterdir()) == []
    blocker = tmp_path / "a_file"
    blocker.write_text("keep")
    with pytest.raises(KdbenchError, match=r"a_file/runs' is not writable.*--kd-results"):
        check_writable(blocker / "runs")
    assert blocker.read_text() == "keep"
