"""channels_last and ``torch.compile`` on the CPU, per model family: is either worth turning on
for CPU cases? A bare PyTorch training step (forward, cross-entropy, backward, SGD with
momentum) on one fixed batch at the model's native input, four ways: eager with the default
memory format (the floor: what kdbench runs on the CPU today), eager channels_last, compiled
(``torch.compile``, inductor) and compiled channels_last. The four run in turns, ``--rounds``
times, each round ``--steps`` steps after ``--warmup`` untimed ones (compilation happens in the
first warm-up step and is timed apart).

Printed per model: ms per step of each side (median over rounds) and its ratio to eager (> 1:
faster than eager), and the one-time compile seconds.

    python benchmarks/cpu_formats.py --models fmnist_xs fmnist_m fmnist_t cnn_m resnet8
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from _common import footer, header, median, parser

from kdbench.models import build_model

SIDES = ("eager", "eager channels_last", "compiled", "compiled channels_last")


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, compiled: bool):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["fmnist_xs", "fmnist_m", "fmnist_t"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    header(args)
    for name in args.models:
        shape = build_model(name, 10, (1, 28, 28)).native_input
        torch.manual_seed(0)
        base = build_model(name, 10, shape)
        steps, compile_s = {}, {}
        for side in SIDES:
            model = build_model(name, 10, shape)
            model.load_state_dict(base.state_dict())
            x = torch.randn(args.batch, *shape)
            y = torch.randint(0, 10, (args.batch,))
            if "channels_last" in side:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            steps[side] = step_fn(model, x, y, side.startswith("compiled"))
            start = time.perf_counter()
            for _ in range(args.warmup):
                steps[side]()
            compile_s[side] = time.perf_counter() - start
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        for _ in range(args.rounds):
            for side in SIDES:
                start = time.perf_counter()
                for _ in range(args.steps):
                    steps[side]()
                times[side].append((time.perf_counter() - start) / args.steps * 1000)
        eager = median(times["eager"])
        cells = [
            f"{side} {median(times[side]):.2f} ms ({eager / median(times[side]):.2f}×)"
            for side in SIDES
        ]
        print(
            f"{name} {'×'.join(map(str, shape))} batch {args.batch}: "
            + " · ".join(cells)
            + f" · compile {compile_s['compiled']:.1f} s",
            flush=True,
        )
    footer()


if __name__ == "__main__":
    main()
