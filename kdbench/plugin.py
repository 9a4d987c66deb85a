"""The pytest plugin: ``--kd-*`` options, markers, the ``kd_spec`` parametrization and the
``kd_case`` fixture, the end-of-session leaderboard and the regression gate.

The plugin is thin: the session state lives in ``config.stash``; fixtures report through it;
all training happens in ``kdbench.engine``. Everything a user can get wrong is checked before
any training: options at configure time, data and teacher checkpoints at collection.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from kdbench import measure, results
from kdbench.checkpoints import load_checkpoint
from kdbench.engine import COMPILE_MODES, Diverged, Engine
from kdbench.gpu_share import check_cases_per_gpu, claim_gpu
from kdbench.losses import LOSSES, NotApplicable
from kdbench.models import build_model
from kdbench.registry import KdbenchError
from kdbench.spec import DEVICES, PRECISIONS, RunSpec
from kdbench.user_profiles import find_profiles, project_profiles

DEVICE_CHOICES = (*DEVICES, "all")
# Markers. `pytest -k` matches marker names as substrings too, so none contains a loss name:
# `-k crd` selects the crd cases and nothing else.
MARKERS = (
    "pair_case: a teacher/student case generated from --kd-profile",
    "cpu: a case that runs on the CPU",
    "cuda: a case that needs a CUDA GPU (skipped without one)",
    "logits_only: a distillation case whose loss uses only logits",
    "hidden_layers: a distillation case whose loss uses intermediate features",
    "student_alone: the ce baseline (the student trained without a teacher)",
)


@dataclass
class KdSession:
    """What one pytest process knows about the benchmark run."""

    config: pytest.Config
    specs: list[RunSpec]
    results_dir: Path
    run_file: Path
    baseline: list[dict[str, Any]] | None = None
    engine: Engine | None = None
    comparison: Any = None
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # --kd-resume: ok records
    workers: int = 1  # processes running cases at once (xdist workers)
    gpu_share: dict[str, Any] | None = None  # an xdist worker's GPU (kdbench.gpu_share)
    unsaved: list[dict[str, Any]] = field(default_factory=list)  # records a write failed for
    write_error: str | None = None

    def get_engine(self) -> Engine:
        if self.engine is None:
            opt = self.config.getoption
            echo = self.config.getoption("capture") == "no"
            self.engine = Engine(
                cache_dir=opt("kd_cache"), data_root=opt("kd_data_root"),
                download=opt("kd_download"), compile_mode=opt("kd_compile_mode"),
                progress=(lambda message: print(f"[kdbench] {message}", flush=True)) if echo
                else None)
        return self.engine

    def share(self, device: str) -> dict[str, Any]:
        """The hardware share a case on ``device`` had, for its record's env."""
        if device != "cuda":
            return {"workers": self.workers}
        return {"workers": self.workers, **(self.gpu_share or {
            "gpu_index": torch.cuda.current_device(), "workers_per_gpu": 1,
            "gpu_memory_fraction": None})}

    @property
    def leaderboard_file(self) -> Path:
        return self.run_file.with_suffix(".md")


