"""The pytest plugin: hooks and fixtures only.

Options and their checks live in ``kdbench.session.options``, the session state in
``kdbench.session.state``, markers and parametrization in ``kdbench.session.items``, the end of
session output in ``kdbench.session.terminal``; one case → one record in ``kdbench.run.case``.
The session state lives in ``config.stash``; fixtures report through it. Everything a user can
get wrong is checked before any training: options at configure time, data and teacher
checkpoints at collection.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from kdbench import results
from kdbench.observe.channel import STOP_FILE, progress_dir, read_marker, write_marker
from kdbench.observe.hooks import Observer
from kdbench.registry import KdbenchError
from kdbench.run import case, measure
from kdbench.scale.gpu_share import claim_gpu
from kdbench.session import items as items_module
from kdbench.session import options, terminal
from kdbench.session.state import SESSION, KdSession, run_file_name
from kdbench.spec import RunSpec


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` with ``--kd-cases-per-gpu K`` starts K × GPUs workers."""
    per_gpu = config.getoption("kd_cases_per_gpu")
    if per_gpu is None or per_gpu < 1 or not torch.cuda.is_available():
        return None  # xdist's own count; a bad K is reported at configure
    return per_gpu * torch.cuda.device_count()


def pytest_configure(config: pytest.Config) -> None:
    for marker in items_module.MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        specs = options.specs_of(config)
        threads = options.threads_of(config)
        stop_at = options.stop_at_of(config)
        options.check_gpu_options(config)
        options.check_cache(config.getoption("kd_cache"))
        baseline = config.getoption("kd_baseline")
        baseline_records = options.load_baseline(baseline) if baseline else None
        results_dir = Path(config.getoption("kd_results"))
        worker = getattr(config, "workerinput", None)
        run_file = results_dir / "runs" / (worker["kd_run_file"] if worker else run_file_name())
        observer = Observer.from_config(
            config,
            run_file,
            config.getoption("kd_profile"),
            lambda item: items_module.planned_case(item, config.stash[SESSION].done),
            stop_at,
        )
    except KdbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    torch.set_num_threads(threads)
    kd_session = KdSession(
        config, specs, results_dir, run_file, baseline_records, observer=observer, stop_at=stop_at
    )
    config.pluginmanager.register(observer, "kdbench-observe")
    if config.getoption("kd_resume") and (results_dir / "runs").is_dir():
        kd_session.done = {
            r["case_id"]: r
            for r in results.load_records([results_dir / "runs"])
            if r["status"] in results.FINAL
        }
    config.stash[SESSION] = kd_session
    if worker:
        kd_session.workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        if torch.cuda.is_available():  # K workers per GPU (default 1: round robin)
            per_gpu = config.getoption("kd_cases_per_gpu")
            kd_session.gpu_share = claim_gpu(
                int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]),
                kd_session.workers,
                per_gpu or 1,
                cap_memory=per_gpu is not None,
            )
    else:
        signal.signal(signal.SIGTERM, _interrupt)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _stop_after_running_cases(progress_dir(run_file)))
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "kdbench-xdist")


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends the session like Ctrl-C: finished cases are on disk and summarized."""
    raise KeyboardInterrupt(f"signal {signum}")


def _stopped(marker: dict[str, Any]) -> str:
    """Why the session stops, from its ``STOP_FILE``."""
    why = f"--kd-stop-after {marker['after']}" if "after" in marker else "SIGUSR1"
    return (
        f"kdbench: stop requested ({why}): the cases that were running are recorded, no other "
        "started; go on with --kd-resume"
    )


def _stop_after_running_cases(folder: Path) -> Callable[[int, Any], None]:
    """SIGUSR1 to any process of the session (the controller, a worker, or all of them: a
    SLURM ``--signal``) asks every process to start no other case (``STOP_FILE``), so a run
    in parts ends without losing the cases it is training."""

    def stop(signum: int, frame: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_marker(folder, STOP_FILE, signal=signum)

    return stop


def _stop_requested(item: pytest.Item) -> bool:
    """Whether a stop was asked for (SIGUSR1, or ``--kd-stop-after``'s time has come: then this
    process asks it); the session stops after this test (pytest and each xdist worker check
    ``session.shouldstop`` between two tests)."""
    if SESSION not in item.config.stash:
        return False
    kd_session = item.config.stash[SESSION]
    folder = progress_dir(kd_session.run_file)
    if kd_session.stop_at is not None and time.time() >= kd_session.stop_at:
        if not (folder / STOP_FILE).exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_marker(folder, STOP_FILE, after=item.config.getoption("kd_stop_after"))
    marker = read_marker(folder, STOP_FILE)
    if marker is not None:
        item.session.shouldstop = _stopped(marker)
    return marker is not None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A case about to start after a stop was asked for does not start (not recorded: a
    resumed session runs it)."""
    if _stop_requested(item):
        pytest.skip(str(item.session.shouldstop))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After each case: the session ends here when a stop was asked for meanwhile."""
    _stop_requested(item)


class _XdistHooks:
    """Workers append to the controller's run file (one file per session) and stop at the
    controller's ``--kd-stop-after`` time."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["kd_run_file"] = node.config.stash[SESSION].run_file.name
        node.workerinput["kd_stop_at"] = node.config.stash[SESSION].stop_at


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    items_module.parametrize(metafunc, metafunc.config.stash[SESSION].specs)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Fail before any training when records could not be written, data are missing or
    unreadable, or a teacher checkpoint does not fit its architecture (only the selected
    cases are checked: this runs after ``-k`` / ``-m``); with ``--dist loadgroup``, keep a
    teacher's cases on one worker."""
    specs = [s for s in map(items_module.case_spec, items) if s is not None]
    if not specs:
        line = items_module.nothing_selected(config, config.stash[SESSION].specs)
        if line:
            config.get_terminal_writer().line(line)
        return
    config.stash[SESSION].selected = {s.case_id for s in specs if isinstance(s, RunSpec)}
    try:
        items_module.check_before_training(config.stash[SESSION], specs)
    except KdbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if getattr(config.option, "loadgroup", False):  # set on xdist workers by --dist loadgroup
        items_module.group_by_teacher(items)


