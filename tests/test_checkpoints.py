"""Teacher checkpoints: RepDistiller's teachers load as they are, in every layout it saves, into
every model of the CIFAR zoo; a file that cannot be a teacher is one line that says why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from kdbench.matrix.profiles import PROFILES
from kdbench.models import build_model
from kdbench.registry import KdbenchError
from kdbench.run.checkpoints import load_checkpoint, load_into, read_state_dict

CIFAR = (3, 32, 32)
# RepDistiller's state-dict names and shapes at 100 classes, from instantiating its models/*.py
REFERENCE = json.loads(
    (Path(__file__).parent / "data" / "repdistiller_state_dicts.json").read_text()
)
ZOO = [name for name in REFERENCE if not name.startswith("_")]


def _repdistiller_layouts(state: dict, optimizer: dict) -> dict[str, dict]:
    """What RepDistiller's ``train_teacher.py`` saves: ``ckpt_epoch_<n>.pth`` (the published
    teachers; ``<model>_best.pth`` differs only in naming ``accuracy`` ``best_acc``) and
    ``<model>_last.pth``, which keeps its options as an ``argparse.Namespace``."""
    opt = argparse.Namespace(
        model="resnet56",
        dataset="cifar100",
        learning_rate=0.05,
        lr_decay_epochs=[150, 180, 210],
        weight_decay=5e-4,
        trial="0",
        model_path="./save/models",
    )
    return {
        "ckpt_epoch": {
            "epoch": 240,
            "model": state,
            "accuracy": torch.tensor(72.3),
            "optimizer": optimizer,
        },
        "last": {"opt": opt, "model": state, "optimizer": optimizer},
    }


def _trained_looking(name: str, seed: int) -> nn.Module:
    """A model whose batch-norm statistics are not the defaults, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(name, 100, CIFAR)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(seed + 7)
    return model.eval()


def _one_line_error(call, *names: str) -> str:
    with pytest.raises(KdbenchError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in names), message
    assert not any(word in message for word in ("weights_only", "Unpickler", "Traceback")), message
    return message


def test_the_reference_covers_every_model_of_the_cifar_profiles():
    profiled = {
        m for p in ("cifar10", "cifar100-crd") for pair in PROFILES.get(p).pairs for m in pair
    }
    assert profiled <= set(ZOO), profiled - set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_state_dict_names_and_shapes_are_repdistillers(name):
    """Parameters and buffers (running statistics, ``num_batches_tracked``) alike."""
    with torch.device("meta"):
        model = build_model(name, 100, CIFAR)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == REFERENCE[name][
        "state_dict"
    ]


@pytest.mark.parametrize("name", ZOO)
def test_repdistiller_layouts_load_and_give_the_source_logits(name, tmp_path):
    source = _trained_looking(name, seed=0)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.05, momentum=0.9).state_dict()
    x = torch.randn(2, *CIFAR, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source(x)
    for layout, payload in _repdistiller_layouts(source.state_dict(), optimizer).items():
        path = tmp_path / f"{name}_{layout}.pth"
        torch.save(payload, path)
        model = _trained_looking(name, seed=1)
        state, meta = load_checkpoint(str(path), name, model)
        assert meta["source"] == str(path) and len(meta["sha256_source"]) == 64
        assert all(torch.equal(state[k], v) for k, v in source.state_dict().items()), layout
        with torch.no_grad():
            assert torch.equal(model(x), expected), layout


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="plain"),
        pytest.param(lambda sd: {"state_dict": sd, "epoch": 3}, id="state_dict"),
    ],
)
def test_other_layouts_and_the_pre_1_6_file_format(wrap, tmp_path):
    state = _trained_looking("resnet8", seed=0).state_dict()
    for zipped in (True, False):
        path = tmp_path / f"w{zipped}.pt"
        torch.save(wrap(state), path, _use_new_zipfile_serialization=zipped)
        read = read_state_dict(path)
        assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)


