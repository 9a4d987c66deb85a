"""MLKD (Jin, Wang & Lin, CVPR 2023) against the authors' code, and the two-view data option it
trains on (``strong_view``, kdbench/data/views.py) against the authors' PIL augmentation.

The reference functions below are transcribed from Jin-Ying/Multi-Level-Logit-Distillation at
commit 5ee473fcf193dfb00a0598b64d0acfe6ad58a482: ``kd_loss``, ``cc_loss``, ``bc_loss`` and the
loss part of ``KD_ours.forward_train`` (mdistiller/distillers/KD_ours.py, constants from
mdistiller/engine/cfg.py ``CFG.KD``), and the PIL operations of ``RandAugment`` and
``CutoutAbs`` (mdistiller/dataset/cifar100.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from kdbench.data import load_dataset
from kdbench.data.views import (
    CUTOUT_FILL,
    STRONG_VIEW,
    FixMatchRandAugment,
    _cutout,
    fixmatch_ops,
)
from kdbench.losses import LOSSES
from kdbench.losses.mlkd import TEMPERATURES
from kdbench.registry import KdbenchError
from kdbench.run.engine import Engine
from kdbench.spec import make_spec

TWO_VIEWS = ((STRONG_VIEW, "fixmatch"),)


# ------------------------------------------------------------------ the authors' loss, verbatim
def kd_loss(logits_student, logits_teacher, temperature, reduce=True):
    log_pred_student = F.log_softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    if reduce:
        loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean()
    else:
        loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1)
    loss_kd *= temperature**2
    return loss_kd


def cc_loss(logits_student, logits_teacher, temperature, reduce=True):
    _, class_num = logits_teacher.shape
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    student_matrix = torch.mm(pred_student.transpose(1, 0), pred_student)
    teacher_matrix = torch.mm(pred_teacher.transpose(1, 0), pred_teacher)
    if reduce:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2).sum() / class_num
    else:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2) / class_num
    return consistency_loss


def bc_loss(logits_student, logits_teacher, temperature, reduce=True):
    batch_size, _ = logits_teacher.shape
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    student_matrix = torch.mm(pred_student, pred_student.transpose(1, 0))
    teacher_matrix = torch.mm(pred_teacher, pred_teacher.transpose(1, 0))
    if reduce:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2).sum() / batch_size
    else:
        consistency_loss = ((teacher_matrix - student_matrix) ** 2) / batch_size
    return consistency_loss


def authors_losses(
    logits_student_weak,
    logits_student_strong,
    logits_teacher_weak,
    logits_teacher_strong,
    target,
    temperature=4,
    ce_loss_weight=0.1,
    kd_loss_weight=0.9,
    paper=False,
):
    """KD_ours.forward_train from ``pred_teacher_weak = …`` to ``losses_dict``, its repeated
    calls folded into loops over the same temperatures in the same order. ``paper``: the masks
    applied before the reduction (their ``reduce=False``; the batch and class terms summed, so
    that they keep the released normalisers)."""
    pred_teacher_weak = F.softmax(logits_teacher_weak.detach(), dim=1)
    confidence, _ = pred_teacher_weak.max(dim=1)
    confidence = confidence.detach()
    conf_thresh = np.percentile(confidence.cpu().numpy().flatten(), 50)
    mask = confidence.le(conf_thresh).bool()
    class_confidence = torch.sum(pred_teacher_weak, dim=0)
    class_confidence = class_confidence.detach()
    class_confidence_thresh = np.percentile(class_confidence.cpu().numpy().flatten(), 50)
    class_conf_mask = class_confidence.le(class_confidence_thresh).bool()

    weak_temps = (temperature, 3.0, 5.0, 2.0, 6.0)
    sw, ss, tw, ts = (
        logits_student_weak,
        logits_student_strong,
        logits_teacher_weak,
        logits_teacher_strong,
    )
    loss_ce = ce_loss_weight * (F.cross_entropy(sw, target) + F.cross_entropy(ss, target))
    if paper:
        loss_kd_weak = sum(
            kd_loss_weight * (kd_loss(sw, tw, T, reduce=False) * mask).mean() for T in weak_temps
        )
        loss_cc_weak = sum(
            kd_loss_weight * (cc_loss(sw, tw, T, reduce=False) * class_conf_mask).sum()
            for T in weak_temps
        )
        loss_bc_weak = sum(
            kd_loss_weight * (bc_loss(sw, tw, T, reduce=False) * mask[:, None]).sum()
            for T in weak_temps
        )
    else:
        loss_kd_weak = sum(
            kd_loss_weight * ((kd_loss(sw, tw, T) * mask).mean()) for T in weak_temps
        )
        loss_cc_weak = sum(
            kd_loss_weight * ((cc_loss(sw, tw, T) * class_conf_mask).mean()) for T in weak_temps
        )
        loss_bc_weak = sum(
            kd_loss_weight * ((bc_loss(sw, tw, T) * mask).mean()) for T in weak_temps
        )
    loss_kd_strong = (
        kd_loss_weight * kd_loss(ss, ts, temperature)
        + kd_loss_weight * kd_loss(ss, ts, 3.0)
        + kd_loss_weight * kd_loss(ss, ts, 5.0)
        + kd_loss_weight * kd_loss(sw, tw, 2.0)
        + kd_loss_weight * kd_loss(sw, tw, 6.0)
    )
    return {
        "loss_ce": loss_ce,
        "loss_kd": loss_kd_weak + loss_kd_strong,
        "loss_cc": loss_cc_weak,
        "loss_bc": loss_bc_weak,
    }


def logits(batch: int, classes: int, seed: int) -> tuple[torch.Tensor, ...]:
    """(student weak, student strong, teacher weak, teacher strong, target), seeded."""
    g = torch.Generator().manual_seed(seed)
    s_w, s_s, t_w, t_s = (torch.randn(batch, classes, generator=g) * 3 for _ in range(4))
    return s_w, s_s, t_w, t_s, torch.randint(classes, (batch,), generator=g)


def kdbench_objective(s_w, s_s, t_w, t_s, y, temperature=None, **options) -> torch.Tensor:
    """The engine's objective on a two-view batch: ce_weight·CE over 2B rows + alpha·term."""
    loss = LOSSES.get("mlkd")(temperature=temperature, **options)
    spec = make_spec("digits", "cnn_t", "cnn_s", "mlkd", temperature=loss.temperature)
    student = {"logits": torch.cat([s_w, s_s]), "index": torch.arange(len(y)).repeat(2)}
    teacher = {"logits": torch.cat([t_w, t_s])}
    return spec.ce_weight * F.cross_entropy(student["logits"], y.repeat(2)) + spec.alpha * loss(
        student, teacher, y.repeat(2)
    )