SESSION = pytest.StashKey[KdSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kdbench", "kdbench: knowledge-distillation benchmark")
    group.addoption("--kd-profile", default="quick", metavar="NAME",
                    help="matrix of cases to run (`kdbench list profiles`); default: quick")
    group.addoption("--kd-device", default="all", choices=DEVICE_CHOICES,
                    help="devices to run cases on; CUDA cases skip without a GPU; default: all")
    group.addoption("--kd-seeds", type=int, default=None, metavar="N",
                    help="seeds per case (0 … N−1); default: the profile's (3 for quick)")
    group.addoption("--kd-first-seed", type=int, default=0, metavar="S",
                    help="seeds S … S+N−1 instead of 0 … N−1: the same configurations on fresh "
                         "seeds (a second run for the gate's false-alarm rate); default 0")
    group.addoption("--kd-epochs", type=int, default=None, metavar="N",
                    help="student epochs per case; default: the profile's")
    group.addoption("--kd-results", default="results", metavar="DIR",
                    help="runs/<run>.jsonl (records) and runs/<run>.md (leaderboard) go here; "
                         "default: results")
    group.addoption("--kd-cache", default=os.environ.get("KDBENCH_CACHE", ".kdbench_cache"),
                    metavar="DIR", help="teacher cache (env KDBENCH_CACHE); default: .kdbench_cache")
    group.addoption("--kd-data-root", default=os.environ.get("KDBENCH_DATA"), metavar="DIR",
                    help="where torchvision data sets live (env KDBENCH_DATA)")
    group.addoption("--kd-download", action="store_true",
                    help="allow downloading torchvision data sets into --kd-data-root")
    group.addoption("--kd-threads", type=int, default=None, metavar="N",
                    help="torch threads per process; default 1 (use the cores with -n: a second "
                         "thread was up to 5× slower on a shared machine)")
    group.addoption("--kd-precision", default="auto", choices=("auto", *PRECISIONS),
                    help="auto: AMP (bf16, else fp16 + grad scaler) on CUDA, fp32 on CPU")
    group.addoption("--kd-compile", action="store_true",
                    help="torch.compile the student; compile time is reported apart "
                         "(compile_s) and left out of train_throughput")
    group.addoption("--kd-compile-mode", default="default", choices=COMPILE_MODES,
                    help="torch.compile mode with --kd-compile (recorded in each record's "
                         "env); reduce-overhead uses CUDA graphs; default: default")
    group.addoption("--kd-cases-per-gpu", type=int, default=None, metavar="K",
                    help="K xdist workers share each GPU (run with -n K×GPUs or -n auto), each "
                         "capped at 1/K of its memory; default: one worker per GPU, round robin")
    group.addoption("--kd-teacher-ckpt", action="append", default=[], metavar="NAME=PATH",
                    help="use this checkpoint for teacher NAME instead of training it "
                         "(repeatable)")
    group.addoption("--kd-resume", action="store_true",
                    help="skip cases that already have an ok record under --kd-results")
    group.addoption("--kd-baseline", default=None, metavar="PATH",
                    help="compare this run to a baseline (records file or folder) and fail on "
                         "a regression or on baseline cases this run lacks")
    group.addoption("--kd-allow-missing", action="store_true",
                    help="with --kd-baseline: decide only on the cases that ran (a -k or shard "
                         "subset); baseline cases not run are listed, not failed")


def _xdist_workers(config: pytest.Config) -> int:
    """xdist workers of this session (0 without xdist), as the controller sees them."""
    if config.getoption("dist", "no") == "no":
        return 0
    return len(config.getoption("tx", None) or [])


def _check_gpu_options(config: pytest.Config) -> None:
    per_gpu = config.getoption("kd_cases_per_gpu")
    if per_gpu is not None and not hasattr(config, "workerinput"):
        check_cases_per_gpu(per_gpu, _xdist_workers(config), torch.cuda.device_count())
    mode = config.getoption("kd_compile_mode")
    if mode != "default" and not config.getoption("kd_compile"):
        raise KdbenchError(f"--kd-compile-mode {mode} applies to compiled students: add "
                           f"--kd-compile")


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` with ``--kd-cases-per-gpu K`` starts K × GPUs workers."""
    per_gpu = config.getoption("kd_cases_per_gpu")
    if per_gpu is None or per_gpu < 1 or not torch.cuda.is_available():
        return None  # xdist's own count; a bad K is reported at configure
    return per_gpu * torch.cuda.device_count()


def _threads(config: pytest.Config) -> int:
    """One torch thread per process unless asked (use the cores with ``-n``): measured on this
    project's 2-core machine, a second intra-op thread was 5.3× slower while one other process
    ran (quick cases, -n 0: 122 s vs 23 s; 2 threads in each of 2 workers: 7.9× slower than 1),
    and gained nothing on the digits models when idle (benchmarks/xdist.py, README)."""
    requested = config.getoption("kd_threads")
    if requested is not None and requested < 1:
        raise KdbenchError(f"invalid --kd-threads {requested}: must be an integer ≥ 1")
    return requested or 1


def _run_file_name() -> str:
    """``<UTC time>_<git sha>_<pid>.jsonl``; the time to the microsecond, so that two sessions of
    one process (pytester runs in-process) started within a second get files of their own."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}_{measure.git_sha()}_{os.getpid()}.jsonl"


def _project_folders(config: pytest.Config) -> tuple[Path, Path]:
    """Where the project's pyproject.toml is looked for: from pytest's rootdir, then from the
    folder pytest ran in (an existing folder given as an option value, ``--kd-cache DIR``, can
    move the rootdir above the project: plugin options are unknown when pytest sets it)."""
    return config.rootpath, config.invocation_params.dir


def _specs(config: pytest.Config) -> list[RunSpec]:
    pyproject = find_profiles(*_project_folders(config))  # the shipped ones and the project's
    profile = project_profiles(pyproject).get(config.getoption("kd_profile"))
    device = config.getoption("kd_device")
    devices = DEVICES if device == "all" else (device,)
    epochs = config.getoption("kd_epochs")
    if epochs is not None and epochs < 1:
        raise KdbenchError(f"invalid --kd-epochs {epochs}: must be an integer ≥ 1")
    seeds = config.getoption("kd_seeds")
    if seeds is not None and seeds < 1:
        raise KdbenchError(f"invalid --kd-seeds {seeds}: must be an integer ≥ 1")
    first_seed = config.getoption("kd_first_seed")
    if first_seed < 0:
        raise KdbenchError(f"invalid --kd-first-seed {first_seed}: must be an integer ≥ 0")
    if device == "cuda" and not torch.cuda.is_available():
        raise KdbenchError("--kd-device cuda, but no CUDA GPU is available: "
                           "use --kd-device cpu or all (CUDA cases then skip)")
    return profile.specs(devices, seeds=seeds, epochs=epochs, first_seed=first_seed,
                         precision=config.getoption("kd_precision"),
                         compile=config.getoption("kd_compile"),
                         teacher_ckpts=_teacher_ckpts(config.getoption("kd_teacher_ckpt"),
                                                      profile))


def _teacher_ckpts(items: list[str], profile: Any) -> dict[str, str]:
    teachers = sorted({t for t, _ in profile.pairs})
    ckpts = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in teachers:
            raise KdbenchError(f"invalid --kd-teacher-ckpt {item!r}: use NAME=PATH with NAME one "
                               f"of the profile's teachers: {', '.join(teachers)}")
        if not Path(path).is_file():
            raise KdbenchError(f"--kd-teacher-ckpt {item!r}: no file at {path!r}")
        ckpts[name] = str(Path(path).resolve())
    return ckpts


def _check_cache(path: str) -> None:
    """The cache must be a folder or creatable as one (nothing is created here)."""
    existing = next(p for p in (Path(path).absolute(), *Path(path).absolute().parents)
                    if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise KdbenchError(f"--kd-cache {path!r}: {existing} is "
                           f"{'not writable' if existing.is_dir() else 'a file'}: choose a "
                           f"writable folder with --kd-cache or KDBENCH_CACHE (it holds teacher "
                           f"checkpoints and teacher outputs)")


def load_baseline(path: str) -> list[dict[str, Any]]:
    """The baseline's records, checked before any training: a file or folder of records, none
    corrupt, the current schema."""
    try:
        loaded = results.read([path])
    except KdbenchError:
        raise KdbenchError(f"--kd-baseline {path!r}: no such file or folder") from None
    except OSError as exc:
        raise KdbenchError(f"--kd-baseline {path!r}: cannot read it ({exc.strerror})") from None
    if loaded.bad_lines:
        raise KdbenchError(f"--kd-baseline {path!r}: {loaded.bad_lines} corrupt or torn record "
                           f"line(s): the gate cannot decide on a damaged baseline")
    if not loaded.records:
        raise KdbenchError(f"--kd-baseline {path!r}: no records in it")
    schemas = sorted({r.get("schema") for r in loaded.records}, key=str)
    if schemas != [results.SCHEMA]:
        raise KdbenchError(f"--kd-baseline {path!r}: records of schema {schemas}, this kdbench "
                           f"writes schema {results.SCHEMA}: refresh the baseline")
    return loaded.records


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        specs = _specs(config)
        threads = _threads(config)
        _check_gpu_options(config)
        _check_cache(config.getoption("kd_cache"))
        baseline = config.getoption("kd_baseline")
        baseline_records = load_baseline(baseline) if baseline else None
    except KdbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    torch.set_num_threads(threads)
    results_dir = Path(config.getoption("kd_results"))
    worker = getattr(config, "workerinput", None)
    name = worker["kd_run_file"] if worker else _run_file_name()
    kd_session = KdSession(config, specs, results_dir, results_dir / "runs" / name,
                           baseline_records)
    if config.getoption("kd_resume") and (results_dir / "runs").is_dir():
        kd_session.done = {r["case_id"]: r for r in results.load_records([results_dir / "runs"])
                           if r["status"] in ("ok", "n/a")}
    config.stash[SESSION] = kd_session
    if worker:
        kd_session.workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        if torch.cuda.is_available():  # K workers per GPU (default 1: round robin)
            per_gpu = config.getoption("kd_cases_per_gpu")
            kd_session.gpu_share = claim_gpu(
                int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]), kd_session.workers,
                per_gpu or 1, cap_memory=per_gpu is not None)
    else:
        signal.signal(signal.SIGTERM, _interrupt)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "kdbench-xdist")


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends the session like Ctrl-C: finished cases are on disk and summarized."""
    raise KeyboardInterrupt(f"signal {signum}")


class _XdistHooks:
    """Workers append to the controller's run file (one file per session)."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["kd_run_file"] = node.config.stash[SESSION].run_file.name


def _marks(spec: RunSpec) -> list[pytest.MarkDecorator]:
    loss = LOSSES.get(spec.loss)
    kind = (pytest.mark.student_alone if not loss.needs_teacher else
            pytest.mark.logits_only if set(loss.taps) <= {"logits"} else
            pytest.mark.hidden_layers)
    return [pytest.mark.pair_case, kind, *_device_marks(spec.device)]


def _device_marks(device: str) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, device)]
    if device == "cuda":
        marks.append(pytest.mark.skipif(not torch.cuda.is_available(),
                                        reason="CUDA case: no CUDA GPU on this machine"))
    return marks


@dataclass(frozen=True)
class ModelCase:
    """One model of a profile on one device, for the inference benchmarks."""

    dataset: str
    dataset_options: tuple
    model: str
    device: str

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model}-{self.device}"


def model_cases(specs: list[RunSpec]) -> list[ModelCase]:
    seen = {ModelCase(s.dataset, s.dataset_options, m, s.device): None
            for s in specs for m in (s.teacher, s.student)}
    return list(seen)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    specs = metafunc.config.stash[SESSION].specs
    if "kd_spec" in metafunc.fixturenames:
        metafunc.parametrize(
            "kd_spec", [pytest.param(s, id=s.name, marks=_marks(s)) for s in specs])
    if "kd_model" in metafunc.fixturenames:
        metafunc.parametrize("kd_model", [
            pytest.param(m, id=m.name, marks=_device_marks(m.device)) for m in model_cases(specs)])


def _case_spec(item: pytest.Item) -> Any:
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    return params.get("kd_spec", params.get("kd_model"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Fail before any training when records could not be written, data are missing or
    unreadable, or a teacher checkpoint does not fit its architecture; with
    ``--dist loadgroup``, keep a teacher's cases on one worker."""
    specs = [s for s in map(_case_spec, items) if s is not None]
    if not specs:
        return
    kd_session = config.stash[SESSION]
    try:
        results.check_writable(kd_session.results_dir / "runs")
        engine = kd_session.get_engine()
        for dataset, options in {(s.dataset, s.dataset_options) for s in specs}:
            engine.host_data(dataset, options)
        for spec in {(s.teacher, s.teacher_ckpt, s.dataset, s.dataset_options): s
                     for s in specs if isinstance(s, RunSpec) and s.teacher_ckpt}.values():
            data = engine.host_data(spec.dataset, spec.dataset_options)
            with torch.device("meta"):
                model = build_model(spec.teacher, data.num_classes, data.input_shape)
            load_checkpoint(spec.teacher_ckpt, spec.teacher, model.to_empty(device="cpu"))
    except KdbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if getattr(config.option, "loadgroup", False):  # set on xdist workers by --dist loadgroup
        for item in items:  # xdist's scheduler reads the group after "@" (xdist_group's way)
            spec = _case_spec(item)
            if isinstance(spec, RunSpec):
                item._nodeid = f"{item.nodeid}@{spec.dataset}-{spec.teacher}-{spec.device}"


@pytest.fixture
def kd_session(request: pytest.FixtureRequest) -> KdSession:
    return request.config.stash[SESSION]


@pytest.fixture
def kd_case(request: pytest.FixtureRequest, kd_session: KdSession) -> Callable[[RunSpec], dict]:
    """``kd_case(spec)`` trains and measures one case, stores its record and returns it.

    Not applicable → recorded as ``n/a`` with the reason, then skipped; diverged → recorded as
    such and xfailed; any other error → recorded with its message, then re-raised so the test
    fails.
    """

    def run(spec: RunSpec) -> dict[str, Any]:
        if spec.case_id in kd_session.done:
            pytest.skip(f"resumed: {spec.name} already has a record "
                        f"({kd_session.done[spec.case_id]['status']})")
        engine = kd_session.get_engine()
        env = {**measure.environment(torch.device(spec.device)), **kd_session.share(spec.device),
               "compile_mode": engine.compile_mode_for(spec)}
        try:
            outcome = engine.distill(spec)
        except NotApplicable as exc:
            _store(kd_session, results.make_record(spec, "n/a", {}, env, reason=str(exc)))
            pytest.skip(f"N/A: {exc}")
        except Diverged as exc:
            record = results.make_record(spec, "diverged", {
                "diverged_epoch": exc.epoch, "last_finite_loss": exc.last_finite_loss}, env)
        except Exception as exc:  # CUDA out of memory included: recorded, the session goes on
            message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            # pytest keeps the failure's traceback (sys.last_traceback): drop its frames'
            # locals, the failed case's models and tensors, so the next case gets the memory
            traceback.clear_frames(exc.__traceback__)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            _store(kd_session, results.make_record(spec, "error", {}, env, error=message))
            raise
        else:
            record = results.make_record(spec, outcome.status, outcome.metrics, env,
                                         **outcome.info)
            request.node.user_properties.append(("kd_top1", outcome.metrics["top1"]))
            request.node.user_properties.append(("kd_train_s", outcome.metrics["train_s"]))
        _store(kd_session, record)
        if record["status"] == "diverged":
            m = record["metrics"]
            pytest.xfail(f"diverged at epoch {m['diverged_epoch']} (last finite loss "
                         f"{m['last_finite_loss']}); recorded as diverged")
        return record

    return run


def _store(kd_session: KdSession, record: dict[str, Any]) -> None:
    """Append the record; if the write fails (disk full, folder removed), keep it in memory,
    report it at the end of the session and fail the session instead of losing the case."""
    try:
        results.append_record(kd_session.run_file, record)
    except OSError as exc:
        kd_session.unsaved.append(record)
        kd_session.write_error = f"{kd_session.run_file}: {exc.strerror or exc}"


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    props = dict(getattr(report, "user_properties", ()))
    if report.when == "call" and report.passed and "kd_top1" in props:
        word = f"PASSED top1 {props['kd_top1']:.2f}% {props['kd_train_s']:.1f}s"
        return "passed", ".", (word, {"green": True})
    return None


def _session_records(kd_session: KdSession) -> tuple[list[dict[str, Any]], int]:
    """This session's records (all workers), the unsaved ones and the resumed ones: the newest
    of each case; and how many older records they superseded."""
    saved = results.read([kd_session.run_file]).records if kd_session.run_file.exists() else []
    wanted = {s.case_id for s in kd_session.specs}
    resumed = [r for cid, r in kd_session.done.items() if cid in wanted]
    return results.newest([*resumed, *saved, *kd_session.unsaved])


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or SESSION not in config.stash:
        return
    kd_session = config.stash[SESSION]
    if kd_session.unsaved:  # a case whose record is not on disk is a failed run
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    records, _ = _session_records(kd_session)
    if kd_session.baseline is not None and records:
        from kdbench.compare import TABLE, Thresholds, compare
        from kdbench.config import find_first

        try:
            kd_session.comparison = compare(
                kd_session.baseline, records,
                Thresholds.load(find_first(TABLE, *_project_folders(config)) or config.rootpath),
                allow_missing=config.getoption("kd_allow_missing"))
        except KdbenchError as exc:
            kd_session.comparison = exc
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if kd_session.comparison.failed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or SESSION not in config.stash:
        return
    kd_session = config.stash[SESSION]
    write = terminalreporter.write_line
    if kd_session.unsaved:
        terminalreporter.write_sep("=", "kdbench: records NOT saved", red=True)
        write(f"{len(kd_session.unsaved)} record(s) could not be written "
              f"({kd_session.write_error}); they follow, one per line; the session fails:")
        for record in kd_session.unsaved:
            write(json.dumps(record, sort_keys=True))
    records, superseded = _session_records(kd_session)
    if not records:
        return
    from kdbench.report import session_report

    resumed = sum(r["case_id"] in kd_session.done for r in records)
    notes = [f"{resumed} case(s) resumed from earlier runs under {kd_session.results_dir}"
             ] if resumed else []
    notes += [f"{superseded} older record(s) superseded by this session's"] if superseded else []
    text = session_report(results.records_frame(records), notes)
    terminalreporter.write_sep("=", "kdbench leaderboard")
    write(text)
    where = [f"records: {kd_session.run_file}"] if kd_session.run_file.exists() else \
        ["records: none new (every case resumed)"]
    try:
        kd_session.leaderboard_file.parent.mkdir(parents=True, exist_ok=True)
        kd_session.leaderboard_file.write_text(text)
        where.append(f"leaderboard: {kd_session.leaderboard_file}")
    except OSError as exc:
        where.append(f"leaderboard NOT written to {kd_session.leaderboard_file} "
                     f"({exc.strerror or exc}): it is printed above")
    write("  ".join(where))
    _gate_summary(terminalreporter, config, kd_session.comparison)


def _gate_summary(terminalreporter: Any, config: pytest.Config, comparison: Any) -> None:
    if comparison is None:
        return
    terminalreporter.write_sep("=", "kdbench regression gate")
    if isinstance(comparison, KdbenchError):
        terminalreporter.write_line(f"ERROR: {comparison}", red=True)
        return
    terminalreporter.write_line(comparison.to_markdown())
    terminalreporter.write_line(f"baseline {config.getoption('kd_baseline')}: "
                                f"{comparison.verdict()}", red=comparison.failed,
                                green=not comparison.failed)
