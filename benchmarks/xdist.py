"""``pytest suites -n 2`` vs ``-n 0`` wall time on a subset of a profile at the plugin's default
of one torch thread per process, and what a second thread per process does: ``-n 0`` at 2
threads, ``-n 2`` at 2 threads per worker (oversubscribed). These figures chose the default.

The teacher cache is built by one untimed run first, so every timed run only trains students;
runs are interleaved ``--repeats`` times and medians compared. The sum of the tests' own times
(junit) beside each wall shows what pytest start-up, collection and workers cost on top.
``--load N`` keeps N other processes spinning on the CPU during the timed runs: a machine that
others share, where the default threads per process were chosen.
"""

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from _common import footer, header, median, parser, run_suites, scratch

SERIAL, PARALLEL = "-n 0 (1 thread)", "-n 2 (1 thread per worker)"
SERIAL_2, OVERSUBSCRIBED = "-n 0 --kd-threads 2", "-n 2 --kd-threads 2"
CONFIGS = {  # name → extra pytest arguments
    SERIAL: ["-n", "0"],
    PARALLEL: ["-n", "2"],
    SERIAL_2: ["-n", "0", "--kd-threads", "2"],
    OVERSUBSCRIBED: ["-n", "2", "--kd-threads", "2"],
}


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
    """``processes`` Python processes spinning on the CPU while the block runs."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick", help="--kd-profile (default quick)")
    p.add_argument("--seeds", type=int, default=1, help="--kd-seeds (default 1)")
    p.add_argument(
        "-k",
        dest="select",
        default="ce-cpu or (kd-T and not dkd and not ctkd)",
        help="pytest -k expression (default: the ce and kd cases, 10 per seed)",
    )
    p.add_argument("--repeats", type=int, default=2, help="interleaved repetitions (default 2)")
    p.add_argument(
        "--load",
        type=int,
        default=0,
        help="processes spinning on the CPU during the timed runs (default 0: idle)",
    )
    args = p.parse_args()
    header(args)
    base = ["--kd-profile", args.profile, "--kd-seeds", str(args.seeds), "-k", args.select]
    cache = scratch("cache")
    warm = run_suites([*base, "-n", "0"], scratch("results"), cache)
    print(f"untimed warm-up (teacher cache): {warm.wall_s:.1f} s, {warm.outcome}")
    walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
    tests: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with busy(args.load):
        for _ in range(args.repeats):
            for name, extra in CONFIGS.items():
                run = run_suites([*base, *extra], scratch("results"), cache)
                walls[name].append(run.wall_s)
                tests[name].append(sum(run.test_seconds.values()))
    print(f"other processes spinning during the timed runs: {args.load}")
    for name, values in walls.items():
        print(
            f"  pytest suites {' '.join(base)} {name}: wall median {median(values):.1f} s "
            f"({', '.join(f'{v:.1f}' for v in values)}); sum of test times "
            f"{median(tests[name]):.1f} s"
        )

    def ratio(a: str, b: str) -> float:
        return median(walls[a]) / median(walls[b])

    print(f"-n 2 / -n 0, 1 thread per process:       {ratio(PARALLEL, SERIAL):.3f}")
    print(f"-n 0: 2 threads / 1 thread:               {ratio(SERIAL_2, SERIAL):.3f}")
    print(f"-n 2: 2 threads per worker / 1 per worker: {ratio(OVERSUBSCRIBED, PARALLEL):.3f}")
    footer()


if __name__ == "__main__":
    main()
