"""The pytest plugin: ``--kd-*`` options, markers, the ``kd_spec`` parametrization and the
``kd_case`` fixture, the end-of-session leaderboard and the regression gate.

The plugin is thin: the session state lives in ``config.stash``; fixtures report through it;
all training happens in ``kdbench.engine``.
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
from kdbench.engine import Diverged, Engine
from kdbench.losses import LOSSES, NotApplicable
from kdbench.profiles import PROFILES
from kdbench.registry import KdbenchError
from kdbench.spec import DEVICES, PRECISIONS, RunSpec

DEVICE_CHOICES = (*DEVICES, "all")


@dataclass
class KdSession:
    """What one pytest process knows about the benchmark run."""

    config: pytest.Config
    specs: list[RunSpec]
    results_dir: Path
    run_file: Path
    engine: Engine | None = None
    comparison: Any = None
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # --kd-resume: ok records
    unsaved: list[dict[str, Any]] = field(default_factory=list)  # records a write failed for
    write_error: str | None = None

    def get_engine(self) -> Engine:
        if self.engine is None:
            opt = self.config.getoption
            echo = self.config.getoption("capture") == "no"
            self.engine = Engine(
                cache_dir=opt("kd_cache"), data_root=opt("kd_data_root"),
                download=opt("kd_download"),
                progress=(lambda message: print(f"[kdbench] {message}", flush=True)) if echo
                else None)
        return self.engine


SESSION = pytest.StashKey[KdSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kdbench", "kdbench: knowledge-distillation benchmark")
    group.addoption("--kd-profile", default="quick", metavar="NAME",
                    help="matrix of cases to run (`kdbench list profiles`); default: quick")
    group.addoption("--kd-device", default="all", choices=DEVICE_CHOICES,
                    help="devices to run cases on; CUDA cases skip without a GPU; default: all")
    group.addoption("--kd-seeds", type=int, default=None, metavar="N",
                    help="seeds per case (0 … N−1); default: the profile's (3 for quick)")
    group.addoption("--kd-epochs", type=int, default=None, metavar="N",
                    help="student epochs per case; default: the profile's")
    group.addoption("--kd-results", default="results", metavar="DIR",
                    help="where runs/*.jsonl and leaderboard.md go; default: results")
    group.addoption("--kd-cache", default=os.environ.get("KDBENCH_CACHE", ".kdbench_cache"),
                    metavar="DIR", help="teacher cache (env KDBENCH_CACHE); default: .kdbench_cache")
    group.addoption("--kd-data-root", default=os.environ.get("KDBENCH_DATA"), metavar="DIR",
                    help="where torchvision data sets live (env KDBENCH_DATA)")
    group.addoption("--kd-download", action="store_true",
                    help="allow downloading torchvision data sets into --kd-data-root")
    group.addoption("--kd-threads", type=int, default=None, metavar="N",
                    help="torch threads per process; default: cores / xdist workers")
    group.addoption("--kd-precision", default="auto", choices=("auto", *PRECISIONS),
                    help="auto: AMP (bf16, else fp16 + grad scaler) on CUDA, fp32 on CPU")
    group.addoption("--kd-compile", action="store_true",
                    help="torch.compile the student; compile time is reported apart "
                         "(compile_s) and left out of train_throughput")
    group.addoption("--kd-teacher-ckpt", action="append", default=[], metavar="NAME=PATH",
                    help="use this checkpoint for teacher NAME instead of training it "
                         "(repeatable)")
    group.addoption("--kd-resume", action="store_true",
                    help="skip cases that already have an ok record under --kd-results")
    group.addoption("--kd-baseline", default=None, metavar="JSONL",
                    help="compare this run to a baseline and fail on a regression")


def _threads(config: pytest.Config) -> int:
    requested = config.getoption("kd_threads")
    if requested is not None:
        if requested < 1:
            raise pytest.UsageError(f"invalid --kd-threads {requested}: must be ≥ 1")
        return requested
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // workers)


def _run_file_name() -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}_{measure.git_sha()}_{os.getpid()}.jsonl"


def _specs(config: pytest.Config) -> list[RunSpec]:
    profile = PROFILES.get(config.getoption("kd_profile"))
    device = config.getoption("kd_device")
    devices = DEVICES if device == "all" else (device,)
    epochs = config.getoption("kd_epochs")
    if epochs is not None and epochs < 1:
        raise KdbenchError(f"invalid --kd-epochs {epochs}: must be an integer ≥ 1")
    seeds = config.getoption("kd_seeds")
    if seeds is not None and seeds < 1:
        raise KdbenchError(f"invalid --kd-seeds {seeds}: must be an integer ≥ 1")
    if device == "cuda" and not torch.cuda.is_available():
        raise KdbenchError("--kd-device cuda, but no CUDA GPU is available: "
                           "use --kd-device cpu or all (CUDA cases then skip)")
    return profile.specs(devices, seeds=seeds, epochs=epochs,
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


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        "kd_case: a distillation case generated from --kd-profile",
        "cpu: a case that runs on the CPU",
        "cuda: a case that needs a CUDA GPU (skipped without one)",
        "logit_kd: a case whose loss uses only logits",
        "feature_kd: a case whose loss uses intermediate features",
    ):
        config.addinivalue_line("markers", marker)
    try:
        specs = _specs(config)
    except KdbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    baseline = config.getoption("kd_baseline")
    if baseline and not Path(baseline).is_file():
        raise pytest.UsageError(f"--kd-baseline {baseline!r}: no such file")
    torch.set_num_threads(_threads(config))
    results_dir = Path(config.getoption("kd_results"))
    worker = getattr(config, "workerinput", None)
    name = worker["kd_run_file"] if worker else _run_file_name()
    kd_session = KdSession(config, specs, results_dir, results_dir / "runs" / name)
    if config.getoption("kd_resume") and (results_dir / "runs").is_dir():
        kd_session.done = {r["case_id"]: r for r in results.load_records([results_dir / "runs"])
                           if r["status"] == "ok"}
    config.stash[SESSION] = kd_session
    if worker and torch.cuda.is_available():  # one GPU per xdist worker, round robin
        index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
        torch.cuda.set_device(index % torch.cuda.device_count())
    if not worker:
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
    kind = pytest.mark.logit_kd if set(loss.taps) <= {"logits"} else pytest.mark.feature_kd
    group = f"{spec.dataset}-{spec.teacher}-{spec.device}"  # --dist loadgroup: one teacher
    return [pytest.mark.kd_case, kind, pytest.mark.xdist_group(group),
            *_device_marks(spec.device)]


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


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Fail before any training when records could not be written or data are missing."""
    specs = [item.callspec.params[name] for item in items if hasattr(item, "callspec")
             for name in ("kd_spec", "kd_model") if name in item.callspec.params]
    if not specs:
        return
    kd_session = config.stash[SESSION]
    try:
        results.check_writable(kd_session.results_dir / "runs")
        for dataset, options in {(s.dataset, s.dataset_options) for s in specs}:
            kd_session.get_engine().host_data(dataset, options)
    except KdbenchError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture
