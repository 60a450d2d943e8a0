"""Pure rules of jobs: the retry schedule and what a failure may say."""

from __future__ import annotations

import datetime as dt
import smtplib

import pytest

from pledge.jobs import backoff, error_summary

FIRST = dt.timedelta(seconds=30)


def test_waits_double_from_the_first_retry() -> None:
    assert [backoff(n, FIRST).total_seconds() for n in range(1, 6)] == [30, 60, 120, 240, 480]


def test_waits_stop_growing_at_an_hour() -> None:
    assert backoff(30, FIRST) == dt.timedelta(hours=1)


def test_backoff_is_for_failed_attempts_only() -> None:
    with pytest.raises(ValueError, match="failed at least once"):
        backoff(0, FIRST)


def test_an_smtp_refusal_keeps_its_code_but_not_the_address_in_its_message() -> None:
    refusal = smtplib.SMTPRecipientsRefused({"jane@example.com": (550, b"no such user")})
    assert error_summary(refusal) == "SMTPRecipientsRefused"
    reply = smtplib.SMTPDataError(554, b"rejected: jane@example.com is blocked")
    assert error_summary(reply) == "SMTPDataError (SMTP 554)"


def test_any_other_error_is_named_by_its_type_alone() -> None:
    assert error_summary(ValueError("jane@example.com")) == "ValueError"
