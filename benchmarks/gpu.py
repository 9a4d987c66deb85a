"""GPU speed of one KD case (issue 6): resnet32x4 → resnet8x4 under KD (T = 4, α = 0.9, CE
weight 0.1) on CIFAR-100-shaped synthetic data (3×32×32, 100 classes, 50,000 training images,
CIFAR crop + flip augmentation, so the teacher runs online on every batch as on real CIFAR-100),
CRD recipe (SGD momentum 0.9, weight decay 5e-4, lr 0.05, batch 64).

1. A bare PyTorch loop (kdbench's models and augmentation, nothing else) per setting: fp32;
   fp32 + channels_last; AMP (bf16 autocast, or fp16 with a grad scaler where bf16 is missing);
   AMP + channels_last; AMP + channels_last + torch.compile of the student.
2. kdbench itself (``Engine.distill``) at precision fp32, amp and amp + compile (on CUDA kdbench
   puts conv nets in channels_last), each divided by its bare twin; and amp once without
   augmentation, where the teacher-output cache replaces the teacher's forward pass.

Each run trains ``--epochs`` epochs (default 2) timed as kdbench times them (training steps
only); samples/s is over all epochs, for compiled runs over all but the first; the first epoch's
excess over the others is the compile (or cuDNN warm-up) cost. Peak memory is the CUDA
allocator's peak from the student's creation on (the data set, 0.6 GB at 50,000 images, is
resident throughout); kdbench's is its record's ``peak_mem_mb``, the whole case: training, the
per-epoch evaluation at batch 1024 and the inference-speed measurement. The teacher has random
weights (speed does not depend on them); kdbench gets the same weights through ``teacher_ckpt``,
so no teacher is trained.

    python benchmarks/gpu.py [--num-train 50000] [--num-test 10000] [--epochs 2]
                             [--no-compile] [--fp32-only] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import kd_term
from tabulate import tabulate

from kdbench.data import load_dataset
from kdbench.models import build_model
from kdbench.recipes import RECIPES
from kdbench.run import measure
from kdbench.run.accel import Accel
from kdbench.run.engine import Engine
from kdbench.run.loop import FitStats
from kdbench.spec import RunSpec

TEACHER, STUDENT, CLASSES, BATCH = "resnet32x4", "resnet8x4", 100, 64
T, ALPHA, CE_WEIGHT = 4.0, 0.9, 0.1


@dataclass(frozen=True)
class Setting:
    name: str
    amp: bool
    channels_last: bool
    compile: bool = False


FP32, FP32_CL, AMP, AMP_CL, AMP_CL_COMPILE = (
    Setting("fp32", False, False),
    Setting("fp32 + channels_last", False, True),
    Setting("AMP", True, False),
    Setting("AMP + channels_last", True, True),
    Setting("AMP + channels_last + compile", True, True, compile=True),
)
# kdbench's runs (precision, compile; teacher online or cached); on CUDA kdbench always puts
# conv nets in channels_last, so their bare twins are the channels_last settings there
KDBENCH = ((FP32_CL, True), (AMP_CL, True), (AMP_CL, False), (AMP_CL_COMPILE, True))


def knobs(setting: Setting) -> tuple[bool, bool, bool]:
    return setting.amp, setting.channels_last, setting.compile


def bare_run(
    setting: Setting, teacher: torch.nn.Module, data, epochs: int, device: torch.device
) -> tuple[FitStats, float]:
    """A hand-written KD loop; the teacher runs on every (augmented) batch. Timed per epoch
    like kdbench's loop (steps only, one sync at each end). Returns the stats and the memory
    the run added (MiB, ``measure.MemoryProbe``, as kdbench's ``peak_mem_mb``)."""
    base = Accel.for_spec("amp" if setting.amp else "fp32", device)
    accel = Accel(device, base.dtype, setting.channels_last, base.scaler)
    with measure.MemoryProbe(device) as memory:
        torch.manual_seed(0)
        student = accel.prepare(build_model(STUDENT, CLASSES, data.input_shape).to(device))
        teacher = accel.prepare(teacher)
        forward = torch.compile(student) if setting.compile else student
        recipe = RECIPES.get("crd")
        optimizer = torch.optim.SGD(
            student.parameters(),
            lr=recipe.lr_for(STUDENT),
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        generator = torch.Generator().manual_seed(0)
        stats = FitStats(epochs=epochs)
        student.train()
        for _ in range(epochs):
            measure.synchronize(device)
            start = time.perf_counter()
            seen = 0
            for x, y, _ in data.train_batches(BATCH, generator):
                x = accel.batch(x)
                with accel.autocast():
                    with torch.no_grad():
                        t = teacher(x)
                    s = forward(x)
                    loss = CE_WEIGHT * F.cross_entropy(s, y) + ALPHA * kd_term(s, t, T)
                accel.step(loss, optimizer)
                seen += len(y)
            measure.synchronize(device)
            stats.epoch_seconds.append(time.perf_counter() - start)
            stats.epoch_samples.append(seen)
    return stats, memory.peak_mb


def kdbench_run(
    engine: Engine, setting: Setting, epochs: int, ckpt: str, options: tuple, device: torch.device
) -> dict:
    spec = RunSpec(
        dataset="synthetic",
        teacher=TEACHER,
        student=STUDENT,
        loss="kd",
        temperature=T,
        alpha=ALPHA,
        ce_weight=CE_WEIGHT,
        device=device.type,
        epochs=epochs,
        teacher_epochs=1,
        batch_size=BATCH,
        recipe="crd",
        precision="amp" if setting.amp else "fp32",
        compile=setting.compile,
        teacher_ckpt=ckpt,
        dataset_options=options,
    )
    return engine.distill(spec).metrics


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-train", type=int, default=50_000)
    p.add_argument("--num-test", type=int, default=10_000)
    p.add_argument(
        "--epochs",
        type=int,
        default=2,
        help="epochs per run (default 2: the first one warms up, and kdbench's "
        "compile_s is the first epoch's excess over the rest)",
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    p.add_argument(
        "--fp32-only",
        action="store_true",
        help="only the fp32 runs (the CPU side of a CPU vs CUDA comparison)",
    )
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cpu only checks that the script runs (peak memory is then the RSS)",
    )
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py: no CUDA GPU here (--device cpu runs it as a check)", file=sys.stderr
        )
        return 2
    device = torch.device(args.device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(
            f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB; torch "
            f"{torch.__version__}, CUDA {torch.version.cuda}, bf16 supported: "
            f"{torch.cuda.is_bf16_supported()}"
        )
    else:
        print(f"CPU: {measure.cpu_name()}, torch {torch.__version__}")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    options = (
        ("augment", True),
        ("channels", 3),
        ("num_classes", CLASSES),
        ("num_test", args.num_test),
        ("num_train", args.num_train),
        ("size", 32),
    )
    cached = tuple((k, False if k == "augment" else v) for k, v in options)
    data = load_dataset("synthetic", **dict(options)).to(device)
    torch.manual_seed(0)
    teacher = build_model(TEACHER, CLASSES, data.input_shape).to(device).eval()
    teacher.requires_grad_(False)
    runs = [
        *((s, None) for s in (FP32, FP32_CL, AMP, AMP_CL)),  # compiling goes last
        *((s, online) for s, online in KDBENCH if not s.compile),
        *([] if args.no_compile else [(AMP_CL_COMPILE, None), (AMP_CL_COMPILE, True)]),
    ]
    runs = [(s, online) for s, online in runs if not (args.fp32_only and s.amp)]

    rows, bare = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "teacher.pt")
        torch.save(teacher.state_dict(), ckpt)
        engine = Engine(cache_dir=Path(tmp) / "cache")
        for setting, online in runs:
            if online is None:  # the bare loop
                stats, peak_mb = bare_run(setting, teacher, data, args.epochs, device)
                bare[knobs(setting)] = stats.throughput(skip_first=setting.compile)
                rows.append(
                    [
                        f"bare loop, {setting.name}",
                        bare[knobs(setting)],
                        peak_mb,
                        stats.compile_seconds(),
                        None,
                    ]
                )
            else:
                m = kdbench_run(
                    engine, setting, args.epochs, ckpt, options if online else cached, device
                )
                flags = f"--kd-precision {'amp' if setting.amp else 'fp32'}" + (
                    " --kd-compile" if setting.compile else ""
                )
                how = "teacher online" if online else "no augmentation: teacher-output cache"
                twin = bare.get(
                    (setting.amp, Accel.for_spec("fp32", device).channels_last, setting.compile)
                )
                rows.append(
                    [
                        f"kdbench {flags} ({how})",
                        m["train_throughput"],
                        m["peak_mem_mb"],
                        m.get("compile_s"),
                        twin and m["train_throughput"] / twin,
                    ]
                )
            print("  " + " | ".join(map(str, rows[-1])), flush=True)  # survives a timeout

    print()
    print(
        f"{STUDENT} ← {TEACHER}, KD T={T:g}, batch {BATCH}, {args.num_train:,} "
        f"CIFAR-100-shaped images, {args.epochs} epochs per run; throughput over all epochs "
        f"(compiled runs: all but the first); first-epoch excess = compile / warm-up cost; "
        f"kdbench's peak memory includes its evaluation at batch 1024"
    )
    print(
        tabulate(
            rows,
            headers=[
                "run",
                "train samples/s",
                "peak MiB",
                "first-epoch excess s",
                "÷ bare loop, same setting",
            ],
            floatfmt=(None, ",.0f", ",.0f", ".1f", ".3f"),
            tablefmt="github",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
