from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.losses.base import DistillLoss, LossContext, NotApplicable
from kdbench.models.base import StagedModel, WrappedModel
from kdbench.registry import LOSSES, KdbenchError

LAST_MAP = "feat:-1"  # the tap of the map (B, C, H, W) whose global average the classifier reads


class ClassifierOnMapLoss(DistillLoss):
    """A loss that sends the last stage's map (B, C, H, W), or regions of it, through each
    network's own classifier. Applicable where that classifier is one ``nn.Linear`` on the global
    average of that map: checked from the shapes in ``setup`` and, on the first batch, by the
    logits being the classifier on that average (a WRN's final BN + ReLU, or a 1×1 head
    convolution as MobileNetV2's and ShuffleNetV2's, lie between them)."""

    taps = (LAST_MAP,)  # the logits always come with the taps
    method = ""  # the paper's name in the reasons

    def setup(self, ctx: LossContext) -> None:
        self._classifiers = (  # a tuple: the networks' own layers, not parameters of the loss
            self._classifier(ctx.student, ctx.student_shapes[LAST_MAP], "student"),
            self._classifier(ctx.teacher, ctx.teacher_shapes[LAST_MAP], "teacher"),
        )
        self._models = (type(ctx.student).__name__, type(ctx.teacher).__name__)
        self._verified = False

    def _classifier(self, model: nn.Module | None, feat_shape: torch.Size, who: str) -> nn.Linear:
        if model is None:
            raise NotApplicable(f"{self.method} needs the {who}'s classifier")
        if not isinstance(model, StagedModel) or isinstance(model, WrappedModel):
            raise NotApplicable(
                f"{self.method} needs a classifier on the {who}'s pooled last "
                f"stage; {type(model).__name__} is a model of another library, "
                f"whose head between its last stage and its classifier is unknown"
            )
        classifier = model.classifier_module()
        if (
            not isinstance(classifier, nn.Linear)
            or len(feat_shape) != 4
            or classifier.in_features != feat_shape[1]
        ):
            raise NotApplicable(
                f"{self.method} needs the {who}'s classifier to be one linear "
                f"layer on its pooled last stage; {type(model).__name__}'s "
                f"{model.classifier_path} is not one on its "
                f"{tuple(feat_shape[1:])} map"
            )
        return classifier

    def classifiers(self, student: dict, teacher: dict) -> tuple[nn.Linear, nn.Linear]:
        """(the student's, the teacher's) classifier; on the first batch, NotApplicable unless
        each network's logits are its classifier on the global average of the last stage's map."""
        if not self._verified:
            for who, model, taps, classifier in zip(
                ("student", "teacher"), self._models, (student, teacher), self._classifiers
            ):
                with torch.no_grad():
                    logits = taps["logits"].float()  # (B, K)
                    if classifier.bias is not None:
                        logits = logits - classifier.bias.float()
                    pooled = F.linear(
                        taps[LAST_MAP].float().mean((2, 3)), classifier.weight.float()
                    )
                if (logits - pooled).norm() > 0.05 * logits.norm() + 1e-6:
                    raise NotApplicable(
                        f"{self.method} needs the {who}'s classifier on the "
                        f"average of its last stage's map; {model}'s reads "
                        f"another map (layers lie between)"
                    )
            self._verified = True
        return self._classifiers


def class_activation_maps(feat: torch.Tensor, classifier: nn.Linear) -> torch.Tensor:
    """The classifier's weights as a 1×1 convolution without bias: (B, C, H, W) → (B, K, H, W),
    CAT-KD's ``conv_test``."""
    return F.conv2d(feat, classifier.weight[:, :, None, None])


@LOSSES.register("catkd")
class CATKD(ClassifierOnMapLoss):
    """Guo, Yan, Li & Lin, "Class Attention Transfer Based Knowledge Distillation", CVPR 2023.

    Class activation maps (CAMs) of the last stage: its map through the classifier's weights as a
    bias-free 1×1 convolution, (B, C, H, W) → (B, classes, H, W), for the teacher (frozen) and the
    student (its own classifier, trained through this term). Both are average-pooled to
    ``resolution`` × ``resolution``, optionally L2-normalised over each map's positions
    (``normalize``); term β·MSE, averaged over batch, classes and positions. As
    ``mdistiller/distillers/CAT_KD.py`` (``CAT_loss``, ``_Normalize``) of GzyAftermath/CAT-KD at
    4467073: ``CAT_loss_weight`` is ``beta``, ``CAM_RESOLUTION`` ``resolution``, ``IF_NORMALIZE``
    ``normalize``, ``IF_BINARIZE`` ``binarize`` (the teacher's CAMs set to 1 above their mean
    absolute activation, else 0, before pooling); ``CE_WEIGHT`` is ``ce_weight`` and ``onlyCAT``
    (the paper's "CAT", no cross-entropy) is ``ce_weight`` 0. No logit term: the authors' CAT-KD
    is CAT + CE (their answer in CAT-KD issue #1).

    Defaults: ``configs/cifar100/CAT_KD/res32x4_res8x4.yaml`` (β 15, resolution 2, no
    normalisation, CE weight 1); their other CIFAR-100 configs set β from 0.7 to 600 per pair, with
    normalisation and resolution 4 for some cross-architecture pairs, and ``cfg.py``'s fallback
    (β 400, resolution 2, normalised) is used by none. Their converted models have no classifier
    bias (the logits are the pooled CAMs); kdbench keeps the student's bias, outside the CAMs.
    The partial-CAM ablation (``IF_OnlyTransferPartialCAMs``) is not ported.
    """

    method = "CAT-KD"
    options = {"beta": 15.0, "resolution": 2, "normalize": 0, "binarize": 0}

    @classmethod
    def check(cls, temperature: float | None, options: dict[str, float]) -> None:
        if options["resolution"] < 1 or options["resolution"] != int(options["resolution"]):
            raise KdbenchError(
                f"invalid catkd resolution {options['resolution']!r}: the CAMs are "
                f"pooled to resolution × resolution, a whole number ≥ 1"
            )

    def forward(self, student: dict, teacher: dict, target: torch.Tensor) -> torch.Tensor:
        s_classifier, t_classifier = self.classifiers(student, teacher)
        cam_s = class_activation_maps(student[LAST_MAP], s_classifier)  # (B, K, Hs, Ws)
        with torch.no_grad():
            cam_t = class_activation_maps(teacher[LAST_MAP], t_classifier)  # (B, K, Ht, Wt)
            if self.opts["binarize"]:
                threshold = cam_t.abs().mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
                cam_t = (cam_t > threshold).to(cam_t.dtype)
        size = int(self.opts["resolution"])
        cam_s = F.adaptive_avg_pool2d(cam_s, size)  # (B, K, r, r)
        cam_t = F.adaptive_avg_pool2d(cam_t, size)
        if self.opts["normalize"]:
            # F.normalize's stub says int, but its dim goes to Tensor.norm, which takes a tuple
            cam_s = F.normalize(cam_s, dim=(2, 3))  # type: ignore[arg-type]
            cam_t = F.normalize(cam_t, dim=(2, 3))  # type: ignore[arg-type]
        return self.opts["beta"] * F.mse_loss(cam_s, cam_t)
