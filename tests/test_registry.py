"""Registries: a dict, a decorator and a lister; unknown names give a one-line error."""

from __future__ import annotations

import pytest

from kdbench.data import DATASETS
from kdbench.losses import LOSSES
from kdbench.matrix.profiles import PROFILES
from kdbench.models import MODELS
from kdbench.registry import KdbenchError, Registry, UnknownNameError


@pytest.fixture
def widgets() -> Registry:
    registry = Registry("widgets")
    for name in ("gear", "gearbox", "spring", "sprocket"):
        registry.register(name)(lambda name=name: name)
    return registry


def test_register_get_and_names(widgets):
    assert widgets.get("spring")() == "spring"
    assert widgets.names() == ["gear", "gearbox", "spring", "sprocket"]
    assert widgets.names("gear*") == ["gear", "gearbox"]
    assert widgets.names("spr?ng") == ["spring"]
    assert widgets.names("nothing*") == []
    assert "gear" in widgets and "cog" not in widgets and len(widgets) == 4


def test_decorator_returns_the_object_unchanged(widgets):
    class Bolt:
        pass

    assert widgets.register("bolt")(Bolt) is Bolt
    assert widgets.get("bolt") is Bolt


def test_double_registration_is_an_error_and_keeps_the_first(widgets):
    first = widgets.get("gear")
    with pytest.raises(KdbenchError, match="'gear' is registered twice"):
        widgets.register("gear")(lambda: "other")
    assert widgets.get("gear") is first


def test_unknown_name_names_value_close_matches_and_lister(widgets):
    with pytest.raises(UnknownNameError) as info:
        widgets.get("gaer")
    message = str(info.value)
    assert isinstance(info.value, KeyError) and isinstance(info.value, KdbenchError)
    assert message.startswith("unknown widget 'gaer': did you mean gear")
    assert "`kdbench list widgets`" in message and "\n" not in message


def test_unknown_name_without_close_match_lists_all(widgets):
    with pytest.raises(UnknownNameError) as info:
        widgets.get("zzz")
    message = str(info.value)
    assert "did you mean" not in message
    assert "valid: gear, gearbox, spring, sprocket" in message


@pytest.mark.parametrize(
    "registry, kind, bad, close",
    [
        (DATASETS, "dataset", "digts", "digits"),
        (MODELS, "model", "cnn_x", "cnn_s"),
        (LOSSES, "loss", "kdd", "kd"),
        (PROFILES, "profile", "quik", "quick"),
    ],
)
def test_real_registries_say_what_was_unknown(registry, kind, bad, close):
    with pytest.raises(UnknownNameError) as info:
        registry.get(bad)
    message = str(info.value)
    assert message.startswith(f"unknown {kind} {bad!r}: did you mean ")
    assert close in message.split("valid:")[0]
    assert message.endswith(f"(`kdbench list {registry.kind}`)") and "\n" not in message


def test_registries_hold_the_foundation_entries():
    assert {"digits", "synthetic"} <= set(DATASETS.names())
    assert MODELS.names("cnn_*") == ["cnn_m", "cnn_s", "cnn_t"]
    assert {"ce", "kd", "mse_logits"} <= set(LOSSES.names())
    assert LOSSES.names("kd*")[0] == "kd"
    assert {"quick", "smoke"} <= set(PROFILES.names())