def kd_session(request: pytest.FixtureRequest) -> KdSession:
    return request.config.stash[SESSION]


@pytest.fixture
def kd_case(request: pytest.FixtureRequest, kd_session: KdSession) -> Callable[[RunSpec], dict]:
    """``kd_case(spec)`` trains and measures one case, stores its record and returns it.

    Not applicable → skipped (shown N/A); diverged → recorded as such and returned; any other
    error → recorded with its message, then re-raised so the test fails.
    """

    def run(spec: RunSpec) -> dict[str, Any]:
        if spec.case_id in kd_session.done:
            pytest.skip(f"resumed: {spec.name} already has an ok record")
        engine = kd_session.get_engine()
        env = measure.environment(torch.device(spec.device))
        try:
            outcome = engine.distill(spec)
        except NotApplicable as exc:
            pytest.skip(f"N/A: {exc}")
        except Diverged as exc:
            record = results.make_record(spec, "diverged", {
                "diverged_epoch": exc.epoch, "last_finite_loss": exc.last_finite_loss}, env)
        except Exception as exc:  # CUDA out of memory included: recorded, the session goes on
            message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
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
    """Append the record; if the write fails (disk full, folder removed), keep it in memory
    and report it at the end of the session instead of losing the case."""
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


def _session_records(kd_session: KdSession) -> list[dict[str, Any]]:
    """This session's records (all workers), the unsaved ones, and the resumed ok ones."""
    saved = results.load_records([kd_session.run_file]) if kd_session.run_file.exists() else []
    wanted = {s.case_id for s in kd_session.specs}
    resumed = [r for cid, r in kd_session.done.items() if cid in wanted]
    return saved + kd_session.unsaved + resumed


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or SESSION not in config.stash:
        return
    kd_session = config.stash[SESSION]
    baseline = config.getoption("kd_baseline")
    records = _session_records(kd_session)
    if baseline and records:
        from kdbench.compare import Thresholds, compare

        try:
            kd_session.comparison = compare(results.load_records([baseline]), records,
                                            Thresholds.load())
        except KdbenchError as exc:
            kd_session.comparison = exc
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if kd_session.comparison.has_regression:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or SESSION not in config.stash:
        return
    kd_session = config.stash[SESSION]
    if kd_session.unsaved:
        terminalreporter.write_sep("=", "kdbench: records NOT saved", red=True)
        terminalreporter.write_line(f"{len(kd_session.unsaved)} record(s) could not be written "
                                    f"({kd_session.write_error}); they follow, one per line:")
        for record in kd_session.unsaved:
            terminalreporter.write_line(json.dumps(record, sort_keys=True))
    records = _session_records(kd_session)
    if not records:
        return
    from kdbench.report import session_report

    text = session_report(results.records_frame(records))
    leaderboard = kd_session.results_dir / "leaderboard.md"
    leaderboard.write_text(text)
    terminalreporter.write_sep("=", "kdbench leaderboard")
    terminalreporter.write_line(text)
    terminalreporter.write_line(f"records: {kd_session.run_file}  leaderboard: {leaderboard}")
    comparison = kd_session.comparison
    if comparison is not None:
        terminalreporter.write_sep("=", "kdbench regression gate")
        if isinstance(comparison, KdbenchError):
            terminalreporter.write_line(f"ERROR: {comparison}", red=True)
        else:
            terminalreporter.write_line(comparison.to_markdown())
            verdict = "REGRESSION" if comparison.has_regression else "no regression"
            terminalreporter.write_line(f"baseline {config.getoption('kd_baseline')}: {verdict}",
                                        red=comparison.has_regression,
                                        green=not comparison.has_regression)
