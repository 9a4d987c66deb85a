"""timm classifiers through ``timm:<name>``: the stage contract from timm's ``feature_info``, taps,
class count and input channels from the data set, timm's own weights as a teacher checkpoint,
one tiny distillation end to end on an ImageFolder tree, and nothing downloaded on the way."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install 'kdbench[timm]'")

from test_datasets_torchvision import write_image_folder  # noqa: E402
from test_model_zoo import _calls  # noqa: E402

from kdbench.losses import NotApplicable  # noqa: E402
from kdbench.models.base import build_model, model_factory  # noqa: E402
from kdbench.registry import KdbenchError  # noqa: E402
from kdbench.run.checkpoints import load_checkpoint  # noqa: E402
from kdbench.run.engine import Engine  # noqa: E402
from kdbench.run.taps import Tapper  # noqa: E402
from kdbench.spec import make_spec  # noqa: E402

CIFAR = (3, 32, 32)
# (channels, height) of each stage on 3×32×32 inputs: timm's feature_info (reductions 2 … 32;
# ConvNeXt starts at 4)
STAGE_SHAPES = {
    "timm:resnet18": [(64, 16), (64, 8), (128, 4), (256, 2), (512, 1)],
    "timm:mobilenetv3_small_100": [(16, 16), (16, 8), (24, 4), (48, 2), (576, 1)],
    "timm:efficientnet_b0": [(16, 16), (24, 8), (40, 4), (112, 2), (320, 1)],
    "timm:convnext_atto": [(40, 8), (80, 4), (160, 2), (320, 1)],
}
TOKENS = "timm:vit_tiny_patch16_224"  # (B, N, C) tokens: no feature maps to declare
MODELS = (*STAGE_SHAPES, TOKENS)


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if timm asks for pretrained weights or anything opens a connection."""

    def refuse(*args, **kwargs):
        pytest.fail("timm was asked for pretrained weights")

    def offline(*args, **kwargs):
        pytest.fail(f"network access: {args}")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_stages_and_taps(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, CIFAR)
    calls = _calls(model, set(model.stages))
    with Tapper(model, ["embed", "logits", *(["feats"] if model.stages else [])]) as tapper:
        out = tapper(torch.randn(2, *CIFAR))

    assert all(n == 1 for n in calls.values()), calls  # each stage module runs once
    classifier = model.classifier_module()
    assert isinstance(classifier, nn.Linear) and out["logits"].shape == (2, 10)
    assert out["embed"].shape == (2, classifier.in_features)
    torch.testing.assert_close(classifier(out["embed"]), out["logits"])
    feats = out.get("feats", [])
    assert all(f.dim() == 4 and f.shape[0] == 2 for f in feats)
    assert [(f.shape[1], f.shape[2]) for f in feats] == STAGE_SHAPES.get(name, [])
    (out["logits"].square().mean() + sum(f.mean() for f in feats)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_resnet_preacts_are_the_inputs_of_each_stages_last_relu() -> None:
    model = build_model("timm:resnet18", 10, CIFAR)
    assert model.preact_stages == (
        "net.act1",
        "net.layer1.1.act2",
        "net.layer2.1.act2",
        "net.layer3.1.act2",
        "net.layer4.1.act2",
    )
    torch.manual_seed(0)
    for m in model.modules():  # timm zero-initialises each block's last batch norm
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight)
    with Tapper(model, ["feats", "preacts"]) as tapper:
        out = tapper(torch.randn(2, *CIFAR))
    for pre, feat in zip(out["preacts"], out["feats"]):
        assert pre.min() < 0 and torch.equal(pre.relu(), feat)  # kept before the in-place ReLU


@pytest.mark.parametrize("name", ["timm:mobilenetv3_small_100", "timm:convnext_atto"])
def test_models_ending_stages_without_relu_declare_no_preacts(name: str) -> None:
    model = build_model(name, 10, CIFAR)
    assert model.preact_stages == ()
    with pytest.raises(NotApplicable, match="declares no preact stages"):
        Tapper(model, ["preacts"])


