"""Several cases at once on one device (issue 14): aggregate training samples/s and peak memory
of K = 1, 2, 4, 8 concurrent cases, each in its own process as ``pytest -n K
--kd-cases-per-gpu K`` runs them (on CUDA: the GPU claimed by ``kdbench.scale.gpu_share.claim_gpu``,
allocator capped at 1/K of its memory; torch threads per process: cores / K, the plugin's
rule), and whether every case still gets the top-1 it gets alone.

Two cases:

- ``smoke``: the smoke profile's kd case (digits, cnn_t → cnn_m, T 4, 8 epochs); its teacher is
  trained and its outputs cached by an untimed run first;
- ``cifar``: resnet32x4 → resnet8x4 under KD (T 4, α 0.9, CE 0.1) on CIFAR-100-shaped
  synthetic data (3×32×32, 100 classes, CIFAR crop + flip augmentation, so the teacher runs
  online), CRD recipe, batch 64, AMP on CUDA; the teacher has random weights, given as a
  checkpoint (speed does not depend on them), so nothing but the students trains.

A round starts K processes on copies of one case (same spec and seed); each loads data and
teacher, waits at a barrier, then runs ``Engine.distill``. Per round: the sum of the cases'
``train_throughput`` (each over its own training steps, while the others ran), divided by the
case alone (K = 1); the round's wall time from the barrier to the last case's end against K
times the case alone (how much sooner K cases are done); peak memory: the largest case's
``peak_mem_mb`` and the sum over the K (CUDA: allocator peaks; the ≈ 0.5 GB CUDA context of
each process is not in them); the top-1 of every copy against the case alone.

    python benchmarks/gpu_concurrency.py [--device cuda] [--ks 1,2,4,8] [--cases smoke,cifar]
                                         [--num-train 50000] [--num-test 10000] [--epochs 2]
                                         [--threads N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from _common import load
from gpu import ALPHA, BATCH, CE_WEIGHT, CLASSES, STUDENT, TEACHER, T
from tabulate import tabulate

from kdbench.data import load_dataset
from kdbench.matrix.profiles import PROFILES
from kdbench.models import build_model
from kdbench.run.engine import Engine
from kdbench.run.measure import cpu_name
from kdbench.scale.gpu_share import claim_gpu
from kdbench.spec import RunSpec

ROUND_TIMEOUT_S = 3600


def smoke_spec(device: str) -> RunSpec:
    specs = PROFILES.get("smoke").specs((device,), seeds=1)
    return next(s for s in specs if s.loss == "kd")


def cifar_spec(args: argparse.Namespace, ckpt: Path) -> RunSpec:
    options = (
        ("augment", True),
        ("channels", 3),
        ("num_classes", CLASSES),
        ("num_test", args.num_test),
        ("num_train", args.num_train),
        ("size", 32),
    )
    return RunSpec(
        dataset="synthetic",
        teacher=TEACHER,
        student=STUDENT,
        loss="kd",
        temperature=T,
        alpha=ALPHA,
        ce_weight=CE_WEIGHT,
        device=args.device,
        epochs=args.epochs,
        teacher_epochs=1,
        batch_size=BATCH,
        recipe="crd",
        precision="amp" if args.device == "cuda" else "fp32",
        teacher_ckpt=str(ckpt),
        dataset_options=options,
    )


def random_teacher(args: argparse.Namespace, folder: Path) -> Path:
    """resnet32x4 with random weights, saved as a checkpoint (built on the CPU: this process
    leaves the GPU to the cases)."""
    data = load_dataset(
        "synthetic", channels=3, size=32, num_classes=CLASSES, num_train=64, num_test=64
    )
    torch.manual_seed(0)
    path = folder / "teacher.pt"
    torch.save(build_model(TEACHER, CLASSES, data.input_shape).state_dict(), path)
    return path


def case_process(
    worker: int, k: int, spec: RunSpec, cache: str, threads: int, barrier, results
) -> None:
    """One case, as xdist worker ``worker`` of a ``-n K --kd-cases-per-gpu K`` run."""
    try:
        torch.set_num_threads(threads)
        share = claim_gpu(worker, k, k, cap_memory=True) if spec.device == "cuda" else {}
        engine = Engine(cache_dir=cache)
        engine.data(spec)
        engine.teachers.get(spec)
        barrier.wait()
        start = time.monotonic()
        metrics = engine.distill(spec).metrics
        results.put(
            {
                "worker": worker,
                "start": start,
                "end": time.monotonic(),
                **share,
                **{m: metrics[m] for m in ("top1", "train_throughput", "peak_mem_mb")},
            }
        )
    except Exception as exc:  # CUDA out of memory included: the round reports it
        barrier.abort()
        results.put(
            {
                "worker": worker,
                "error": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
            }
        )


def run_round(spec: RunSpec, k: int, cache: str, threads: int) -> list[dict]:
    """K processes on copies of ``spec``, started together; their results."""
    ctx = mp.get_context("spawn")  # children own CUDA; this process never initialises it
    barrier, results = ctx.Barrier(k), ctx.Queue()
    procs = [
        ctx.Process(target=case_process, args=(i, k, spec, cache, threads, barrier, results))
        for i in range(k)
    ]
    for p in procs:
        p.start()
    out = []
    try:
        for _ in range(k):
            out.append(results.get(timeout=ROUND_TIMEOUT_S))
    except queue.Empty:
        out.append({"error": f"no result within {ROUND_TIMEOUT_S} s"})
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cpu checks that the script runs (2 cores cannot show the GPU effect)",
    )
    p.add_argument("--ks", default="1,2,4,8", help="concurrent cases per round (1,2,4,8)")
    p.add_argument("--cases", default="smoke,cifar", help="smoke, cifar or both (both)")
    p.add_argument("--num-train", type=int, default=50_000, help="cifar: training images")
    p.add_argument("--num-test", type=int, default=10_000, help="cifar: test images")
    p.add_argument("--epochs", type=int, default=2, help="cifar: epochs per case (2)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: cores / K, as the plugin)",
    )
    args = p.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    if 1 not in ks or min(ks) < 1:
        p.error(f"--ks {args.ks}: positive counts including 1 (the case alone)")
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/gpu_concurrency.py: no CUDA GPU here (--device cpu runs it as a check)",
            file=sys.stderr,
        )
        return 2
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.cuda.device_count()} GPU(s); device {args.device}"
    )
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="kdbench-concurrency-") as tmp:
        cache = str(Path(tmp) / "cache")
        specs = {
            "smoke": smoke_spec(args.device),
            "cifar": cifar_spec(args, random_teacher(args, Path(tmp))),
        }
        for name in args.cases.split(","):
            spec = specs[name]
            if spec.teacher_ckpt is None:
                run_round(spec, 1, cache, 1)  # untimed: teacher and its outputs cached
            rows, alone = [], None
            for k in sorted(ks):
                threads = args.threads or max(1, (os.cpu_count() or 1) // k)
                out = run_round(spec, k, cache, threads)
                errors = [r["error"] for r in out if "error" in r]
                if errors:
                    rows.append([k, threads, f"ERROR: {errors[0]}"])
                    print(f"  {name} K={k}: {errors[0]}", flush=True)
                    if k == 1:
                        break  # nothing to compare with
                    continue
                rate = sum(r["train_throughput"] for r in out)
                wall = max(r["end"] for r in out) - min(r["start"] for r in out)
                if k == 1:
                    alone = {"rate": rate, "wall": wall, "top1": out[0]["top1"]}
                same = sum(r["top1"] == alone["top1"] for r in out)
                gpus = sorted({r["gpu_index"] for r in out}) if args.device == "cuda" else "-"
                rows.append(
                    [
                        k,
                        threads,
                        gpus,
                        rate,
                        rate / alone["rate"],
                        wall,
                        k * alone["wall"] / wall,
                        max(r["peak_mem_mb"] for r in out),
                        sum(r["peak_mem_mb"] for r in out),
                        f"{same}/{k}",
                    ]
                )
                print("  " + " | ".join(map(str, [name, *rows[-1]])), flush=True)
            print()
            print(
                f"{name}: {spec.name}, {spec.epochs} epochs; top-1 alone "
                f"{alone['top1'] if alone else float('nan'):.2f} %"
            )
            print(
                tabulate(
                    rows,
                    headers=[
                        "K",
                        "threads/process",
                        "GPU",
                        "Σ train samples/s",
                        "÷ K=1",
                        "round wall s",
                        "K·wall(K=1) / wall",
                        "peak MiB, largest case",
                        "peak MiB, Σ",
                        "top-1 = alone",
                    ],
                    floatfmt=(None, None, None, ",.0f", ".2f", ".1f", ".2f", ",.0f", ",.0f"),
                    tablefmt="github",
                )
            )
            print()
    print(f"load average at end: {load()} (> {os.cpu_count()} means others shared the cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
