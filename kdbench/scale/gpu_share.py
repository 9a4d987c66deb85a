"""Several cases on one GPU: pytest-xdist workers placed on GPUs, ``--kd-cases-per-gpu`` K of
them on each, and the share of the hardware each case had, for its record.

At batch 64 the CIFAR nets leave a large GPU idle between kernel launches (docs/performance.md,
the GPU rows); K processes on one GPU fill those gaps. Worker i runs on GPU ``(i // K) % GPUs``, so
workers 0…K−1 share GPU 0, K…2K−1 GPU 1, and so on (K = 1 is the round robin of one worker per
GPU). With K > 1 each worker's CUDA caching allocator is capped at 1/K of the GPU's memory
(``torch.cuda.set_per_process_memory_fraction``): a case that needs more fails with CUDA out of
memory inside its own process, where it is recorded as an error, instead of starving the
other K − 1 cases of memory they had already been promised. CUDA contexts (≈ 0.5 GB each) lie
outside the cap.
"""

from __future__ import annotations

from typing import Any

import torch

from kdbench.registry import KdbenchError


def gpu_for_worker(worker: int, per_gpu: int, devices: int) -> int:
    """The GPU of xdist worker number ``worker`` (gw3 → 3) when ``per_gpu`` workers share
    each of ``devices`` GPUs."""
    return (worker // per_gpu) % devices


def workers_on_gpu(worker: int, workers: int, per_gpu: int, devices: int) -> int:
    """How many of the ``workers`` share the GPU of ``worker`` (itself included)."""
    gpu = gpu_for_worker(worker, per_gpu, devices)
    return sum(gpu_for_worker(w, per_gpu, devices) == gpu for w in range(workers))


def check_cases_per_gpu(per_gpu: int, workers: int, devices: int) -> None:
    """``--kd-cases-per-gpu`` K asks for exactly K × GPUs processes running cases: ``workers``
    xdist workers (``-n``), or this process alone (0 workers) when K × GPUs is 1."""
    if per_gpu < 1:
        raise KdbenchError(f"invalid --kd-cases-per-gpu {per_gpu}: must be an integer ≥ 1")
    if devices < 1:
        raise KdbenchError(
            f"--kd-cases-per-gpu {per_gpu}: no CUDA GPU is available; CPU cases "
            f"share the cores through -n and --kd-threads"
        )
    if (workers or 1) != per_gpu * devices:
        got = f"-n {workers}" if workers else "no -n"
        raise KdbenchError(
            f"--kd-cases-per-gpu {per_gpu} with {devices} GPU(s) needs "
            f"-n {per_gpu * devices} (or -n auto), got {got}"
        )


def claim_gpu(worker: int, workers: int, per_gpu: int, cap_memory: bool) -> dict[str, Any]:
    """Make this process's GPU the one of ``worker``; with ``cap_memory`` and K > 1, cap its
    allocator at 1/K of the GPU's memory. Returns the record fields of its share."""
    devices = torch.cuda.device_count()
    index = gpu_for_worker(worker, per_gpu, devices)
    torch.cuda.set_device(index)
    fraction = 1.0 / per_gpu if cap_memory and per_gpu > 1 else None
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction, index)
    return {
        "gpu_index": index,
        "workers_per_gpu": workers_on_gpu(worker, workers, per_gpu, devices),
        "gpu_memory_fraction": fraction,
    }
