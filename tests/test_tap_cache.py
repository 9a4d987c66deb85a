"""Teacher taps served from a cache where the data are not augmented: above the memory budget
they are memory-mapped from files of the cache (kdbench.run.mapped), and a feature method trains
on them bit for bit as on the online teacher (CPU)."""

from __future__ import annotations

import json

import pytest
import torch

import kdbench.run.teachers as teachers
from kdbench.losses import LOSSES
from kdbench.run.engine import Engine


@pytest.fixture
def mapped(monkeypatch):
    """Every teacher output above 0 bytes goes to the disk-backed cache."""
    monkeypatch.setattr(teachers, "TEACHER_OUTPUT_BUDGET", 0)


def online_engine(cache_dir, monkeypatch) -> Engine:
    monkeypatch.setattr(teachers, "TEACHER_DISK_BUDGET", 0)
    return Engine(cache_dir)


@pytest.mark.parametrize("loss", ["at", "fitnet"])
def test_mapped_taps_train_the_student_as_the_online_teacher(
    cache_dir, tiny_spec, distill, mapped, monkeypatch, loss
):
    spec = tiny_spec(loss)
    cached = distill(Engine(cache_dir), spec)
    assert cached["metrics"]["teacher_outputs"] == "cached"
    assert list((cache_dir / "teacher_taps").glob("*/meta.json"))
    online = distill(online_engine(cache_dir, monkeypatch), spec)
    assert online["metrics"]["teacher_outputs"] == "online"
    assert cached["metrics"]["final_loss"] == online["metrics"]["final_loss"]
    assert [h["loss"] for h in cached["history"]] == [h["loss"] for h in online["history"]]
    for name, weight in online["weights"].items():
        assert torch.equal(cached["weights"][name], weight), name


def test_mapped_taps_give_the_loss_values_of_the_online_teacher(
    cache_dir, tiny_spec, mapped, monkeypatch
):
    spec = tiny_spec("at")
    engine = Engine(cache_dir)
    data = engine.data(spec)
    taps = ("feats", "logits")
    from_cache, how = engine.teachers.outputs(spec, taps, data)
    from_teacher, how_online = online_engine(cache_dir, monkeypatch).teachers.outputs(
        spec, taps, data
    )
    assert (how, how_online) == ("cached", "online")
    loss = LOSSES.get("at")(temperature=None)
    x, y, index = next(data.train_batches(32, torch.Generator().manual_seed(5)))
    t_cache, t_online = from_cache(x, index), from_teacher(x, index)
    for a, b in zip(t_cache["feats"], t_online["feats"]):
        assert torch.equal(a, b)
    student = {"feats": [f.flip(0) for f in t_online["feats"]], "logits": t_online["logits"]}
    assert torch.equal(loss(student, t_cache, y), loss(student, t_online, y))


def test_a_mapped_entry_is_written_once_and_a_corrupt_one_rebuilt(cache_dir, tiny_spec, mapped):
    spec = tiny_spec("at")
    engine = Engine(cache_dir)
    engine.teachers.outputs(spec, ("feats",), engine.data(spec))
    (folder,) = (cache_dir / "teacher_taps").glob("*/")
    meta = json.loads((folder / "meta.json").read_text())
    # cnn_t's features are ReLUs of its pre-activations: the entry keeps those
    assert meta["rows"] == engine.data(spec).num_train and meta["taps"] == ["preacts"]
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = Engine(cache_dir)
    again.teachers.outputs(spec, ("feats",), again.data(spec))
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps  # read, not built

    first = folder / meta["tensors"][0]["file"]
    first.write_bytes(b"\0" * first.stat().st_size)  # same size, other bytes
    third = Engine(cache_dir)
    with pytest.warns(UserWarning, match="corrupt teacher_taps cache entry.*checksum"):
        third.teachers.outputs(spec, ("feats",), third.data(spec))
    assert json.loads((folder / "meta.json").read_text())["tensors"] == meta["tensors"]


def test_without_room_on_disk_the_teacher_runs_online(cache_dir, tiny_spec, mapped, monkeypatch):
    monkeypatch.setattr(teachers.MappedCache, "fits", lambda self, size: False)
    spec = tiny_spec("at")
    engine = Engine(cache_dir)
    assert engine.teachers.outputs(spec, ("feats",), engine.data(spec))[1] == "online"
    assert not (cache_dir / "teacher_taps").exists()


def test_feature_and_pre_activation_methods_share_one_entry_where_features_are_relus(
    cache_dir, tiny_spec, mapped
):
    spec = tiny_spec("at")
    engine = Engine(cache_dir)
    data = engine.data(spec)
    feats, _ = engine.teachers.outputs(spec, ("feats",), data)
    both, _ = engine.teachers.outputs(spec, ("feats", "preacts", "embed"), data)
    folders = sorted(json.loads(m.read_text())["taps"] for m in cache_dir.glob("*/*/meta.json"))
    assert folders == [["embed"], ["preacts"]]
    x, _, index = next(data.train_batches(16, torch.Generator().manual_seed(1)))
    one, two = feats(x, index), both(x, index)
    assert set(one) == {"feats", "logits"} and set(two) == {"feats", "preacts", "embed", "logits"}
    for f, p in zip(two["feats"], two["preacts"]):
        assert torch.equal(f, torch.relu(p))


@pytest.mark.parametrize("model, kept", [("fmnist_tl", ("preacts",)), ("resnet8", ("feats",))])
def test_features_are_kept_as_pre_activations_only_where_they_are_their_relus(model, kept):
    from kdbench.models import build_model

    shape = (1, 28, 28) if model.startswith("fmnist") else (3, 32, 32)
    assert teachers._stored(build_model(model, 10, shape), ("feats",)) == kept