@pytest.mark.parametrize("paper", [False, True])
@pytest.mark.parametrize("batch, classes, seed", [(64, 100, 0), (16, 10, 1), (7, 5, 2)])
def test_equals_the_authors_objective(paper, batch, classes, seed):
    s_w, s_s, t_w, t_s, y = logits(batch, classes, seed)
    theirs = sum(authors_losses(s_w, s_s, t_w, t_s, y, paper=paper).values())
    ours = kdbench_objective(s_w, s_s, t_w, t_s, y, paper=float(paper))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)


@pytest.mark.parametrize("paper", [False, True])
def test_gradients_equal_the_authors(paper):
    s_w, s_s, t_w, t_s, y = logits(32, 20, 3)
    grads = []
    for fn in (
        lambda a, b: sum(authors_losses(a, b, t_w, t_s, y, paper=paper).values()),
        lambda a, b: kdbench_objective(a, b, t_w, t_s, y, paper=float(paper)),
    ):
        a, b = s_w.clone().requires_grad_(), s_s.clone().requires_grad_()
        grads.append(torch.autograd.grad(fn(a, b), (a, b)))
    for ours, theirs in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-8)


def test_the_two_forms_differ_and_the_released_one_scales_by_the_kept_fraction():
    s_w, s_s, t_w, t_s, y = logits(16, 10, 4)
    released, paper = (kdbench_objective(s_w, s_s, t_w, t_s, y, paper=p) for p in (0.0, 1.0))
    assert not torch.isclose(released, paper)


@pytest.mark.parametrize("temperature", [2.0, 8.0])
def test_the_case_temperature_is_the_first_of_the_five(temperature):
    s_w, s_s, t_w, t_s, y = logits(16, 10, 5)
    theirs = sum(authors_losses(s_w, s_s, t_w, t_s, y, temperature=temperature).values())
    torch.testing.assert_close(
        kdbench_objective(s_w, s_s, t_w, t_s, y, temperature), theirs, rtol=1e-5, atol=0
    )


def test_constants_are_the_authors_cifar100_defaults():
    """cfg.py CFG.KD: TEMPERATURE 4, CE_WEIGHT 0.1 (on each view: 0.2 over both), KD_WEIGHT 0.9;
    KD_ours.py's other temperatures 3, 5, 2, 6 in that order; the released form by default."""
    cls = LOSSES.get("mlkd")
    assert (cls.default_temperature, cls.alpha, cls.ce_weight) == (4.0, 0.9, 0.2)
    assert TEMPERATURES == (3.0, 5.0, 2.0, 6.0)
    assert cls.options == {"paper": 0.0}
    assert dict(cls.dataset_options) == {STRONG_VIEW: "fixmatch"}
    assert cls.paper().startswith('Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023')