def test_garbage_empty_truncated_and_missing_files_are_one_line_errors(tmp_path):
    path = tmp_path / "teacher.pth"
    torch.save({"model": build_model("resnet8", 100, CIFAR).state_dict()}, path)
    whole = path.read_bytes()
    torch.save(
        {"model": build_model("resnet8", 100, CIFAR).state_dict()},
        path,
        _use_new_zipfile_serialization=False,
    )
    legacy = path.read_bytes()
    for content in (
        bytes(range(256)) * 40,
        b"resnet56 weights\n" * 9,
        whole[: len(whole) // 2],
        legacy[: len(legacy) // 2],
    ):
        path.write_bytes(content)
        _one_line_error(
            lambda: read_state_dict(path),
            repr(str(path)),
            f"({len(content)} bytes)",
            "cannot read it",
        )
    path.write_bytes(b"")
    _one_line_error(lambda: read_state_dict(path), repr(str(path)), "is empty (0 bytes)")
    _one_line_error(lambda: read_state_dict(tmp_path / "nope.pth"), "nope.pth", "no such file")


def test_a_pickled_model_is_refused_by_name_without_running_its_code(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save({"model": nn.Linear(3, 2)}, path)
    _one_line_error(
        lambda: read_state_dict(path),
        "torch.nn.modules.linear.Linear",
        "torch.save(model.state_dict(), path)",
    )


@pytest.mark.parametrize(
    "payload, holds",
    [
        ({"epoch": 240, "accuracy": torch.tensor(72.3)}, "'epoch' (int)"),
        ({"model": {}}, "an empty dict"),
        ([torch.zeros(2)], "a list"),
    ],
)
def test_a_file_without_a_state_dict_says_what_it_holds(payload, holds, tmp_path):
    path = tmp_path / "teacher.pth"
    torch.save(payload, path)
    _one_line_error(lambda: read_state_dict(path), "holds no state dict", holds)


def test_another_architectures_weights_name_missing_and_unexpected_keys():
    vgg13 = build_model("vgg13", 100, CIFAR).state_dict()
    message = _one_line_error(
        lambda: load_into(build_model("resnet56", 100, CIFAR), vgg13, "resnet56", "/t/vgg13.pth"),
        "'/t/vgg13.pth' does not fit model 'resnet56'",
        "the model expects 344 keys",
        "(conv1.weight, bn1.weight, bn1.bias, bn1.running_mean, …) that the file lacks",
        "the file holds 72 keys (block0.0.weight, block0.0.bias, block0.1.weight, "
        "block0.1.bias, …) that the model lacks",
    )
    assert "shapes differ" not in message


def test_a_renamed_head_names_both_spellings():
    """What vgg13 and mobilenetv2 checkpoints met before the heads took RepDistiller's names."""
    state = build_model("mobilenetv2", 100, CIFAR).state_dict()
    renamed = {k.replace("classifier.0", "fc"): v for k, v in state.items()}
    _one_line_error(
        lambda: load_into(build_model("mobilenetv2", 100, CIFAR), renamed, "mobilenetv2", "m.pth"),
        "the model expects 2 keys (classifier.0.weight, classifier.0.bias) that the file lacks",
        "the file holds 2 keys (fc.weight, fc.bias) that the model lacks",
    )


def test_a_teacher_for_another_class_count_names_the_shapes():
    cifar10 = build_model("wrn_40_2", 10, CIFAR).state_dict()
    _one_line_error(
        lambda: load_into(build_model("wrn_40_2", 100, CIFAR), cifar10, "wrn_40_2", "w.pth"),
        "shapes differ (file vs model) for 2 keys (fc.weight (10, 128) vs (100, 128), "
        "fc.bias (10,) vs (100,))",
    )


def test_a_failure_outside_names_and_shapes_is_still_one_line():
    state = {k: v.to("meta") for k, v in build_model("resnet8", 100, CIFAR).state_dict().items()}
    model = build_model("resnet8", 100, CIFAR)
    _one_line_error(
        lambda: load_into(model, state, "resnet8", "m.pth"),
        "does not fit model 'resnet8'",
        "conv1.weight",
        "meta tensor",
    )
