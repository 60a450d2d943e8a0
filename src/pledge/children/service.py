"""The age screen: one answer to one date of birth, with nothing kept about the person.

Screening reads the date, works out the answer, and forgets the date: no row, no audit entry,
no log line. What leaves it is the answer, an age pass for the collection point (an adult may
go on), or a retry block for the browser (a child may not try another date)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pledge.children.rules import (
    DateUnreadable,
    Screened,
    read_birth_date,
    retry_blocked,
    retry_token,
    screen,
)
from pledge.policy.document import PolicyDocument
from pledge.vault import Vault


class UnknownCollectionPoint(LookupError):
    """The policy has no such collection point."""


@dataclass(frozen=True)
class ScreenAnswer:
    """What the screen says, and what to give the browser."""

    outcome: Screened
    age_pass: str | None
    """For an admitted person: the pass the collection at this point takes."""
    retry_token: str | None
    """For a refused browser: the signed cookie value that keeps it refused."""
    retry_until: dt.datetime | None


class AgeScreen:
    """The neutral age screen in front of the policy's age-screened collection points."""

    def __init__(self, *, vault: Vault, secret: bytes) -> None:
        self.vault = vault
        self.secret = secret

    def screen(
        self,
        document: PolicyDocument,
        collection_point: str,
        date_of_birth: str,
        *,
        retry_cookie: str | None,
        now: dt.datetime | None = None,
    ) -> ScreenAnswer:
        """Screen a date of birth typed at `collection_point`; raise `DateUnreadable` (ask
        again) or `UnknownCollectionPoint`. A browser refused earlier stays refused for the
        policy's `retry_block`, whatever date it gives now."""
        if collection_point not in document.collection_points:
            raise UnknownCollectionPoint(collection_point)
        now = now or dt.datetime.now(dt.UTC)
        children = document.children
        if retry_blocked(self.secret, retry_cookie, now):
            refused = (
                Screened.PARENT_NEEDED
                if children.child_accounts == "with_parental_consent"
                else Screened.REFUSED
            )
            return ScreenAnswer(refused, None, retry_cookie, None)
        born = read_birth_date(date_of_birth, now.date())
        outcome = screen(born, now.date(), children)
        if outcome is Screened.ADMITTED:
            return ScreenAnswer(outcome, self.vault.age_pass(collection_point), None, None)
        block = children.retry_block
        until = now + dt.timedelta(days=block.approximate_days())
        return ScreenAnswer(outcome, None, retry_token(self.secret, until), until)


__all__ = ["AgeScreen", "DateUnreadable", "ScreenAnswer", "UnknownCollectionPoint"]
