"""The cookie banner's pure rules: its notice, what an answer records, and visitors' decisions."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import yaml

from pledge.consent.rules import (
    Action,
    Choice,
    ConsentEvent,
    CookieChoiceInvalid,
    DecisionTable,
    Method,
    PurposeChoice,
    cookie_choices,
    cookie_notice,
    cookie_state,
    notice_digest,
)
from pledge.policy import PolicyDocument, load_policy_file, load_policy_text

REFERENCE = Path(__file__).resolve().parents[3] / "policies" / "reference.yaml"
T0 = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
ADVERTISING = [
    "marketing.advertising.first_party.targeted",
    "marketing.advertising.third_party.targeted",
]


@pytest.fixture(scope="module")
def document() -> PolicyDocument:
    return load_policy_file(REFERENCE).document


def test_the_notice_names_every_category_and_its_digest_is_the_sha256_of_its_text(
    document: PolicyDocument,
) -> None:
    notice = cookie_notice(document)
    lines = notice.split("\n")
    assert lines[0] == "Cookies on Aura"
    assert lines[2:] == [f"{c.name}: {c.description}" for c in document.cookies.values()]
    assert notice_digest(notice) == hashlib.sha256(notice.encode()).hexdigest()


def test_an_answer_is_one_choice_per_purpose_of_the_categories_that_can_be_refused(
    document: PolicyDocument,
) -> None:
    states, purposes = cookie_choices(
        document, {"analytics": True, "advertising": False}, gpc=False
    )
    assert states == {"essential": True, "analytics": True, "advertising": False}
    assert purposes == [
        PurposeChoice("analytics.reporting", Action.GRANT, Method.COOKIE_BANNER),
        *(PurposeChoice(p, Action.WITHDRAW, Method.COOKIE_BANNER) for p in ADVERTISING),
    ]


@pytest.mark.parametrize(
    ("chosen", "category"),
    [
        ({"analytics": True, "advertising": True, "tracking": True}, "tracking"),
        ({"essential": False, "analytics": True, "advertising": True}, "essential"),
        ({"analytics": True}, "advertising"),
    ],
)
def test_an_unknown_missing_or_refused_strictly_necessary_category_is_refused(
    document: PolicyDocument, chosen: dict[str, bool], category: str
) -> None:
    with pytest.raises(CookieChoiceInvalid) as refused:
        cookie_choices(document, chosen, gpc=False)
    assert refused.value.category == category


def test_gpc_refuses_the_categories_that_share_whatever_was_chosen(
    document: PolicyDocument,
) -> None:
    states, purposes = cookie_choices(document, {"analytics": True, "advertising": True}, gpc=True)
    assert states["advertising"] is False
    assert states["analytics"] is True
    assert {(c.purpose, c.action, c.method) for c in purposes if c.purpose in ADVERTISING} == {
        (p, Action.WITHDRAW, Method.GPC) for p in ADVERTISING
    }


def test_a_purpose_in_two_categories_is_granted_only_when_both_are() -> None:
    raw = yaml.safe_load(REFERENCE.read_text())
    raw["cookies"]["analytics"]["purposes"].append(ADVERTISING[0])
    document = load_policy_text(yaml.safe_dump(raw)).document
    _, purposes = cookie_choices(document, {"analytics": True, "advertising": False}, gpc=False)
    assert {c.purpose: c.action for c in purposes}[ADVERTISING[0]] is Action.WITHDRAW


def test_for_a_visitor_a_cookie_category_can_refuse_analytics_on_legitimate_interest(
    document: PolicyDocument,
) -> None:
    table = DecisionTable.compile(document)
    withdrawn = {
        "analytics.reporting": Choice(granted=False, seq=1, at=T0, method=Method.COOKIE_BANNER),
    }
    as_visitor = table.decide(
        "analytics.reporting", ["user.device.ip_address"], withdrawn, now=T0, visitor=True
    )
    assert not as_visitor.allowed
    assert table.decide(
        "analytics.reporting", ["user.device.ip_address"], {}, now=T0, visitor=True
    ).allowed
    # For a vault subject the purpose keeps its legal basis: no choice applies.
    assert table.decide(
        "analytics.reporting", ["user.device.ip_address"], withdrawn, now=T0
    ).allowed
    other = table.decide(
        "marketing.communications.email", ["user.contact.email"], {}, now=T0, visitor=True
    )
    assert other.reasons == (
        "'marketing.communications.email' is not a purpose of a cookie category of policy 2026.11",
    )


def test_the_state_from_the_ledger_blocks_re_asking_about_a_refused_sharing_category(
    document: PolicyDocument,
) -> None:
    events = [
        ConsentEvent(i + 1, "v", p, Action.WITHDRAW, Method.COOKIE_BANNER, "b", "a" * 64, "1", T0)
        for i, p in enumerate(ADVERTISING)
    ]
    choices = {
        p: Choice(granted=False, seq=i + 1, at=T0, method=Method.COOKIE_BANNER)
        for i, p in enumerate(ADVERTISING)
    }
    states, blocked = cookie_state(document, choices, events, now=T0 + dt.timedelta(days=30))
    assert states == {"essential": True, "advertising": False}
    assert blocked == {"advertising": T0 + dt.timedelta(days=365)}
    _, later = cookie_state(document, choices, events, now=T0 + dt.timedelta(days=366))
    assert later == {}