def test_without_two_views_one_line_error():
    loss = LOSSES.get("mlkd")()
    s_w, _, t_w, _, y = logits(8, 10, 6)
    with pytest.raises(KdbenchError) as info:
        loss({"logits": s_w, "index": torch.arange(8)}, {"logits": t_w}, y)
    message = str(info.value)
    assert "\n" not in message and "strong_view='fixmatch'" in message


# ------------------------------------------------------------------ the authors' augmentation
def AutoContrast(img, _):
    return ImageOps.autocontrast(img)


def Brightness(img, v):
    return ImageEnhance.Brightness(img).enhance(v)


def Color(img, v):
    return ImageEnhance.Color(img).enhance(v)


def Contrast(img, v):
    return ImageEnhance.Contrast(img).enhance(v)


def Equalize(img, _):
    return ImageOps.equalize(img)


def Identity(img, v):
    return img


def Posterize(img, v):
    v = int(v)
    v = max(1, v)
    return ImageOps.posterize(img, v)


def Rotate(img, v):
    return img.rotate(v)


def Sharpness(img, v):
    return ImageEnhance.Sharpness(img).enhance(v)


def ShearX(img, v):
    return img.transform(img.size, Image.AFFINE, (1, v, 0, 0, 1, 0))


def ShearY(img, v):
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, v, 1, 0))


def Solarize(img, v):
    return ImageOps.solarize(img, v)


def TranslateX(img, v):
    v = v * img.size[0]
    return img.transform(img.size, Image.AFFINE, (1, 0, v, 0, 1, 0))


def TranslateY(img, v):
    v = v * img.size[1]
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, v))


def augment_list():
    return [
        (AutoContrast, 0, 1),
        (Brightness, 0.05, 0.95),
        (Color, 0.05, 0.95),
        (Contrast, 0.05, 0.95),
        (Equalize, 0, 1),
        (Identity, 0, 1),
        (Posterize, 4, 8),
        (Rotate, -30, 30),
        (Sharpness, 0.05, 0.95),
        (ShearX, -0.3, 0.3),
        (ShearY, -0.3, 0.3),
        (Solarize, 0, 256),
        (TranslateX, -0.3, 0.3),
        (TranslateY, -0.3, 0.3),
    ]


def CutoutAbs(img, v, x0, y0):  # x0, y0: their np.random.uniform(w), np.random.uniform(h)
    w, h = img.size
    x0 = int(max(0, x0 - v / 2.0))
    y0 = int(max(0, y0 - v / 2.0))
    x1 = min(w, x0 + v)
    y1 = min(h, y0 + v)
    xy = (x0, y0, x1, y1)
    color = (125, 123, 114)
    img = img.copy()
    ImageDraw.Draw(img).rectangle(xy, color)
    return img


