"""The consent ledger's pure rules: folding, chaining, and deciding."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pledge.consent.rules import (
    GENESIS,
    Action,
    Choice,
    ConsentEvent,
    DecisionTable,
    Method,
    event_hash,
    first_break,
    fold,
    reprompt_blocked_until,
)
from pledge.policy import load_policy_file

REFERENCE = Path(__file__).resolve().parents[3] / "policies" / "reference.yaml"
T0 = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
PURPOSES = [
    "marketing.communications.email",
    "marketing.communications.postal",
    "personalize.content",
]


def event(seq: int, purpose: str, action: Action, minutes: int = 0) -> ConsentEvent:
    return ConsentEvent(
        seq=seq,
        subject_id="s-1",
        purpose=purpose,
        action=action,
        method=Method.FORM_CHECKBOX,
        source="newsletter",
        notice_sha256="a" * 64,
        policy_version="2026.11",
        at=T0 + dt.timedelta(minutes=minutes),
    )


events_strategy = st.lists(
    st.tuples(st.sampled_from(PURPOSES), st.sampled_from(list(Action))), min_size=1, max_size=30
).map(lambda pairs: [event(i + 1, p, a, i) for i, (p, a) in enumerate(pairs)])


@given(events=events_strategy, data=st.data())
def test_folding_the_same_events_in_any_order_gives_the_same_state(
    events: list[ConsentEvent], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(events))
    assert fold(shuffled) == fold(events)


@given(events=events_strategy)
def test_the_latest_event_of_each_purpose_decides(events: list[ConsentEvent]) -> None:
    state = fold(events)
    for purpose in {e.purpose for e in events}:
        last = max((e for e in events if e.purpose == purpose), key=lambda e: e.seq)
        assert state[purpose].granted is (last.action is Action.GRANT)


def chain(events: list[ConsentEvent]) -> list[tuple[ConsentEvent, str, str]]:
    linked, prev = [], GENESIS
    for e in events:
        digest = event_hash(e, prev)
        linked.append((e, prev, digest))
        prev = digest
    return linked


@given(events=events_strategy, data=st.data())
def test_any_edited_event_is_detected_at_that_event(
    events: list[ConsentEvent], data: st.DataObject
) -> None:
    linked = chain(events)
    assert first_break(linked) is None
    index = data.draw(st.integers(0, len(events) - 1))
    original = linked[index][0]
    edit = data.draw(
        st.sampled_from(
            [
                {"action": Action.WITHDRAW if original.action is Action.GRANT else Action.GRANT},
                {"method": Method.STAFF_ENTRY},
                {"purpose": "third_party_sharing.affiliate_marketing"},
                {"at": original.at + dt.timedelta(seconds=1)},
                {"notice_sha256": "b" * 64},
            ]
        )
    )
    tampered = dataclasses.replace(original, **edit)
    linked[index] = (tampered, linked[index][1], linked[index][2])
    assert first_break(linked) == original.seq


def test_a_deleted_event_breaks_the_chain_at_the_next_one() -> None:
    linked = chain([event(i, PURPOSES[0], Action.GRANT, i) for i in range(1, 5)])
    del linked[1]
    assert first_break(linked) == 3


def test_an_opt_out_of_sharing_blocks_pledge_prompted_opt_ins_for_twelve_months() -> None:
    withdrawn = dataclasses.replace(
        event(1, "marketing.advertising.third_party.targeted", Action.WITHDRAW)
    )
    until = reprompt_blocked_until([withdrawn], withdrawn.purpose, sale_or_sharing=True)
    assert until == T0 + dt.timedelta(days=365)
    assert reprompt_blocked_until([withdrawn], withdrawn.purpose, sale_or_sharing=False) is None


@pytest.fixture(scope="module")
def table() -> DecisionTable:
    return DecisionTable.compile(load_policy_file(REFERENCE).document)


def choice(*, granted: bool, expires: dt.datetime | None = None) -> Choice:
    return Choice(granted=granted, seq=1, at=T0, method=Method.FORM_CHECKBOX, expires_at=expires)


NOW = T0 + dt.timedelta(days=1)
EMAIL = ["user.contact.email"]


def test_a_consent_purpose_is_off_until_granted_and_off_again_once_withdrawn(
    table: DecisionTable,
) -> None:
    purpose = "marketing.communications.email"
    assert not table.decide(purpose, EMAIL, {}, now=NOW).allowed
    granted = table.decide(purpose, EMAIL, {purpose: choice(granted=True)}, now=NOW)
    assert granted.allowed
    assert "consent: granted on 2026-11-01 by form_checkbox" in granted.reasons
    assert not table.decide(purpose, EMAIL, {purpose: choice(granted=False)}, now=NOW).allowed


def test_an_expired_grant_no_longer_counts(table: DecisionTable) -> None:
    purpose = "marketing.communications.email"
    expired = {purpose: choice(granted=True, expires=T0 + dt.timedelta(hours=1))}
    decision = table.decide(purpose, EMAIL, expired, now=NOW)
    assert not decision.allowed
    assert any("expired" in r for r in decision.reasons)


def test_an_opt_out_purpose_is_on_until_the_person_opts_out(table: DecisionTable) -> None:
    purpose = "personalize.content"
    categories = ["user.behavior.purchase_history"]
    assert table.decide(purpose, categories, {}, now=NOW).allowed
    assert not table.decide(purpose, categories, {purpose: choice(granted=False)}, now=NOW).allowed


def test_gpc_blocks_sale_and_sharing_but_not_other_uses(table: DecisionTable) -> None:
    sharing = "marketing.advertising.third_party.targeted"
    cookies = ["user.device.cookie_id"]
    assert table.decide(sharing, cookies, {}, now=NOW).allowed
    blocked = table.decide(sharing, cookies, {}, now=NOW, gpc=True)
    assert not blocked.allowed
    assert "Global Privacy Control: this request opts out of sale and sharing" in blocked.reasons
    assert table.decide(
        "essential.service.fulfillment", ["user.contact.address"], {}, now=NOW, gpc=True
    ).allowed


def test_a_category_the_purpose_may_not_use_is_refused_whatever_the_consent(
    table: DecisionTable,
) -> None:
    purpose = "marketing.communications.email"
    decision = table.decide(
        purpose, ["user.financial.credit_card"], {purpose: choice(granted=True)}, now=NOW
    )
    assert not decision.allowed
    assert (
        decision.reasons[0]
        == "the policy does not let 'marketing.communications.email' use user.financial.credit_card"
    )


def test_a_recipient_must_be_allowed_the_purpose_and_categories_by_its_agreement(
    table: DecisionTable,
) -> None:
    purpose = "essential.service.fulfillment"
    ok = table.decide(purpose, ["user.contact.address"], {}, now=NOW, recipient="shipping_carrier")
    assert ok.allowed
    wrong = table.decide(purpose, ["user.contact.address"], {}, now=NOW, recipient="google")
    assert not wrong.allowed
    assert (
        "the agreement with 'google' does not allow 'essential.service.fulfillment'"
        in wrong.reasons
    )
