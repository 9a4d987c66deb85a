"""Models and taps, the kd and mse_logits formulas, gradients through the engine's objective,
determinism, and the teacher cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import kdbench.run.engine
import kdbench.run.teachers
from kdbench.data import load_dataset
from kdbench.losses import LOSSES
from kdbench.models import build_model, count_params
from kdbench.run.cache import TensorCache
from kdbench.run.engine import Engine
from kdbench.run.taps import Tapper
from kdbench.spec import make_spec

DIGITS = (1, 8, 8)
# same-spec runs must agree on everything but timings and process memory
EXACT_METRICS = (
    "top1",
    "top5",
    "best_top1",
    "teacher_top1",
    "agreement",
    "final_loss",
    "student_params",
    "teacher_params",
    "extra_params",
    "student_flops",
    "compression",
)


@pytest.mark.parametrize("name, params", [("cnn_t", 151_306), ("cnn_m", 9_802), ("cnn_s", 2_570)])
def test_digits_cnn_parameter_counts(name, params):
    assert count_params(build_model(name, 10, DIGITS)) == params


@pytest.mark.parametrize("name, c1, c2, hidden", [("cnn_t", 32, 64, 128), ("cnn_s", 4, 8, 16)])
def test_stages_through_tapper(name, c1, c2, hidden):
    model = build_model(name, 10, DIGITS).eval()
    x = torch.randn(5, *DIGITS)
    with Tapper(model, ("feat:0", "feat:-1", "preact:-1", "feats", "embed", "logits")) as tapper:
        out = tapper(x)
        assert any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert out["feat:0"].shape == (5, c1, 8, 8) and out["feat:-1"].shape == (5, c2, 4, 4)
    assert [f.shape for f in out["feats"]] == [out["feat:0"].shape, out["feat:-1"].shape]
    assert out["embed"].shape == (5, hidden) and torch.equal(out["logits"], model(x))
    assert torch.equal(out["feat:-1"], F.relu(out["preact:-1"]))
    assert (out["preact:-1"] < 0).any() and (out["feat:0"] >= 0).all()
    assert torch.equal(model.fc2(out["embed"]), out["logits"])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# fixed logits (B=3, C=4), float64 so that formula and loss agree to rounding
STUDENT = torch.tensor(
    [[2.0, -1.0, 0.5, 0.0], [0.3, 0.3, -2.0, 1.0], [-1.0, 4.0, 0.0, 2.0]], dtype=torch.float64
)
TEACHER = torch.tensor(
    [[1.0, 0.0, 3.0, -1.0], [0.5, -0.5, 1.0, 1.0], [2.0, 2.0, -1.0, 0.0]], dtype=torch.float64
)
TARGET = torch.tensor([2, 3, 1])


def softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z)
    return e / e.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 8.0])
def test_kd_matches_hinton_formula(T):
    p_t, p_s = softmax(TEACHER / T), softmax(STUDENT / T)
    expected = T * T * (p_t * (torch.log(p_t) - torch.log(p_s))).sum() / len(STUDENT)
    value = LOSSES.get("kd")(temperature=T)({"logits": STUDENT}, {"logits": TEACHER}, TARGET)
    assert value.item() == pytest.approx(expected.item(), rel=1e-12) and expected > 0


def test_mse_logits_matches_formula():
    expected = ((STUDENT - TEACHER) ** 2).sum() / len(STUDENT)
    value = LOSSES.get("mse_logits")()({"logits": STUDENT}, {"logits": TEACHER}, TARGET)
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("name", ["kd", "mse_logits"])
def test_term_is_zero_when_student_equals_teacher(name):
    loss = LOSSES.get(name)()
    assert loss({"logits": TEACHER}, {"logits": TEACHER.clone()}, TARGET).abs().item() < 1e-12


def test_loss_declarations():
    ce, kd, mse = (LOSSES.get(n) for n in ("ce", "kd", "mse_logits"))
    assert ce.taps == () and not ce.needs_teacher and ce.weights() == (1.0, 0.0)
    assert kd.taps == ("logits",) and kd.uses_temperature and kd().temperature == 4.0
    assert mse.taps == ("logits",) and not mse.uses_temperature
    assert "Hinton" in kd.paper() and "Ba & Caruana" in mse.paper()
    assert ce()({}, {}, TARGET).item() == 0


@pytest.mark.parametrize(
    "name, term_only",
    [("ce", False), ("kd", False), ("kd", True), ("mse_logits", False), ("mse_logits", True)],
)
def test_gradients_reach_every_student_parameter(name, term_only):
    """ce_weight·CE + alpha·term, as the engine mixes it; with ``term_only`` the term alone."""
    spec = make_spec("digits", "cnn_t", "cnn_s", name, temperature=4.0 if name == "kd" else None)
    ce_weight = 0.0 if term_only else spec.ce_weight
    data = load_dataset("synthetic")
    x, y = data.x_train[:32], data.y_train[:32]
    torch.manual_seed(0)
    student = build_model("cnn_s", 10, DIGITS)
    teacher = build_model("cnn_t", 10, DIGITS).eval().requires_grad_(False)
    loss = LOSSES.get(name)(temperature=spec.temperature)
    with Tapper(student, loss.taps) as s_tap, Tapper(teacher, loss.taps) as t_tap:
        s_out, t_out = s_tap(x), t_tap(x)
        objective = ce_weight * F.cross_entropy(s_out["logits"], y) + spec.alpha * loss(
            s_out, t_out, y
        )
    objective.backward()
    no_grad = [n for n, p in student.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []
    assert all(p.grad is None for p in teacher.parameters())


def test_same_spec_same_result_bit_for_bit(cache_dir, tiny_spec, distill):
    spec = tiny_spec("kd", epochs=3)
    first, second = (distill(Engine(cache_dir), spec) for _ in range(2))
    for key in EXACT_METRICS:
        assert first["metrics"][key] == second["metrics"][key], key
    assert first["history"] == second["history"]
    assert_same_weights(first["weights"], second["weights"])
    other_seed = distill(Engine(cache_dir), dataclasses.replace(spec, seed=1))
    assert not torch.equal(first["weights"]["fc2.weight"], other_seed["weights"]["fc2.weight"])


def test_teacher_training_does_not_depend_on_earlier_random_draws(tmp_path, tiny_spec):
    """A fresh cache must give the same teacher whatever the process drew before."""
    spec = tiny_spec("kd")
    states = []
    for i, seed in enumerate((1, 2)):
        torch.manual_seed(seed)
        states.append(teacher_state(Engine(tmp_path / f"cache{i}"), spec))
    assert_same_weights(*states)


def teacher_state(engine: Engine, spec) -> dict[str, torch.Tensor]:
    return engine.teachers.get(spec)[0].state_dict()


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_second_engine_on_the_cache_trains_no_teacher(cache_dir, tiny_spec):
    spec = tiny_spec("kd")
    first = Engine(cache_dir)
    trained = teacher_state(first, spec)
    assert first.teachers_trained == 1
    assert len(list((cache_dir / "teachers").glob("*.pt"))) == 1
    assert len(list((cache_dir / "teachers").glob("*.json"))) == 1

    second = Engine(cache_dir)
    assert_same_weights(teacher_state(second, spec), trained)
    second.distill(spec)
    second.distill(dataclasses.replace(spec, student="cnn_m", seed=1))
    assert second.teachers_trained == 0


def test_corrupt_checkpoint_is_detected_and_rebuilt(cache_dir, tiny_spec):
    spec = tiny_spec("kd")
    teacher_state(Engine(cache_dir), spec)
    (checkpoint,) = (cache_dir / "teachers").glob("*.pt")
    size = checkpoint.stat().st_size
    checkpoint.write_bytes(checkpoint.read_bytes()[: size // 2])

    rebuilt = Engine(cache_dir)
    with pytest.warns(UserWarning, match="corrupt teachers cache entry"):
        state = teacher_state(rebuilt, spec)
    assert rebuilt.teachers_trained == 1 and checkpoint.stat().st_size == size
    reused = Engine(cache_dir)
    assert_same_weights(teacher_state(reused, spec), state)
    assert reused.teachers_trained == 0


@pytest.mark.parametrize("built", [True, False], ids=["just-built", "loaded"])
def test_cache_payload_is_on_the_requested_device_built_or_loaded(tmp_path, built):
    # The teacher-output cache is built on the CPU and indexed by the case's device's batch
    # indices; the meta device stands in for CUDA here (a built entry once stayed on the CPU).
    cache = TensorCache(tmp_path, "teacher_outputs")
    if not built:
        cache.save("key", {"logits": torch.ones(4, 3)}, {})
    payload, _, was_built = cache.get_or_build(
        "key",
        lambda: ({"logits": torch.ones(4, 3), "feats": [torch.zeros(4, 2)]}, {}),
        map_location="meta",
    )
    assert was_built == built
    assert {
        t.device.type for v in payload.values() for t in (v if isinstance(v, list) else [v])
    } == {"meta"}


def test_cached_teacher_outputs_equal_the_online_teacher(
    cache_dir, tiny_spec, distill, monkeypatch
):
    spec = tiny_spec("kd")
    cached_engine = Engine(cache_dir)
    cached = distill(cached_engine, spec)
    monkeypatch.setattr(kdbench.run.teachers, "TEACHER_OUTPUT_BUDGET", 0)
    online_engine = Engine(cache_dir)
    online = distill(online_engine, spec)
    assert online_engine.teachers_trained == 0
    assert_same_weights(cached["weights"], online["weights"])
    assert cached["metrics"]["top1"] == online["metrics"]["top1"]

    data = cached_engine.data(spec)
    x, _, index = next(data.train_batches(64, torch.Generator().manual_seed(5)))
    from_cache = cached_engine.teachers.outputs(spec, ("logits",), data)[0](x, index)["logits"]
    from_teacher = online_engine.teachers.outputs(spec, ("logits",), data)[0](x, index)["logits"]
    assert torch.equal(from_cache, from_teacher)


def test_teacher_checkpoint_replaces_training(cache_dir, tiny_spec, tmp_path):
    """``--kd-teacher-ckpt``: the user's weights (RepDistiller's {"model": …} layout) are the
    teacher, nothing is trained, and the cache key follows the file's content."""
    trained = Engine(cache_dir / "a")
    weights = trained.teachers.get(tiny_spec("kd"))[0].state_dict()
    ckpt = tmp_path / "teacher.pt"
    torch.save({"model": weights, "epoch": 240}, ckpt)
    engine = Engine(cache_dir / "b")
    spec = tiny_spec("kd", teacher_ckpt=str(ckpt))
    teacher, meta = engine.teachers.get(spec)
    assert engine.teachers_trained == 0 and meta["source"] == str(ckpt)
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in weights.items())
    key = engine.teachers.key(spec)
    torch.save({"model": {k: v + 1 for k, v in weights.items()}}, ckpt)
    assert engine.teachers.key(spec) != key


