"""The cookie banner's visitors: record a visitor's choice of cookie categories, read it back.

A visitor is known only by the random consent ID Pledge gave their browser; their choices are
events of the same ledger as a person's (`ConsentLedger`), proven by the banner's notice."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from pledge.consent.rules import Method, cookie_choices, cookie_notice, cookie_state, notice_digest
from pledge.consent.service import (
    NO_NOTICE,
    ChoiceToRecord,
    ConsentLedger,
    current_choices,
    events_of,
)
from pledge.consent.tables import ConsentVisitor
from pledge.policy.document import GpcAnswer
from pledge.vault import SubjectNotFound


class PolicyVersionChanged(ValueError):
    """A cookie choice made under another policy version than the one in force."""


COOKIE_BANNER = "cookie banner"
"""The source of every event the cookie banner records, and the actor of their audit entries."""


@dataclass(frozen=True)
class CookieChoices:
    """A visitor's choice per cookie category under a policy version."""

    consent_id: str
    policy_version: str
    choices: dict[str, bool]
    gpc_honored: bool = False
    """The visitor's Global Privacy Control signal refused the categories that sell or share."""
    reprompt_blocked_until: dict[str, dt.datetime] = field(default_factory=dict)
    """Refused categories that sell or share, which Pledge may not itself ask about again
    before the time given."""


def record_cookie_choices(
    ledger: ConsentLedger,
    consent_id: str | None,
    chosen: Mapping[str, bool],
    *,
    policy_version: str,
    gpc: bool,
    prompted: bool,
    now: dt.datetime | None = None,
) -> CookieChoices:
    """Record a visitor's answer to the cookie banner: a grant or withdrawal of every purpose
    of each category that can be refused, proven by the banner's notice, in one transaction.

    An unknown (or absent) `consent_id` gets a new visitor with a random ID. `gpc` is the
    visitor's Global Privacy Control signal; when the policy honors it, the categories that
    sell or share are refused by method `gpc`. `prompted` says the banner appeared on its own
    (Pledge asked) rather than being opened by the visitor. Raises `PolicyVersionChanged`
    when the visitor chose under another version than the one in force, `CookieChoiceInvalid`
    for an unknown category, a missing one, or a refused strictly necessary one.
    """
    now = now or dt.datetime.now(dt.UTC)
    policy = ledger.policy_in_force()
    document = policy.document
    if policy_version != document.version:
        raise PolicyVersionChanged(
            f"the choice was made under policy {policy_version}; {document.version} is in "
            "force: ask again"
        )
    honored = gpc and document.signals.global_privacy_control is (
        GpcAnswer.OPT_OUT_OF_SALE_AND_SHARING
    )
    states, purposes = cookie_choices(document, chosen, gpc=honored)
    notice = notice_digest(cookie_notice(document))
    with ledger.sessions() as session, session.begin():
        if consent_id is None or session.get(ConsentVisitor, consent_id) is None:
            consent_id = str(uuid.uuid4())
            session.add(ConsentVisitor(id=consent_id, created_at=now))
            session.flush()
        to_record = [
            ChoiceToRecord(
                consent_id,
                choice.purpose,
                choice.action,
                choice.method,
                COOKIE_BANNER,
                NO_NOTICE if choice.method is Method.GPC else notice,
                prompted_by_pledge=prompted,
            )
            for choice in purposes
        ]
        ledger.record_in(session, policy, to_record, actor=COOKIE_BANNER, now=now)
    return CookieChoices(consent_id, document.version, states, gpc_honored=honored)


def cookie_choices_of(
    ledger: ConsentLedger, consent_id: str, *, now: dt.datetime | None = None
) -> CookieChoices:
    """A visitor's current choice per cookie category, from the ledger, and the refused
    categories Pledge may not ask about again yet. `SubjectNotFound` for an unknown visitor."""
    now = now or dt.datetime.now(dt.UTC)
    document = ledger.policy_in_force().document
    with ledger.sessions() as session:
        if session.get(ConsentVisitor, consent_id) is None:
            raise SubjectNotFound(consent_id)
        states, blocked = cookie_state(
            document,
            current_choices(session, consent_id),
            events_of(session, consent_id),
            now=now,
        )
    return CookieChoices(consent_id, document.version, states, reprompt_blocked_until=blocked)
