"""--kd-log: a real case's record logged to MLflow, TensorBoard and wandb (offline), read back
with each tracker's own reader and compared to the record; bad and missing trackers."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from kdbench.observe import trackers
from kdbench.registry import KdbenchError
from kdbench.run import case, measure
from kdbench.run.engine import Engine

WANDB_BLOCK = 32768  # the .wandb file: LevelDB's log format in 32 KiB blocks


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    """The record of a real tiny case (synthetic data, 3 epochs), as the plugin writes it."""
    from kdbench.spec import make_spec

    spec = make_spec(
        dataset="synthetic",
        teacher="cnn_t",
        student="cnn_s",
        loss="kd",
        temperature=4.0,
        epochs=3,
        teacher_epochs=2,
        dataset_options=(("num_test", 64), ("num_train", 256)),
    )
    written: list[dict] = []
    case.run(
        Engine(cache_dir=tmp_path_factory.mktemp("cache")),
        spec,
        measure.environment(torch.device("cpu")),
        written.append,
    )
    return json.loads(json.dumps(written[0]))


def finite(metrics: dict) -> dict:
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def spec_params(spec: dict) -> dict:
    flat = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": str(v) for k, v in value.items()})
        else:
            flat[key] = str(value)
    return flat


def test_mlflow_run_holds_the_spec_history_and_final_metrics(record, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    trackers.Trackers(["mlflow"], tmp_path, "quick", "run-1").log(record)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("kdbench").experiment_id])
    assert run.info.run_name == record["name"] and run.info.status == "FINISHED"
    assert run.data.params == spec_params(record["spec"])
    assert {k: run.data.tags[k] for k in ("case_id", "group_id", "profile")} == {
        "case_id": record["case_id"],
        "group_id": record["group_id"],
        "profile": "quick",
    }
    final = {k: v for k, v in run.data.metrics.items() if not k.startswith("epoch/")}
    assert final == pytest.approx(finite(record["metrics"]))
    for key in ("loss", "val_top1", "top1"):
        history = client.get_metric_history(run.info.run_id, f"epoch/{key}")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (h["epoch"], pytest.approx(h[key])) for h in record["history"]
        ]
    assert len(record["history"]) == 3


def test_tensorboard_event_files_hold_the_history_and_final_metrics(record, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trackers.Trackers(["tensorboard"], tmp_path, "quick", "run-1").log(record)
    (folder,) = (tmp_path / "tensorboard" / "run-1").iterdir()
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0}).Reload()
    for key in ("loss", "val_top1", "top1"):
        assert [(e.step, e.value) for e in events.Scalars(f"epoch/{key}")] == [
            (h["epoch"], pytest.approx(h[key], rel=1e-6)) for h in record["history"]
        ]
    final = {
        tag[len("final/") :]: events.Scalars(tag)[0].value
        for tag in events.Tags()["scalars"]
        if tag.startswith("final/")
    }
    assert final == pytest.approx(finite(record["metrics"]), rel=1e-6)


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's ``.wandb`` file (7-byte file header, then
    LevelDB log chunks: crc32 (4), length (2, little-endian), type (1: full, 2: first,
    3: middle, 4: last))."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, parts = [], 7, b""
    while pos + 7 <= len(data):
        if WANDB_BLOCK - pos % WANDB_BLOCK < 7:  # a block's tail too short for a header
            pos += WANDB_BLOCK - pos % WANDB_BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            out.append(Record.FromString(parts))
            parts = b""
    return out


def key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_holds_the_spec_history_and_summary(record, tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    import wandb
    from wandb.analytics.opentelemetry import opentelemetry_proxy

    trackers.Trackers(["wandb"], tmp_path, "quick", "run-1").log(record)
    # wandb's analytics would post to api.wandb.ai from a thread of this process: none exists
    assert opentelemetry_proxy.get_open_telemetry_proxy() is None
    wandb.teardown()  # the wandb service writes the run file behind the SDK: wait for it
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")  # offline: no network
    found = wandb_records(run_file)
    (run,) = [r.run for r in found if r.WhichOneof("record_type") == "run"]
    assert run.display_name == record["name"] and run.run_group == record["group_id"]
    config = {
        i.key: json.loads(i.value_json)
        for r in found
        if r.WhichOneof("record_type") in ("run", "config")
        for i in (r.run.config if r.HasField("run") else r.config).update
    }
    assert {k: v for k, v in config.items() if k != "_wandb"} == spec_params(record["spec"])
    history = [
        {key(i): json.loads(i.value_json) for i in r.history.item}
        for r in found
        if r.WhichOneof("record_type") == "history"
    ]
    assert [
        {k.removeprefix("epoch/"): v for k, v in h.items() if k.startswith("epoch")}
        for h in history
    ] == record["history"]
    summary = {
        key(i): json.loads(i.value_json)
        for r in found
        if r.WhichOneof("record_type") == "summary"
        for i in r.summary.update
    }
    assert {k: summary[k] for k in finite(record["metrics"])} == pytest.approx(
        finite(record["metrics"])
    )


def test_a_failing_tracker_is_a_warning(record, tmp_path):
    (tmp_path / "tensorboard").write_text("a file where the folder should be")
    with pytest.warns(
        UserWarning,
        match=r"--kd-log tensorboard: .* not logged .* its record "
        r"is written",
    ):
        trackers.Trackers(["tensorboard"], tmp_path, None, "run-1").log(record)


def test_kd_log_values_are_checked_and_a_missing_extra_is_named(monkeypatch):
    assert trackers.parse(["mlflow,tensorboard", "mlflow"]) == ["mlflow", "tensorboard"]
    with pytest.raises(
        KdbenchError,
        match=r"invalid --kd-log 'neptune': valid: mlflow, "
        r"tensorboard, wandb",
    ):
        trackers.parse(["neptune"])
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "wandb" else find_spec(name, *a),
    )
    with pytest.raises(
        KdbenchError,
        match=r"^--kd-log wandb: wandb is not installed: "
        r"pip install 'kdbench\[wandb\]'$",
    ):
        trackers.parse(["wandb"])
