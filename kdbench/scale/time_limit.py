"""A SLURM task's time limit (sbatch ``--time``) and when before it ``kdbench slurm`` asks a
shard to stop (``--stop-before``, sbatch ``--signal=B:USR1@S``); ``--kd-stop-after`` takes the
same forms."""

from __future__ import annotations

import re

from kdbench.registry import KdbenchError

# sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds
TIME_LIMIT = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d+(:\d{1,2}){0,2}")
MAX_SIGNAL_TIME = 65535  # sbatch --signal=…@sig_time: seconds, at most this
STOP_BEFORE = 600  # --stop-before's default, at most half of --time


def limit_seconds(limit: str, option: str = "--time") -> int:
    """An sbatch ``--time`` (one of ``TIME_LIMIT``'s forms) in seconds; another form is a
    one-line error naming ``option``."""
    if not TIME_LIMIT.fullmatch(limit):
        raise KdbenchError(
            f"invalid {option} {limit!r}: use minutes, minutes:seconds, "
            "hours:minutes:seconds, days-hours, days-hours:minutes or "
            "days-hours:minutes:seconds"
        )
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 3:  # hours:minutes:seconds
        hours, minutes, seconds = parts
    else:  # minutes[:seconds]
        hours, (minutes, seconds) = 0, [*parts, 0][:2]
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def stop_before(time: str | None, seconds: int | None) -> int:
    """The seconds before the time limit ``time`` a shard gets SIGUSR1 (0: never): ``seconds``
    as given, else ``STOP_BEFORE`` or half of ``time`` when shorter; one-line errors for a
    ``time`` sbatch does not take and ``seconds`` out of range or not under ``time``."""
    limit = limit_seconds(time) if time is not None else None
    if seconds is None:
        return STOP_BEFORE if limit is None else min(STOP_BEFORE, limit // 2)
    if not 0 <= seconds <= MAX_SIGNAL_TIME:
        raise KdbenchError(
            f"invalid --stop-before {seconds}: seconds from 0 (never) to "
            f"{MAX_SIGNAL_TIME} (sbatch --signal's limit)"
        )
    if limit is not None and seconds >= limit:
        raise KdbenchError(
            f"invalid --stop-before {seconds}: must be under --time {time} ({limit} s), "
            "or 0 (never)"
        )
    return seconds
