"""Accuracy, agreement, fidelity, size, speed and memory of a case; the metrics of its record.

Timing rules: warm-up first; CUDA synchronized around every timed region; throughput and
latency are medians over repeated rounds; the thread count is recorded in the env. A model is
timed as the case runs it: its precision (autocast), memory format and compile mode.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import kdbench
from kdbench.models.base import count_params
from kdbench.run.accel import Accel

if TYPE_CHECKING:
    from kdbench.data.base import Batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def predict(model: nn.Module, batches: Iterable[Batch]) -> torch.Tensor:
    """Logits (N, classes) of a split's batches ``(x, y, index)``, in eval mode."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(x) for x, _, _ in batches])
    model.train(was_training)
    return logits


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, k: int) -> float:
    """Percent of samples whose target is among the k largest logits."""
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == target[:, None]).any(dim=1).sum().item()
    return 100.0 * hits / len(target)


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Percent of samples where student and teacher predict the same class."""
    same = (student_logits.argmax(1) == teacher_logits.argmax(1)).sum().item()
    return 100.0 * same / len(student_logits)


def fidelity_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean KL(teacher ‖ student) of the softmax outputs at T = 1, in nats (Stanton et al.,
    "Does Knowledge Distillation Really Work?", NeurIPS 2021): 0 when the student matches the
    teacher's predictive distribution on every sample."""
    return F.kl_div(
        F.log_softmax(student_logits.float(), 1),
        F.log_softmax(teacher_logits.float(), 1),
        reduction="batchmean",
        log_target=True,
    ).item()


def near_chance(top1: float, num_classes: int) -> bool:
    """A top-1 (percent) within a tenth of the way from chance to perfect: a model that has
    learned (almost) nothing, e.g. a random-weight teacher."""
    chance = 100.0 / num_classes
    return top1 < chance + 0.1 * (100.0 - chance)


def accuracy(
    logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor
) -> dict[str, float]:
    """Test metrics of a student: top-1, top-5, agreement with and fidelity to its teacher."""
    return {
        "top1": topk_accuracy(logits, targets, 1),
        "top5": topk_accuracy(logits, targets, 5),
        "agreement": agreement(logits, teacher_logits),
        "fidelity_kl": fidelity_kl(logits, teacher_logits),
    }


def sizes(student: nn.Module, teacher: nn.Module, loss: nn.Module) -> dict[str, float]:
    """Trainable parameters of the student and of the loss's own parts; the whole teacher."""
    student_params = count_params(student)
    teacher_params = count_params(teacher, trainable_only=False)
    return {
        "student_params": student_params,
        "teacher_params": teacher_params,
        "extra_params": count_params(loss),
        "compression": teacher_params / student_params,
    }


def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """Forward FLOPs of one sample, counted by torch.utils.flop_counter (a multiply-add = 2)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def median_seconds(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int = 3,
    rounds: int = 15,
    budget_s: float = 1.0,
) -> float:
    """Median wall time of ``fn`` over up to ``rounds`` rounds (fewer if over ``budget_s``)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < rounds and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def forward_rate(
    forward: Callable[[torch.Tensor], Any],
    input_shape: tuple[int, ...],
    batch_size: int,
    accel: Accel,
) -> float:
    """Samples/s of ``forward`` at ``batch_size`` in the precision and memory format of
    ``accel``: median of rounds after warm-up."""
    batch = accel.batch(torch.randn(batch_size, *input_shape, device=accel.device))
    with accel.autocast():
        return batch_size / median_seconds(lambda: forward(batch), accel.device)


def inference_speed(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int,
    accel: Accel,
    compile_mode: str | None = None,
) -> tuple[float, float]:
    """(samples/s at ``batch_size``, latency in ms at batch 1) of ``model`` in eval mode, run
    as the case runs it (``accel``'s precision and memory format; compiled in
    ``compile_mode`` unless it is None)."""
    was_training = model.training
    model.eval()
    forward = torch.compile(model, mode=compile_mode) if compile_mode else model
    throughput = forward_rate(forward, input_shape, batch_size, accel)
    latency_ms = 1000.0 / forward_rate(forward, input_shape, 1, accel)
    model.train(was_training)
    return throughput, latency_ms


def _status_kib() -> dict[str, int]:
    with open("/proc/self/status") as fh:
        return {k: int(v) for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", fh.read())}


@dataclass
class MemoryProbe:
    """Memory a case adds to its process: the peak during the case minus what was in use when
    it started. CUDA: tensors allocated on the device (``torch.cuda.max_memory_allocated``).
    CPU on Linux: resident set size (the kernel's peak, VmHWM, reset at the start through
    ``/proc/self/clear_refs``); elsewhere the process's lifetime peak (``ru_maxrss``)."""

    device: torch.device
    start: float = 0.0
    peak_mb: float = float("nan")
    scope: str = "case"  # "case", or "process" where the platform cannot reset its peak

    def __enter__(self) -> MemoryProbe:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # resets VmHWM to the current resident set size
                self.start = _status_kib()["VmRSS"] * 1024
            except (OSError, KeyError):
                self.scope = "process"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.scope == "case":
            peak = _status_kib()["VmHWM"] * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        self.peak_mb = (peak - self.start) / 2**20


@cache
def git_sha() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(kdbench.__file__)))
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@cache
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, object]:
    """What produced the numbers: recorded in every record."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": sys.platform,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
        "kdbench_version": kdbench.__version__,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
