"""Accuracy, agreement, size and speed of a trained model.

Timing rules: warm-up first; CUDA synchronized around every timed region; throughput and
latency are medians over repeated rounds; the thread count is recorded in the env.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from functools import lru_cache
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import kdbench
from kdbench.data.base import DataSource


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def predict(model: nn.Module, data: DataSource, batch_size: int) -> torch.Tensor:
    """Test-set logits (N, classes), in eval mode, at the given batch size."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(x) for x, _, _ in data.test_batches(batch_size)])
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


def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """Forward FLOPs of one sample, counted by torch.utils.flop_counter (a multiply-add = 2)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int = 3,
                   rounds: int = 15, budget_s: float = 1.0) -> float:
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
def inference_speed(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
                    device: torch.device) -> tuple[float, float]:
    """(samples/s at ``batch_size``, latency in ms at batch 1), medians of rounds."""
    was_training = model.training
    model.eval()
    batch = torch.randn(batch_size, *input_shape, device=device)
    single = batch[:1].clone()
    throughput = batch_size / median_seconds(lambda: model(batch), device)
    latency_ms = 1000.0 * median_seconds(lambda: model(single), device)
    model.train(was_training)
    return throughput, latency_ms


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated by tensors since the case's reset. CPU: the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@lru_cache(maxsize=None)
def git_sha() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(kdbench.__file__)))
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=None)
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