def test_cases_do_not_pile_hooks_on_the_shared_teacher(cache_dir, tiny_spec):
    engine = Engine(cache_dir)

    def hooks() -> int:
        teacher, _ = engine.teachers.get(tiny_spec("fitnet"))
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in teacher.modules())

    engine.distill(tiny_spec("fitnet", seed=0))
    after_one = hooks()
    for seed in (1, 2):
        engine.distill(tiny_spec("fitnet", seed=seed))
    assert after_one > 0 and hooks() == after_one


def test_amp_precision_autocasts_training_and_is_recorded(cache_dir, tiny_spec, monkeypatch):
    """--kd-precision amp: the student's forward runs under bf16 autocast on the CPU (fp16 + grad
    scaler on GPUs without bf16) and the loss gets its outputs in fp32; fp32 cases do not cast."""
    dtypes: dict[str, set] = {"fp32": set(), "amp": set()}
    build = kdbench.run.engine.build_model

    def spy(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_hook(
            lambda m, a, out: dtypes[current].add(out.dtype) if m.training else None
        )
        return model

    monkeypatch.setattr(kdbench.run.engine, "build_model", spy)
    kd = LOSSES.get("kd")
    term = kd.forward
    loss_inputs: dict[str, set] = {"fp32": set(), "amp": set()}

    def spy_term(self, s, t, y):
        loss_inputs[current].update({s["logits"].dtype, t["logits"].dtype})
        return term(self, s, t, y)

    monkeypatch.setattr(kd, "forward", spy_term)
    engine = Engine(cache_dir)
    for current in ("fp32", "amp"):
        spec = tiny_spec("kd", precision=current)
        outcome = engine.distill(spec)
    assert "-cpu-amp-" in spec.name
    assert outcome.info["accel"] == {"amp_dtype": "bfloat16", "channels_last": False}
    assert dtypes == {"fp32": {torch.float32}, "amp": {torch.bfloat16}}
    assert loss_inputs == {"fp32": {torch.float32}, "amp": {torch.float32}}  # the loss in fp32


def test_a_teacher_near_chance_is_flagged_in_the_record(cache_dir, tiny_spec, tmp_path):
    """A random-weight checkpoint (3.61 % on CIFAR-100 in the wild) must not pass silently."""
    torch.manual_seed(0)
    ckpt = tmp_path / "random.pt"
    torch.save(build_model("cnn_t", 10, (1, 8, 8)).state_dict(), ckpt)
    outcome = Engine(cache_dir).distill(tiny_spec("kd", teacher_ckpt=str(ckpt)))
    assert outcome.metrics["teacher_top1"] < 19.0
    (warning,) = outcome.info["warnings"]
    assert warning.startswith("teacher near chance") and "10.00 % is chance" in warning
    trained = Engine(cache_dir).distill(tiny_spec("kd"))
    assert "warnings" not in trained.info


def test_the_teacher_key_follows_the_recipe_settings_not_only_its_name(
    cache_dir, tiny_spec, monkeypatch
):
    import dataclasses

    from kdbench.recipes import RECIPES

    spec = tiny_spec("kd")
    key = Engine(cache_dir).teachers.key(spec)
    changed = dataclasses.replace(RECIPES.get(spec.recipe), lr=0.123)
    monkeypatch.setitem(RECIPES._entries, spec.recipe, changed)
    assert Engine(cache_dir).teachers.key(spec) != key  # a cached teacher is not reused


def test_a_teacher_only_dataset_option_augments_the_teachers_data_not_the_students(
    cache_dir, tiny_spec, distill
):
    """``teacher_augment``: the teacher trains on crop+flip batches, its students on the images
    as they are, so the teacher's outputs on their batches still come from the cache."""
    plain = tiny_spec("kd")
    options = dict(plain.dataset_options)
    spec = tiny_spec("kd", dataset_options={**options, "teacher_augment": True})
    assert spec.teacher_key()["dataset_options"] == {**options, "augment": True}
    engine = Engine(cache_dir)
    assert engine.teacher_data(spec).augmented and not engine.data(spec).augmented
    assert not engine.teacher_data(plain).augmented
    metrics = distill(engine, spec)["metrics"]
    assert metrics["teacher_outputs"] == "cached"
    assert_differs(teacher_state(engine, spec), teacher_state(engine, plain))  # two teachers
    assert engine.teachers_trained == 2


def assert_differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)
