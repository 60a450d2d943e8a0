"""Pure rules of background jobs: their states, the retry schedule, and what an error may say."""

from __future__ import annotations

import datetime as dt
import enum

MAX_BACKOFF = dt.timedelta(hours=1)
"""The longest wait between two attempts of a job."""


class JobStatus(enum.StrEnum):
    """Where a job stands. `queued` and `retrying` wait for a worker; the last two are final."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


WAITING = (JobStatus.QUEUED, JobStatus.RETRYING)
"""The states a worker may claim a job from."""


def backoff(attempts: int, first: dt.timedelta) -> dt.timedelta:
    """The wait after the `attempts`-th failed attempt: `first`, then doubling, at most an hour."""
    if attempts < 1:
        raise ValueError("backoff is for a job that has failed at least once")
    wait: dt.timedelta = first * (2 ** (attempts - 1))
    return min(wait, MAX_BACKOFF)


def error_summary(error: BaseException) -> str:
    """What a failed attempt leaves for staff: the error's type and, for an SMTP reply, its
    code. Never the message: servers put addresses and other personal data in theirs."""
    summary = type(error).__name__
    code = getattr(error, "smtp_code", None)
    if isinstance(code, int):
        summary += f" (SMTP {code})"
    return summary
