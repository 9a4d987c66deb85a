"""What a session prints at its end: records a write failed for, the leaderboard (also written
next to the run's records) and the regression gate's decision."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kdbench import results
from kdbench.registry import KdbenchError
from kdbench.session.state import SESSION


def terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kd_session = config.stash[SESSION]
    write = terminalreporter.write_line
    if kd_session.unsaved:
        terminalreporter.write_sep("=", "kdbench: records NOT saved", red=True)
        write(
            f"{len(kd_session.unsaved)} record(s) could not be written "
            f"({kd_session.write_error}); they follow, one per line; the session fails:"
        )
        for record in kd_session.unsaved:
            write(json.dumps(record, sort_keys=True))
    records, superseded = kd_session.records()
    if not records:
        return
    from kdbench.publish.markdown import session_report

    resumed = sum(r["case_id"] in kd_session.done for r in records)
    notes = (
        [f"{resumed} case(s) resumed from earlier runs under {kd_session.results_dir}"]
        if resumed
        else []
    )
    notes += [f"{superseded} older record(s) superseded by this session's"] if superseded else []
    text = session_report(results.records_frame(records), notes)
    terminalreporter.write_sep("=", "kdbench leaderboard")
    write(text)
    where = (
        [f"records: {kd_session.run_file}"]
        if kd_session.run_file.exists()
        else ["records: none new (every case resumed)"]
    )
    try:
        kd_session.leaderboard_file.parent.mkdir(parents=True, exist_ok=True)
        kd_session.leaderboard_file.write_text(text)
        where.append(f"leaderboard: {kd_session.leaderboard_file}")
    except OSError as exc:
        where.append(
            f"leaderboard NOT written to {kd_session.leaderboard_file} "
            f"({exc.strerror or exc}): it is printed above"
        )
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
    terminalreporter.write_line(
        f"baseline {config.getoption('kd_baseline')}: {comparison.verdict()}",
        red=comparison.failed,
        green=not comparison.failed,
    )
