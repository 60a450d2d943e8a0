"""Log lines never carry a personal value or an IP address, even when one slips into a message."""

from __future__ import annotations

import io
import logging

import pytest

from pledge.logs import RedactPersonalData, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("lookup for Jane.Doe+news@example.co.uk failed", "Jane.Doe+news@example.co.uk"),
        ("client 203.0.113.77 connected", "203.0.113.77"),
        ("client 2001:db8:85a3::8a2e:370:7334 connected", "2001:db8:85a3::8a2e:370:7334"),
        ("call back on +1 (310) 555-0199 today", "555-0199"),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
    ],
)
def test_personal_values_are_masked(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_identifiers_that_are_not_personal_survive() -> None:
    line = "published policy version 2026.11 (5a26a08a4bfe) in 12.5ms"
    assert redact(line) == line


def test_the_filter_rewrites_arguments_and_exception_text_before_any_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactPersonalData())
    logger = logging.getLogger("pledge.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("no subject for %s", "someone@example.com")
        try:
            raise ValueError("duplicate identity someone@example.com")  # noqa: TRY301 - the point
        except ValueError:
            logger.exception("collect failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "someone@example.com" not in output
    assert "no subject for <email>" in output
    assert "ValueError: duplicate identity <email>" in output
