"""Pure rules of mail: what a marketing message carries, and unsubscribe tokens."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from pledge.consent.rules import Action, ConsentEvent, Method
from pledge.mail.rules import (
    MARKETING_EMAIL,
    marketing_message,
    new_token,
    suppression_lifted,
    token_digest,
    transactional_message,
)
from pledge.policy import load_policy_file
from tests.conftest import REFERENCE_POLICY

URL = "https://privacy.example.com/mail/unsubscribe/" + "A" * 43


def _marketing(text: str = "New frames.\n\nSee you soon.") -> object:
    organization = load_policy_file(REFERENCE_POLICY).document.organization
    return marketing_message(
        sender="Aura <news@auraphoto.com>",
        to="jane@example.com",
        subject_line="Autumn",
        text=text,
        unsubscribe_url=URL,
        organization=organization,
    )


def test_a_marketing_message_has_both_rfc_8058_headers() -> None:
    message = _marketing()
    assert message["List-Unsubscribe"] == f"<{URL}>"  # type: ignore[index]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # type: ignore[index]
    assert message["Message-ID"].endswith("@auraphoto.com>")  # type: ignore[index]


def test_the_html_part_escapes_the_text_it_is_given() -> None:
    message = _marketing("<script>alert(1)</script>")
    html = message.get_body(("html",)).get_content()  # type: ignore[attr-defined]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_a_transactional_message_has_no_marketing_parts() -> None:
    message = transactional_message(
        sender="p@example.com", to="j@example.com", subject_line="Code", text="123456"
    )
    assert message["List-Unsubscribe"] is None
    assert "Unsubscribe" not in message.get_content()


def test_tokens_are_256_bit_and_stored_only_as_their_digest() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    token, digest = tokens.pop()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert digest == token_digest(token) != token
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


SUPPRESSED_AT = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def _event(seq: int, action: Action, method: Method, hours: float) -> ConsentEvent:
    at = SUPPRESSED_AT + dt.timedelta(hours=hours)
    return ConsentEvent(seq, "s", MARKETING_EMAIL, action, method, "x", "a" * 64, "1", at)


GRANT, WITHDRAW = Action.GRANT, Action.WITHDRAW


@pytest.mark.parametrize(
    ("events", "lifted"),
    [
        ([], False),
        ([(GRANT, Method.DOUBLE_OPT_IN, -1)], False),  # older than the suppression
        ([(GRANT, Method.DOUBLE_OPT_IN, 1)], True),
        ([(GRANT, Method.FORM_CHECKBOX, 1)], True),
        ([(GRANT, Method.PREFERENCES_PAGE, 1)], True),
        ([(GRANT, Method.STAFF_ENTRY, 1)], True),
        ([(GRANT, Method.COOKIE_BANNER, 1)], False),
        ([(GRANT, Method.GPC, 1)], False),
        ([(GRANT, Method.ONE_CLICK_UNSUBSCRIBE, 1)], False),
        ([(GRANT, Method.DOUBLE_OPT_IN, 1), (WITHDRAW, Method.FORM_CHECKBOX, 2)], False),
        (
            [
                (GRANT, Method.DOUBLE_OPT_IN, 1),
                (WITHDRAW, Method.FORM_CHECKBOX, 2),
                (GRANT, Method.COOKIE_BANNER, 3),
            ],
            False,
        ),
        ([(GRANT, Method.DOUBLE_OPT_IN, 1), (GRANT, Method.COOKIE_BANNER, 2)], True),
    ],
)
def test_only_a_fresh_affirmative_opt_in_lifts_a_suppression(
    events: list[tuple[Action, Method, float]], lifted: bool
) -> None:
    history = [_event(i + 1, *e) for i, e in enumerate(events)]
    assert suppression_lifted(reversed(history), SUPPRESSED_AT) is lifted  # any order: by seq


def test_a_grant_for_another_purpose_does_not_lift_a_suppression() -> None:
    other = ConsentEvent(
        1,
        "s",
        "marketing.communications.post",
        Action.GRANT,
        Method.DOUBLE_OPT_IN,
        "x",
        "a" * 64,
        "1",
        SUPPRESSED_AT + dt.timedelta(hours=1),
    )
    assert not suppression_lifted([other], SUPPRESSED_AT)