def photos(n: int, seed: int) -> np.ndarray:
    """(n, 32, 32, 3) uint8 smooth random images with edges (not white noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    fine = F.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    return (fine * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def as_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


@pytest.mark.parametrize("k", range(14), ids=[op.__name__ for op, _, _ in augment_list()])
def test_each_strong_operation_equals_the_authors_pil_one(k):
    """Every op at 20 random magnitudes of its range, on 20 images: PIL's 8-bit rounding aside
    (±1 grey level), the same pixels; rotations may move ≤ 0.5 % of the pixels of an image
    where a sample point falls on a pixel border."""
    theirs, lo, hi = augment_list()[k]
    ours = fixmatch_ops()[k][0]
    assert (fixmatch_ops()[k][1], fixmatch_ops()[k][2]) == (lo, hi)
    rng = np.random.default_rng(k)
    for arr in photos(20, k):
        v = lo + (hi - lo) * rng.random()
        expected = as_tensor(theirs(Image.fromarray(arr), v)).int()
        got = ours(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), v).int()
        off = (got - expected).abs()
        assert (off > 1).float().mean() <= 0.005, (v, off.max())


@pytest.mark.parametrize(
    "fraction, u, v", [(0.3, 0.5, 0.5), (0.5, 0.02, 0.97), (0.11, 0.9, 0.1), (0.0, 0.5, 0.5)]
)
def test_cutout_equals_the_authors(fraction, u, v):
    arr = photos(1, 7)[0]
    img = Image.fromarray(arr)
    expected = img if fraction <= 0 else CutoutAbs(img, fraction * 32, u * 32, v * 32)
    got = _cutout(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), fraction, u, v)
    assert torch.equal(got, as_tensor(expected))
    assert CUTOUT_FILL == (125, 123, 114)


def test_strong_view_draws_from_the_generator_only():
    """The strong view applies the ops of its draws: replaying the draws by hand gives it."""
    arr = torch.from_numpy(photos(4, 8)).permute(0, 3, 1, 2).float() / 255  # (4, 3, 32, 32)
    aug = FixMatchRandAugment(low=(0.0,) * 3, high=(1.0,) * 3)
    torch.manual_seed(123)  # the global generator must not matter
    got = aug(arr, torch.Generator().manual_seed(5))
    torch.manual_seed(321)
    assert torch.equal(got, aug(arr, torch.Generator().manual_seed(5)))
    g = torch.Generator().manual_seed(5)
    choice = torch.randint(14, (4, 2), generator=g).tolist()
    magnitude = torch.rand(4, 2, generator=g, dtype=torch.float64).tolist()
    cutout = torch.rand(4, 3, generator=g, dtype=torch.float64).tolist()
    for i in range(4):
        img = (arr[i] * 255).round().to(torch.uint8)
        for k, m in zip(choice[i], magnitude[i]):
            op, lo, hi = fixmatch_ops()[k]
            img = op(img, lo + (hi - lo) * m)
        img = _cutout(img, cutout[i][0] * 0.5, cutout[i][1], cutout[i][2])
        torch.testing.assert_close(got[i], img.float() / 255)


# ------------------------------------------------------------------------ the data option
def first_batch(data, seed: int = 0, batch: int = 16):
    return next(iter(data.train_batches(batch, torch.Generator().manual_seed(seed))))


@pytest.mark.parametrize(
    "dataset, options",
    [("digits", ()), ("synthetic", (("channels", 3), ("size", 32), ("augment", True)))],
)
def test_two_views_of_the_same_images(dataset, options):
    plain = load_dataset(dataset, **dict(options))
    data = load_dataset(dataset, **dict(options), strong_view="fixmatch")
    assert data.views == 2 and data.augmented and plain.views == 1
    x, y, index = first_batch(data)
    assert x.shape == (32, *data.input_shape) and len(y) == len(index) == 32
    assert torch.equal(y[:16], y[16:]) and torch.equal(index[:16], index[16:])
    assert torch.equal(y[:16], data.y_train[index[:16]])
    weak, strong = x[:16], x[16:]
    if plain.augment is None:  # digits: the weak view is the image as it is
        assert torch.equal(weak, data.x_train[index[:16]])
    else:  # CIFAR-like: the data set's own crop and flip, as without the option
        assert torch.equal(weak, first_batch(plain)[0])
    assert not torch.equal(weak, strong)
    low = data.x_train.amin(dim=(0, 2, 3))[:, None, None]
    high = data.x_train.amax(dim=(0, 2, 3))[:, None, None]
    assert ((strong >= low - 1e-5) & (strong <= high + 1e-5)).all()
    for split in ("val", "test"):  # held-out splits are untouched
        assert torch.equal(
            next(iter(getattr(data, f"{split}_batches")(8)))[0],
            next(iter(getattr(plain, f"{split}_batches")(8)))[0],
        )


def test_views_are_reproducible_under_a_fixed_generator():
    data = load_dataset("digits", strong_view="fixmatch")
    a, b, c = first_batch(data, 0), first_batch(data, 0), first_batch(data, 1)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0][16:], c[0][16:])


def test_the_option_is_in_the_spec_and_so_in_the_case_and_group():
    plain = make_spec("digits", "cnn_t", "cnn_s", "kd", temperature=4.0)
    two = dataclasses.replace(plain, dataset_options=TWO_VIEWS)
    assert two.to_dict()["dataset_options"] == {STRONG_VIEW: "fixmatch"}
    assert two.case_id != plain.case_id and two.group_id != plain.group_id
    assert type(two).from_dict(two.to_dict()) == two
    assert (
        load_dataset("digits", strong_view="fixmatch").fingerprint()
        != load_dataset("digits").fingerprint()
    )


@pytest.mark.parametrize("options, match", [({"strong_view": "autoaugment"}, "valid: fixmatch")])
def test_unknown_strong_view_one_line_error(options, match):
    with pytest.raises(KdbenchError, match=match) as info:
        load_dataset("digits", **options)
    assert "\n" not in str(info.value)


def test_engine_runs_mlkd_on_two_views_and_refuses_one(tmp_path, tiny_spec):
    engine = Engine(tmp_path / "cache")
    spec = tiny_spec("mlkd", epochs=1, teacher_epochs=1)
    two = dataclasses.replace(
        spec,
        dataset_options=tuple(
            sorted({**dict(spec.dataset_options), STRONG_VIEW: "fixmatch"}.items())
        ),
    )
    outcome = engine.distill(two)
    assert outcome.metrics["teacher_outputs"] == "online" and outcome.metrics["top1"] >= 0
    with pytest.raises(KdbenchError, match="strong_view='fixmatch'") as info:
        engine.distill(
            dataclasses.replace(
                two, dataset_options=tuple(kv for kv in two.dataset_options if kv[0] != STRONG_VIEW)
            )
        )
    assert "\n" not in str(info.value)
