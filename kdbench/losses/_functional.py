"""Math shared by several losses (not registered: files starting with ``_`` are skipped)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REFERENCE_EPOCHS = 240  # the CIFAR recipe the papers' schedules are written for


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, T: float | torch.Tensor) -> torch.Tensor:
    """T²·KL(softmax(t/T) ‖ softmax(s/T)), summed over classes, mean over the batch."""
    log_p_s = F.log_softmax(student / T, dim=1)  # (B, C)
    log_p_t = F.log_softmax(teacher / T, dim=1)  # (B, C)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * T * T


def zscore(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Logit standardization (Sun et al. 2024): per sample, mean 0, divided by (std + eps)."""
    mean = logits.mean(dim=1, keepdim=True)
    return (logits - mean) / (logits.std(dim=1, keepdim=True) + eps)


def dkd(
    student: torch.Tensor,
    teacher: torch.Tensor,
    target: torch.Tensor,
    T: float,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """α·TCKD + β·NCKD of Zhao et al. 2022, both T²-scaled, as in mdistiller."""
    gt = F.one_hot(target, student.shape[1]).bool()  # (B, C)
    p_s = F.softmax(student / T, dim=1)
    p_t = F.softmax(teacher / T, dim=1)
    b_s = torch.stack([p_s[gt], p_s.masked_fill(gt, 0).sum(1)], dim=1)  # (B, 2) target / rest
    b_t = torch.stack([p_t[gt], p_t.masked_fill(gt, 0).sum(1)], dim=1)
    tckd = F.kl_div(b_s.log(), b_t, reduction="batchmean")
    log_q_s = F.log_softmax(student / T - 1000.0 * gt, dim=1)  # non-target classes only
    q_t = F.softmax(teacher / T - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_q_s, q_t, reduction="batchmean")
    return (alpha * tckd + beta * nckd) * T * T


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of a with the same row of b: (N, D), (N, D) → (N,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def pool_to_smaller(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool whichever map is spatially larger to the other's size (RepDistiller)."""
    if a.shape[-2:] == b.shape[-2:]:
        return a, b
    if a.shape[-2] * a.shape[-1] > b.shape[-2] * b.shape[-1]:
        return F.adaptive_avg_pool2d(a, (b.shape[-2], b.shape[-1])), b
    return a, F.adaptive_avg_pool2d(b, (a.shape[-2], a.shape[-1]))


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between the rows of e (B, D) → (B, B), zero diagonal (RKD)."""
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def gram_rows(f: torch.Tensor) -> torch.Tensor:
    """Row-L2-normalised Gram matrix of a batch of features (B, …) → (B, B) (SP)."""
    f = f.flatten(1)
    return F.normalize(f @ f.t(), dim=1)


def ramp(epoch: int, epochs: int, fraction: float) -> float:
    """Linear warm-up weight at (0-based) ``epoch``: reaches 1 after ``fraction`` of the run."""
    span = fraction * epochs
    return 1.0 if span <= 0 else min((epoch + 1) / span, 1.0)


def scaled_epochs(fraction: float, epochs: int) -> int:
    """A stage that lasts ``fraction`` of the run (at least one epoch)."""
    return max(1, round(fraction * epochs))


def gaussian_negative_mean(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """E[x | x < 0] for x ~ N(mean, std²) per channel; −3·std where P(x < 0) ≤ 0.001 (OFD)."""
    cdf = torch.special.ndtr(-mean / std)
    expected = -std * torch.exp(-((mean / std) ** 2) / 2) / math.sqrt(2 * math.pi) / cdf + mean
    return torch.where(cdf > 0.001, expected, -3 * std)


class GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``lam`` (CTKD's λ ≤ 0 reverses it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.lam, None


def transformed_teacher_kl(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s)) per sample (B,): the teacher's probabilities raised to the
    power γ = 1/T and renormalised, the student's at temperature 1, no T² (Zheng & Yang 2024)."""
    log_p_s = F.log_softmax(student, dim=1)  # (B, C)
    log_q_t = F.log_softmax(teacher / T, dim=1)  # (B, C) = log(p_t^γ / Σ p_t^γ)
    return F.kl_div(log_p_s, log_q_t, reduction="none", log_target=True).sum(1)
