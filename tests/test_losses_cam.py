"""CAT-KD and SDD, the losses that send the last stage's map through the networks' own
classifiers, against their authors' code transcribed below (repository, path and commit named
on each), on seeded feature maps and classifier weights.

kdbench's default construction must give the authors' value at their cited CIFAR-100 setting,
so a changed constant fails here; real models check that gradients reach the student's own
classifier and features, and the models without a pooled linear head are not applicable.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses import LOSSES, LossContext, NotApplicable
from kdbench.losses.catkd import LAST_MAP
from kdbench.models import build_model
from kdbench.models.base import StagedModel, WrappedModel
from kdbench.registry import KdbenchError
from kdbench.run.taps import Tapper, shapes

CLASSES = 5


# ------------------------------------------------ GzyAftermath/CAT-KD @ 4467073ca31b9929e7c45f5a6
# mdistiller/distillers/CAT_KD.py: forward_train (binarization block), _Normalize, CAT_loss.
# The CAMs are feats[-1] of the "_test" models that tools/train.py builds when if_test is True:
# conv_test = nn.Conv2d(C, classes, 1, bias=False) with weight fc.weight.view(classes, C, 1, 1).
def cat_binarize(tea):
    _, _, h, w = tea.shape
    threshold = torch.norm(tea, dim=(2, 3), keepdim=True, p=1) / (h * w)
    tea = tea - threshold
    tea = nn.ReLU()(tea).bool() * torch.ones_like(tea)
    return tea


def _Normalize(feat, IF_NORMALIZE):
    if IF_NORMALIZE:
        feat = F.normalize(feat, dim=(2, 3))
    return feat


def CAT_loss(CAM_Student, CAM_Teacher, CAM_RESOLUTION, IF_NORMALIZE):
    CAM_Student = F.adaptive_avg_pool2d(CAM_Student, (CAM_RESOLUTION, CAM_RESOLUTION))
    CAM_Teacher = F.adaptive_avg_pool2d(CAM_Teacher, (CAM_RESOLUTION, CAM_RESOLUTION))
    loss = F.mse_loss(_Normalize(CAM_Student, IF_NORMALIZE), _Normalize(CAM_Teacher, IF_NORMALIZE))
    return loss


def conv_test(feat, fc):
    conv = nn.Conv2d(fc.in_features, fc.out_features, kernel_size=1, padding=0, bias=False)
    conv.weight.data = fc.weight.data.view(fc.out_features, fc.in_features, 1, 1)
    return conv(feat)


def authors_cat(
    f_s, fc_s, f_t, fc_t, CAT_loss_weight, CAM_RESOLUTION, IF_NORMALIZE, IF_BINARIZE=False
):
    tea, stu = conv_test(f_t, fc_t), conv_test(f_s, fc_s)
    if IF_BINARIZE:
        tea = cat_binarize(tea)
    return CAT_loss_weight * CAT_loss(stu, tea, CAM_RESOLUTION, IF_NORMALIZE)


# ----------------------------------------- shicaiwei123/SDD-CVPR2024 @ e412036c6b7b67d8ed25418d2d
# mdistiller/models/cifar/utils.py: SPP (its debug print left out).
class SPP(nn.Module):
    def __init__(self, M=None):
        super().__init__()
        self.pooling_4x4 = nn.AdaptiveAvgPool2d((4, 4))
        self.pooling_2x2 = nn.AdaptiveAvgPool2d((2, 2))
        self.pooling_1x1 = nn.AdaptiveAvgPool2d((1, 1))
        self.M = M

    def forward(self, x):
        x_4x4 = self.pooling_4x4(x)
        x_2x2 = self.pooling_2x2(x_4x4)
        x_1x1 = self.pooling_1x1(x_4x4)
        x_4x4_flatten = torch.flatten(x_4x4, start_dim=2, end_dim=3)
        x_2x2_flatten = torch.flatten(x_2x2, start_dim=2, end_dim=3)
        x_1x1_flatten = torch.flatten(x_1x1, start_dim=2, end_dim=3)
        if self.M == "[1,2,4]":
            x_feature = torch.cat((x_1x1_flatten, x_2x2_flatten, x_4x4_flatten), dim=2)
        elif self.M == "[1,2]":
            x_feature = torch.cat((x_1x1_flatten, x_2x2_flatten), dim=2)
        elif self.M == "[1]":
            x_feature = x_1x1_flatten
        else:
            raise NotImplementedError("ERROR M")
        x_strength = x_feature.permute((2, 0, 1))
        x_strength = torch.mean(x_strength, dim=2)
        return x_feature, x_strength


# mdistiller/models/cifar/resnet.py, ResNet_SDD.forward (lines 202–209): the patch scores.
def patch_scores(x, fc, M):
    x_spp, _ = SPP(M)(x)
    x_spp = x_spp.permute((2, 0, 1))
    m, b, c = x_spp.shape[0], x_spp.shape[1], x_spp.shape[2]
    x_spp = torch.reshape(x_spp, (m * b, c))
    patch_score = fc(x_spp)
    patch_score = torch.reshape(patch_score, (m, b, fc.out_features))
    patch_score = patch_score.permute((1, 2, 0))
    return patch_score


# mdistiller/distillers/KD.py: kd_loss, sdd_kd_loss (.cuda() dropped; torch.tensor(mask) of a
# tensor written mask.clone(), the same values without the copy-construct warning).
def kd_loss(logits_student, logits_teacher, temperature):
    log_pred_student = F.log_softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean()
    loss_kd *= temperature**2
    return loss_kd


def sdd_kd_loss(out_s_multi, out_t_multi, T, target):
    out_s_multi = out_s_multi.permute(2, 0, 1)
    out_t_multi = out_t_multi.permute(2, 0, 1)
    out_t = torch.reshape(
        out_t_multi, (out_t_multi.shape[0] * out_t_multi.shape[1], out_t_multi.shape[2])
    )
    out_s = torch.reshape(
        out_s_multi, (out_s_multi.shape[0] * out_s_multi.shape[1], out_s_multi.shape[2])
    )
    target_r = target.repeat(out_t_multi.shape[0])
    p_s = F.log_softmax(out_s / T, dim=1)
    p_t = F.softmax(out_t / T, dim=1)
    loss_kd = F.kl_div(p_s, p_t, reduction="none") * (T**2)
    nan_index = torch.isnan(loss_kd)
    loss_kd[nan_index] = torch.tensor(0.0)
    loss_kd = torch.sum(loss_kd, dim=1)
    out_t_predict = torch.argmax(out_t, dim=1)
    mask_true = out_t_predict == target_r
    mask_false = out_t_predict != target_r
    global_prediction = out_t_predict[0 : len(target)]
    global_prediction_true_mask = global_prediction == target
    global_prediction_false_mask = global_prediction != target
    global_prediction_true_mask_repeat = global_prediction_true_mask.clone().repeat(
        out_t_multi.shape[0]
    )
    global_prediction_false_mask_repeat = global_prediction_false_mask.clone().repeat(
        out_t_multi.shape[0]
    )
    mask_false[global_prediction_false_mask_repeat] = False
    mask_false[0 : len(target)] = False
    gt_lw = mask_false
    mask_true[global_prediction_true_mask_repeat] = False
    mask_true[0 : len(target)] = False
    gw_lt = mask_true
    mask_false = out_t_predict != target_r
    mask_true = out_t_predict == target_r
    index = torch.zeros_like(loss_kd).float()
    mask_false[global_prediction_true_mask_repeat] = False
    gw_lw = mask_false
    mask_true[global_prediction_false_mask_repeat] = False
    gt_lt = mask_true
    index[gw_lw] = 1.0
    index[gt_lt] = 1.0
    index[gw_lt] = 2
    index[gt_lw] = 2
    loss = torch.sum(loss_kd * index) / target_r.shape[0]
    return loss


# mdistiller/distillers/SDD_DKD.py: dkd_loss, multi_dkd, _get_gt_mask, _get_other_mask, cat_mask
# (the same two edits).
def dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature):
    gt_mask = _get_gt_mask(logits_student, target)
    other_mask = _get_other_mask(logits_student, target)
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    pred_student = cat_mask(pred_student, gt_mask, other_mask)
    pred_teacher = cat_mask(pred_teacher, gt_mask, other_mask)
    log_pred_student = torch.log(pred_student)
    tckd_loss = (
        F.kl_div(log_pred_student, pred_teacher, reduction="none")
        * (temperature**2)
        / target.shape[0]
    )
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd_loss = (
        F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="none")
        * (temperature**2)
        / target.shape[0]
    )
    tckd_loss = torch.sum(tckd_loss, dim=1)
    nckd_loss = torch.sum(nckd_loss, dim=1)
    return alpha * tckd_loss + beta * nckd_loss


def multi_dkd(out_s_multi, out_t_multi, target, alpha, beta, temperature):
    out_s_multi_t = out_s_multi.permute(2, 0, 1)
    out_t_multi_t = out_t_multi.permute(2, 0, 1)
    out_t = torch.reshape(
        out_t_multi_t, (out_t_multi_t.shape[0] * out_t_multi_t.shape[1], out_t_multi_t.shape[2])
    )
    out_s = torch.reshape(
        out_s_multi_t, (out_s_multi_t.shape[0] * out_s_multi_t.shape[1], out_s_multi_t.shape[2])
    )
    target_r = target.repeat(out_t_multi.shape[2])
    loss = dkd_loss(out_s, out_t, target_r, alpha, beta, temperature)
    out_t_predict = torch.argmax(out_t, dim=1)
    mask_true = out_t_predict == target_r
    mask_false = out_t_predict != target_r
    global_prediction = out_t_predict[0 : len(target)]
    global_prediction_true_mask = global_prediction == target
    global_prediction_false_mask = global_prediction != target
    global_prediction_true_mask_repeat = global_prediction_true_mask.clone().repeat(
        out_t_multi.shape[2]
    )
    global_prediction_false_mask_repeat = global_prediction_false_mask.clone().repeat(
        out_t_multi.shape[2]
    )
    mask_false[global_prediction_false_mask_repeat] = False
    mask_false[0 : len(target)] = False
    gt_lw = mask_false
    mask_true[global_prediction_true_mask_repeat] = False
    mask_true[0 : len(target)] = False
    gw_lt = mask_true
    mask_false = out_t_predict != target_r
    mask_true = out_t_predict == target_r
    index = torch.zeros_like(loss).float()
    mask_false[global_prediction_true_mask_repeat] = False
    gw_lw = mask_false
    mask_true[global_prediction_false_mask_repeat] = False
    gt_lt = mask_true
    assert (
        torch.sum(gt_lt) + torch.sum(gw_lw) + torch.sum(gt_lw) + torch.sum(gw_lt)
        == target_r.shape[0]
    )
    index[gw_lw] = 1.0
    index[gt_lt] = 1.0
    index[gw_lt] = 2.0
    index[gt_lw] = 2.0
    loss = torch.sum(loss * index)
    return loss


def _get_gt_mask(logits, target):
    target = target.reshape(-1)
    mask = torch.zeros_like(logits).scatter_(1, target.unsqueeze(1), 1).bool()
    return mask


def _get_other_mask(logits, target):
    target = target.reshape(-1)
    mask = torch.ones_like(logits).scatter_(1, target.unsqueeze(1), 0).bool()
    return mask


def cat_mask(t, mask1, mask2):
    t1 = (t * mask1).sum(dim=1, keepdims=True)
    t2 = (t * mask2).sum(1, keepdims=True)
    rt = torch.cat([t1, t2], dim=1)
    return rt


# mdistiller/distillers/DKD.py: dkd_loss, imported as dkd_loss_origin (size_average=False, a
# deprecated spelling of reduction="sum", written so).
def dkd_loss_origin(logits_student, logits_teacher, target, alpha, beta, temperature):
    gt_mask = _get_gt_mask(logits_student, target)
    other_mask = _get_other_mask(logits_student, target)
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    pred_student = cat_mask(pred_student, gt_mask, other_mask)
    pred_teacher = cat_mask(pred_teacher, gt_mask, other_mask)
    log_pred_student = torch.log(pred_student)
    tckd_loss = (
        F.kl_div(log_pred_student, pred_teacher, reduction="sum")
        * (temperature**2)
        / target.shape[0]
    )
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd_loss = (
        F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum")
        * (temperature**2)
        / target.shape[0]
    )
    return alpha * tckd_loss + beta * nckd_loss


# SDD_DKD.forward_train / SDD_KD.forward_train: the distillation term, before the warm-up
# min(epoch / warmup, 1) (SD-DKD) and KD_WEIGHT (SD-KD, applied as kdbench's alpha).
def authors_sdd(f_s, fc_s, f_t, fc_t, target, M, base, T=4.0, alpha=1.0, beta=8.0):
    if M == "[1]":
        s, t = fc_s(f_s.mean((2, 3))), fc_t(f_t.mean((2, 3)))
        if base == "dkd":
            return dkd_loss_origin(s, t, target, alpha, beta, T)
        return kd_loss(s, t, T)
    patch_s, patch_t = patch_scores(f_s, fc_s, M), patch_scores(f_t, fc_t, M)
    if base == "dkd":
        return multi_dkd(patch_s, patch_t, target, alpha, beta, T)
    return sdd_kd_loss(patch_s, patch_t, T, target)


# ------------------------------------------------------------------------------------ inputs
class Head(StagedModel):
    """The part of a network these losses use: a linear classifier on the pooled last map."""

    classifier_path = "fc"

    def __init__(self, channels: int, classes: int = CLASSES) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, classes)


def batch(seed: int, batch_size: int = 6, s_map=(8, 8, 8), t_map=(16, 4, 4)):
    """Seeded student and teacher maps (C, H, W) with their heads, and targets of which the first
    half agree with the teacher's global prediction (so its local predictions are right and wrong
    in both ways)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    s_head, t_head = Head(s_map[0]), Head(t_map[0])
    f_s = torch.randn(batch_size, *s_map, generator=g).relu().requires_grad_()
    f_t = torch.randn(batch_size, *t_map, generator=g).relu() * 2
    y = torch.randint(CLASSES, (batch_size,), generator=g)
    with torch.no_grad():
        global_t = t_head.fc(f_t.mean((2, 3))).argmax(1)
    y[: batch_size // 2] = global_t[: batch_size // 2]
    return f_s, s_head, f_t, t_head, y


def kdbench_value(name: str, f_s, s_head, f_t, t_head, y, temperature=None, **options):
    loss = LOSSES.get(name)(temperature=temperature, **options)
    student, teacher = head_taps(f_s, s_head), head_taps(f_t, t_head)
    loss.setup(
        LossContext(
            shapes(student), shapes(teacher), CLASSES, 64, 240, teacher=t_head, student=s_head
        )
    )
    return loss(student, teacher, y), loss


def head_taps(feat, head):
    return {LAST_MAP: feat, "logits": head.fc(feat.mean((2, 3)))}


def close(value: torch.Tensor, expected: torch.Tensor) -> None:
    assert torch.allclose(value, expected.reshape(()), rtol=1e-5, atol=1e-7), (
        value.item(),
        expected.item(),
    )


# ------------------------------------------------------------------------------------ CAT-KD
CAT_CONFIGS = {  # kdbench options ↔ the authors' config, configs/cifar100/…
    "CAT_KD/res32x4_res8x4.yaml (kdbench's default)": ({}, (15.0, 2, False, False)),
    "CAT_KD/res32x4_shuv1.yaml": (
        {"beta": 600.0, "resolution": 4, "normalize": 1},
        (600.0, 4, True, False),
    ),
    "CAT_KD/res56_res20.yaml": ({"beta": 0.7}, (0.7, 2, False, False)),
    "CAT/CAT_Binarization/res32x4_res32x4.yaml": (
        {"beta": 50.0, "normalize": 1, "binarize": 1},
        (50.0, 2, True, True),
    ),
}
MAPS = {
    "8x8 student, 4x4 teacher": ((8, 8, 8), (16, 4, 4)),
    "7x7 both": ((8, 7, 7), (16, 7, 7)),
    "4x4 student, 8x8 teacher": ((8, 4, 4), (16, 8, 8)),
}


def golden_catkd() -> tuple[torch.Tensor, torch.Tensor]:
    """(kdbench, authors) at kdbench's defaults, for the registry-wide golden test."""
    f_s, s_head, f_t, t_head, y = batch(0)
    value, _ = kdbench_value("catkd", f_s, s_head, f_t, t_head, y)
    return value, authors_cat(f_s, s_head.fc, f_t, t_head.fc, 15.0, 2, False)


@pytest.mark.parametrize("maps", MAPS.values(), ids=MAPS.keys())
@pytest.mark.parametrize("config", CAT_CONFIGS.values(), ids=CAT_CONFIGS.keys())
def test_catkd_is_the_authors_cat_loss(config, maps):
    options, (weight, resolution, normalize, binarize) = config
    for seed in range(3):
        f_s, s_head, f_t, t_head, y = batch(seed, s_map=maps[0], t_map=maps[1])
        value, _ = kdbench_value("catkd", f_s, s_head, f_t, t_head, y, **options)
        close(
            value,
            authors_cat(f_s, s_head.fc, f_t, t_head.fc, weight, resolution, normalize, binarize),
        )


def test_catkd_defaults_are_the_res32x4_res8x4_config():
    cls = LOSSES.get("catkd")
    assert cls.options == {"beta": 15.0, "resolution": 2, "normalize": 0, "binarize": 0}
    assert cls.weights() == (1.0, 1.0)  # CE_WEIGHT 1, CAT_loss_weight inside the term
    assert not cls.uses_temperature
    value, expected = golden_catkd()
    close(value, expected)


def test_catkd_gradients_reach_the_students_classifier_and_map_not_the_teachers():
    f_s, s_head, f_t, t_head, y = batch(0)
    value, loss = kdbench_value("catkd", f_s, s_head, f_t, t_head, y)
    value.backward()
    assert f_s.grad.abs().sum() > 0 and s_head.fc.weight.grad.abs().sum() > 0
    assert s_head.fc.bias.grad is None  # the CAMs are bias-free, as the authors' conv_test
    assert t_head.fc.weight.grad is None
    assert list(loss.parameters()) == [] and loss.trainable() == []


def test_catkd_resolution_must_be_a_whole_number():
    with pytest.raises(KdbenchError, match="resolution"):
        LOSSES.get("catkd")(resolution=1.5)


# --------------------------------------------------------------------------------------- SDD
SDD_CONFIGS = {  # kdbench options ↔ the authors' distiller and --M
    "SD-DKD [1,2,4] (kdbench's default)": ({}, ("dkd", "[1,2,4]", 8.0)),
    "SD-DKD [1,2] beta 6 (sdd_dkd/vgg13_vgg8.yaml)": (
        {"scales": 2, "nckd_weight": 6.0},
        ("dkd", "[1,2]", 6.0),
    ),
    "SD-DKD [1]": ({"scales": 1}, ("dkd", "[1]", 8.0)),
    "SD-KD [1,2,4]": ({"dkd": 0}, ("kd", "[1,2,4]", 8.0)),
    "SD-KD [1,2]": ({"dkd": 0, "scales": 2}, ("kd", "[1,2]", 8.0)),
    "SD-KD [1]": ({"dkd": 0, "scales": 1}, ("kd", "[1]", 8.0)),
}


def golden_sdd() -> tuple[torch.Tensor, torch.Tensor]:
    """(kdbench, authors) at kdbench's defaults, for the registry-wide golden test."""
    f_s, s_head, f_t, t_head, y = batch(0)
    value, _ = kdbench_value("sdd", f_s, s_head, f_t, t_head, y)
    return value, authors_sdd(f_s, s_head.fc, f_t, t_head.fc, y, "[1,2,4]", "dkd")


@pytest.mark.parametrize("temperature", [None, 2.0])
@pytest.mark.parametrize("maps", MAPS.values(), ids=MAPS.keys())
@pytest.mark.parametrize("config", SDD_CONFIGS.values(), ids=SDD_CONFIGS.keys())
def test_sdd_is_the_authors_loss(config, maps, temperature):
    options, (base, M, beta) = config
    for seed in range(3):
        f_s, s_head, f_t, t_head, y = batch(seed, s_map=maps[0], t_map=maps[1])
        value, _ = kdbench_value("sdd", f_s, s_head, f_t, t_head, y, temperature, **options)
        close(
            value,
            authors_sdd(
                f_s, s_head.fc, f_t, t_head.fc, y, M, base, T=temperature or 4.0, beta=beta
            ),
        )


def test_sdd_inputs_have_complementary_regions():
    """The golden inputs exercise both weights: some regions disagree with the global
    prediction's correctness, some agree."""
    _, _, f_t, t_head, y = batch(0)
    out_t = patch_scores(f_t, t_head.fc, "[1,2,4]").permute(2, 0, 1).reshape(-1, CLASSES)
    right = out_t.argmax(1) == y.repeat(21)
    complementary = right != right[:6].repeat(21)
    assert 0 < complementary.sum() < len(complementary)
    assert right[:6].any() and not right[:6].all()


def test_sdd_defaults_are_the_readme_sd_dkd_command():
    cls = LOSSES.get("sdd")
    assert cls.default_temperature == 4.0 and cls.uses_temperature
    assert cls.options == {
        "scales": 3,
        "complementary": 2.0,
        "dkd": 1,
        "tckd_weight": 1.0,
        "nckd_weight": 8.0,
        "warmup": 20 / 240,
    }
    assert cls.weights() == (1.0, 1.0)  # CFG.DKD.CE_WEIGHT 1
    value, expected = golden_sdd()
    close(value, expected)


def test_sdd_complementary_weight_is_load_bearing():
    f_s, s_head, f_t, t_head, y = batch(0)
    expected = authors_sdd(f_s, s_head.fc, f_t, t_head.fc, y, "[1,2,4]", "dkd")
    value, _ = kdbench_value("sdd", f_s, s_head, f_t, t_head, y, complementary=1.0)
    assert not torch.allclose(value, expected, rtol=1e-3)


@pytest.mark.parametrize("epoch", [1, 10, 20, 21])  # mdistiller counts epochs from 1
def test_sdd_warmup_is_the_authors(epoch):
    f_s, s_head, f_t, t_head, y = batch(1)
    _, loss = kdbench_value("sdd", f_s, s_head, f_t, t_head, y)
    loss.set_progress(epoch - 1, 240)
    term = loss(head_taps(f_s, s_head), head_taps(f_t, t_head), y)
    close(
        term,
        min(epoch / 20.0, 1.0) * authors_sdd(f_s, s_head.fc, f_t, t_head.fc, y, "[1,2,4]", "dkd"),
    )


def test_sdd_gradients_reach_the_students_classifier_and_map_not_the_teachers():
    f_s, s_head, f_t, t_head, y = batch(0)
    value, loss = kdbench_value("sdd", f_s, s_head, f_t, t_head, y)
    value.backward()
    assert f_s.grad.abs().sum() > 0
    assert s_head.fc.weight.grad.abs().sum() > 0 and s_head.fc.bias.grad.abs().sum() > 0
    assert t_head.fc.weight.grad is None
    assert list(loss.parameters()) == [] and loss.trainable() == []


def test_sdd_scales_are_the_authors_three_grids():
    with pytest.raises(KdbenchError, match="scales"):
        LOSSES.get("sdd")(scales=4)


# ------------------------------------------------------------------------ real kdbench models
REAL_PAIRS = [
    ("fmnist_t", "fmnist_s", (1, 28, 28)),
    ("fmnist_t", "fmnist_m", (1, 28, 28)),
    ("resnet56", "resnet20", (3, 32, 32)),
    ("vgg13", "vgg8", (3, 32, 32)),
    ("resnet32x4", "shufflenetv1", (3, 32, 32)),
    ("resnet50", "resnet8x4", (3, 32, 32)),
]


def real_case(name: str, teacher_name: str, student_name: str, input_shape):
    torch.manual_seed(0)
    teacher = build_model(teacher_name, 10, input_shape).eval()
    student = build_model(student_name, 10, input_shape).train()
    loss = LOSSES.get(name)()
    x = torch.randn(4, *input_shape)
    with Tapper(teacher, loss.taps) as t_tap, torch.no_grad():
        t_out = t_tap(x)
    with Tapper(student, loss.taps) as s_tap:
        s_out = s_tap(x)
    loss.setup(
        LossContext(shapes(s_out), shapes(t_out), 10, 64, 240, teacher=teacher, student=student)
    )
    return loss, student, teacher, s_out, t_out


@pytest.mark.parametrize("pair", REAL_PAIRS, ids=[f"{t}>{s}" for t, s, _ in REAL_PAIRS])
@pytest.mark.parametrize("name", ["catkd", "sdd"])
def test_real_models_train_through_their_own_classifier(name, pair):
    loss, student, teacher, s_out, t_out = real_case(name, *pair)
    s_out[LAST_MAP].retain_grad()
    value = loss(s_out, t_out, torch.tensor([0, 1, 2, 3]))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    grad = student.classifier_module().weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.isfinite(s_out[LAST_MAP].grad).all() and s_out[LAST_MAP].grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert list(loss.parameters()) == []


NOT_APPLICABLE = {
    "cnn_t>cnn_s: two linear layers after the last map": ("cnn_t", "cnn_s", (1, 8, 8), "fc2"),
    "vgg13>mobilenetv2: a 1x1 conv between the last stage and the pooling": (
        "vgg13",
        "mobilenetv2",
        (3, 32, 32),
        "classifier.0",
    ),
    "resnet32x4>shufflenetv2: a 1x1 conv again": (
        "resnet32x4",
        "shufflenetv2",
        (3, 32, 32),
        "linear",
    ),
    "mobilenetv2>vgg8: the teacher's head": ("mobilenetv2", "vgg8", (3, 32, 32), "teacher"),
    "wrn_40_2>wrn_16_2: BN and ReLU after the last stage, seen on the first batch": (
        "wrn_40_2",
        "wrn_16_2",
        (3, 32, 32),
        "student's classifier on the average",
    ),
    "wrn_40_2>resnet20: the teacher's BN and ReLU": (
        "wrn_40_2",
        "resnet20",
        (3, 32, 32),
        "teacher's classifier on the average",
    ),
}


@pytest.mark.parametrize("case", NOT_APPLICABLE.values(), ids=NOT_APPLICABLE.keys())
@pytest.mark.parametrize("name", ["catkd", "sdd"])
def test_not_applicable_without_a_linear_head_on_the_pooled_last_stage(name, case):
    *pair, reason = case
    with pytest.raises(NotApplicable, match=reason):
        loss, _, _, s_out, t_out = real_case(name, *pair)
        loss(s_out, t_out, torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("name", ["catkd", "sdd"])
def test_not_applicable_without_the_student_or_for_another_librarys_model(name):
    f_s, s_head, f_t, t_head, _ = batch(0)
    student, teacher = head_taps(f_s, s_head), head_taps(f_t, t_head)
    loss = LOSSES.get(name)()
    with pytest.raises(NotApplicable, match="student's classifier"):
        loss.setup(LossContext(shapes(student), shapes(teacher), CLASSES, 64, 240, teacher=t_head))
    wrapped = WrappedModel(Head(8), stages=(), classifier="fc")
    with pytest.raises(NotApplicable, match="another library"):
        loss.setup(
            LossContext(
                shapes(student), shapes(teacher), CLASSES, 64, 240, teacher=t_head, student=wrapped
            )
        )