def test_token_models_make_feature_losses_not_applicable() -> None:
    model = build_model(TOKENS, 10, CIFAR)
    assert model.stages == () and model.preact_stages == ()
    for tap in ("feats", "feat:-1"):
        with pytest.raises(NotApplicable, match="feat stage"):
            Tapper(model, [tap])


@pytest.mark.parametrize("name", MODELS)
def test_class_count_and_input_channels_follow_the_data(name: str) -> None:
    model = build_model(name, 7, (1, 32, 32)).eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1 and model.num_classes == 7
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_timm_state_dict_is_a_teacher_checkpoint(tmp_path: Path) -> None:
    """A checkpoint as timm's train.py writes it (``{"state_dict": …}``, timm's own keys)."""
    torch.manual_seed(3)
    net = timm.create_model("resnet18", num_classes=5)
    torch.save({"state_dict": net.state_dict(), "epoch": 1}, tmp_path / "t.pth")
    model = build_model("timm:resnet18", 5, CIFAR)
    _, meta = load_checkpoint(str(tmp_path / "t.pth"), "timm:resnet18", model)
    assert meta["source"] == str(tmp_path / "t.pth")
    for key, value in net.state_dict().items():
        assert torch.equal(model.state_dict()[f"net.{key}"], value)
    with pytest.raises(KdbenchError, match="does not fit model 'timm:resnet18'"):
        load_checkpoint(
            str(tmp_path / "t.pth"), "timm:resnet18", build_model("timm:resnet18", 3, CIFAR)
        )


def test_unknown_names_and_heads_are_one_line_errors() -> None:
    with pytest.raises(KdbenchError, match=r"unknown timm model 'resnet5O'.*timm:resnet50") as e:
        model_factory("timm:resnet5O")
    assert "\n" not in str(e.value)
    with pytest.raises(KdbenchError, match=r"timm:levit_128s's classifier .*several heads"):
        build_model("timm:levit_128s", 10, CIFAR)
    with pytest.raises(
        KdbenchError,
        match=r"timm:inception_v3 does not run on inputs of shape "
        r"\(3, 32, 32\): .*Kernel size",
    ):
        build_model("timm:inception_v3", 10, CIFAR)


def test_missing_timm_is_one_line_with_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm → ImportError
    with pytest.raises(
        KdbenchError,
        match=r"^timm: models need timm, which is not installed: "
        r"pip install 'kdbench\[timm\]'$",
    ):
        model_factory("timm:resnet18")


def test_listing_models_needs_no_timm() -> None:
    code = (
        "import sys; sys.modules['timm'] = None; from kdbench.cli import main; "
        "sys.exit(main(['list', 'models', '--names-only']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "resnet8x4" in done.stdout.split()


def test_timm_pair_distills_on_an_image_folder(tmp_path: Path) -> None:
    """A timm teacher and student, one KD and one feature loss, through the engine."""
    write_image_folder(tmp_path / "tiny", per_class=4)
    engine = Engine(tmp_path / "cache", data_root=tmp_path)
    for loss, temperature in (("kd", 4.0), ("at", None)):
        spec = make_spec(
            dataset="imagefolder",
            teacher="timm:resnet18",
            student="timm:mobilenetv3_small_100",
            loss=loss,
            temperature=temperature,
            epochs=1,
            teacher_epochs=1,
            batch_size=4,
            dataset_options=(("path", "tiny"), ("size", 32), ("workers", 0)),
        )
        outcome = engine.distill(spec)
        metrics = outcome.metrics
        assert math.isfinite(metrics["final_loss"]) and metrics["num_classes"] == 3
        assert 0 <= metrics["top1"] <= 100 and 0 <= metrics["agreement"] <= 100
        student = timm.create_model("mobilenetv3_small_100", num_classes=3)
        assert metrics["student_params"] == sum(p.numel() for p in student.parameters())
        assert metrics["student_flops"] > 0
        assert metrics["teacher_params"] > metrics["student_params"]
        assert (metrics["extra_params"] == 0) and len(outcome.info["history"]) == 1
    assert engine.teachers_trained == 1