def pytest_deselected(items: list[pytest.Item]) -> None:
    items_module.count_deselected(items)


@pytest.fixture
def kd_session(request: pytest.FixtureRequest) -> KdSession:
    return request.config.stash[SESSION]


@pytest.fixture
def kd_case(request: pytest.FixtureRequest, kd_session: KdSession) -> Callable[[RunSpec], dict]:
    """``kd_case(spec)`` trains and measures one case, stores its record and returns it
    (``kdbench.run.case``): ``n/a`` → skipped with the reason; ``diverged`` → xfailed; an
    error → recorded, then re-raised so the test fails."""

    def run(spec: RunSpec) -> dict[str, Any]:
        try:
            spec, tuning = kd_session.resolve(spec)  # a tuned case: the setting its trials chose
        except KdbenchError as exc:
            pytest.fail(str(exc), pytrace=False)
        if spec.case_id in kd_session.done:
            pytest.skip(
                f"resumed: {spec.name} already has a record "
                f"({kd_session.done[spec.case_id]['status']})"
            )
        engine = kd_session.get_engine()
        env = {
            **measure.environment(torch.device(spec.device)),
            **kd_session.share(spec.device),
            "compile_mode": engine.compile_mode_for(spec),
        }
        try:
            record = case.run(
                engine,
                spec,
                env,
                kd_session.store
                if tuning is None
                else lambda r: kd_session.store({**r, "tuning": tuning}),
            )
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (``_interrupt``), mid-training
            # raised afresh: pytest cannot format a traceback through a frame without a line
            # number (torch's dynamo-wrapped optimizer.zero_grad has one) and would exit 1 with
            # a TypeError instead of ending the session as interrupted (exit 2)
            raise KeyboardInterrupt(*exc.args) from None
        m = record["metrics"]
        if record["status"] == "n/a":
            pytest.skip(f"N/A: {record['reason']}")
        if record["status"] == "diverged":
            pytest.xfail(
                f"diverged at epoch {m['diverged_epoch']} (last finite loss "
                f"{m['last_finite_loss']}); recorded as diverged"
            )
        request.node.user_properties.append(("kd_top1", m["top1"]))
        request.node.user_properties.append(("kd_train_s", m["train_s"]))
        return record

    return run


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    props = dict(getattr(report, "user_properties", ()))
    if report.when == "call" and report.passed and "kd_top1" in props:
        word = f"PASSED top1 {props['kd_top1']:.2f}% {props['kd_train_s']:.1f}s"
        return "passed", ".", (word, {"green": True})
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput") or SESSION not in config.stash:
        return
    kd_session = config.stash[SESSION]
    if kd_session.unsaved:  # a case whose record is not on disk is a failed run
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    records, _ = kd_session.records()
    if kd_session.baseline is not None and records:
        from kdbench.gate.compare import compare
        from kdbench.gate.thresholds import TABLE, Thresholds
        from kdbench.matrix.config import find_first

        try:
            kd_session.comparison = compare(
                kd_session.baseline,
                records,
                Thresholds.load(
                    find_first(TABLE, *options.project_folders(config)) or config.rootpath
                ),
                allow_missing=config.getoption("kd_allow_missing"),
            )
        except KdbenchError as exc:
            kd_session.comparison = exc
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if kd_session.comparison.failed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or SESSION not in config.stash:
        return
    terminal.terminal_summary(terminalreporter, config)
