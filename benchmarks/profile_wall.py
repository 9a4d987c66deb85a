"""The quick profile's wall time (``pytest suites`` in a subprocess, cold teacher cache) vs the
sum of its cases' bare-loop times. Target: ≤ 1.2.

Bare sum: the bare loop training the teacher once (kdbench trains it once too), precomputing its
train-set logits once, and training every ce / kd / mse_logits case of the run with those
logits (``_common.train_loop``). For the other losses there is no hand-written loop here: their
floor is kdbench's own ``train_s`` (training steps + per-epoch evaluation), so the ratio
credits kdbench with no overhead on them and measures only its per-case setup and measurement,
the pytest session and the suite's inference benchmarks (``suites/test_throughput.py``).
"""

from _common import (
    BARE_LOSSES,
    Bare,
    bare_teacher_seconds,
    footer,
    header,
    parser,
    run_suites,
    scratch,
)

from kdbench.results import load_records
from kdbench.run.engine import Engine
from kdbench.spec import RunSpec


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1, help="--kd-seeds (default 1; quick's own: 3)")
    p.add_argument("-k", dest="select", default=None, help="pytest -k expression to subset")
    p.add_argument("--epochs", type=int, default=None, help="--kd-epochs (default: quick's 15)")
    args = p.parse_args()
    header(args)
    pytest_args = ["--kd-seeds", str(args.seeds), "--kd-threads", str(args.threads)]
    pytest_args += ["-k", args.select] if args.select else []
    pytest_args += ["--kd-epochs", str(args.epochs)] if args.epochs else []
    cache = scratch("cache")
    run = run_suites(pytest_args, scratch("results"), cache)
    print(f"pytest suites {' '.join(pytest_args)}: wall {run.wall_s:.1f} s ({run.outcome})")

    records = load_records([run.results / "runs"])
    engine = Engine(cache_dir=cache)  # the teacher the run trained, loaded from its cache
    bare_by_teacher: dict[str, Bare] = {}
    teacher_s = bare_s = floor_s = suite_bare_cases_s = 0.0
    counts = {"bare": 0, "floor": 0, "not ok": 0}
    for record in records:
        spec = RunSpec.from_dict(record["spec"])
        if record["status"] != "ok":
            counts["not ok"] += 1
            continue
        key = engine.teachers.key(spec)
        if key not in bare_by_teacher:
            bare_by_teacher[key] = Bare.load(spec, engine)
            teacher_s += bare_teacher_seconds(spec, bare_by_teacher[key])
            teacher_s += bare_by_teacher[key].precompute_s
        if spec.loss in BARE_LOSSES:
            seconds, _ = bare_by_teacher[key].train(spec)
            bare_s += seconds
            suite_bare_cases_s += run.test_seconds[f"test_distill[{spec.name}]"]
            counts["bare"] += 1
        else:
            floor_s += record["metrics"]["train_s"]
            counts["floor"] += 1

    distill_s = sum(s for name, s in run.test_seconds.items() if name.startswith("test_distill"))
    infer_s = sum(s for name, s in run.test_seconds.items() if name.startswith("test_inference"))
    total = teacher_s + bare_s + floor_s
    print(
        f"  kdbench: {distill_s:.1f} s in {len(records)} distill tests (first one trains the "
        f"teacher), {infer_s:.1f} s in the inference benchmarks, "
        f"{run.wall_s - distill_s - infer_s:.1f} s pytest start, collection, report"
    )
    print(
        f"  bare sum {total:.1f} s = teacher {teacher_s:.1f} s + {counts['bare']} bare "
        f"ce/kd/mse_logits cases {bare_s:.1f} s + {counts['floor']} other cases at kdbench's "
        f"train_s {floor_s:.1f} s ({counts['not ok']} diverged/error records left out)"
    )
    print(f"profile wall / bare sum: {run.wall_s / total:.3f}   (target ≤ 1.2)")
    if counts["bare"]:
        print(
            f"ce/kd/mse_logits cases alone, pytest test time / bare loop: "
            f"{suite_bare_cases_s / bare_s:.3f}"
        )
    footer()


if __name__ == "__main__":
    main()
