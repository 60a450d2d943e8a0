"""The age screen: one answer to one date of birth, with nothing kept about the person.

Screening reads the date, works out the answer, and forgets the date: no row, no audit entry,
no log line. What leaves it is the answer, an age pass for the collection point (an adult may
go on), or a retry block for the browser (a child may not try another date)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pledge.children.rules import (
    DateUnreadable,
    Screened,
    age_on,
    band_changes_on,
    band_of,
    read_birth_date,
    retry_blocked,
    retry_token,
    screen,
)
from pledge.jobs import JobQueue
from pledge.policy import current_version
from pledge.policy.document import LegalBasis, PolicyDocument
from pledge.vault import SubjectErased, SubjectNotFound, Vault
from pledge.vault.rules import DATE_OF_BIRTH
from pledge.vault.screening import business_day

log = logging.getLogger(__name__)


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
            # The cookie stays as it is: its expiry is the first refusal's.
            return ScreenAnswer(refused, None, None, None)
        today = business_day(document, now)
        born = read_birth_date(date_of_birth, today)
        outcome = screen(born, today, children)
        if outcome is Screened.ADMITTED:
            age_pass = self.vault.age_pass(
                collection_point,
                band=band_of(age_on(born, today), children),
                band_until=band_changes_on(born, today, children),
            )
            return ScreenAnswer(outcome, age_pass, None, None)
        token, until = self.block(document, now)
        return ScreenAnswer(outcome, None, token, until)

    def block(self, document: PolicyDocument, now: dt.datetime) -> tuple[str, dt.datetime]:
        """A new retry block for a refused browser: the cookie's value and its end."""
        until = now + dt.timedelta(days=document.children.retry_block.approximate_days())
        return retry_token(self.secret, until), until


class AgeBands:
    """Keeps subjects' age bands true as minors grow up: once a day, each subject whose band may
    have ended has it worked out again from the date of birth the vault holds (read for a
    purpose resting on a legal obligation, and audited)."""

    def __init__(self, *, vault: Vault, jobs: JobQueue) -> None:
        self.vault = vault
        jobs.every(60 * 24, "pledge.children.reassess_bands", self.reassess)

    def reassess(self, today: dt.date | None = None) -> int:
        """Work out again the bands that may have ended; how many subjects were looked at."""
        today = today or dt.datetime.now(dt.UTC).date()
        found = current_version(self.vault.sessions)
        if found is None:
            return 0
        document = found[1].document
        purpose = (
            next(
                (
                    key
                    for key in document.data_categories[DATE_OF_BIRTH].purposes
                    if document.purposes[key].legal_basis is LegalBasis.LEGAL_OBLIGATION
                ),
                None,
            )
            if DATE_OF_BIRTH in document.data_categories
            else None
        )
        if purpose is None:
            log.warning("no legal-obligation purpose may read dates of birth: bands not reassessed")
            return 0
        due = self.vault.bands_due(today)
        for subject_id in due:
            try:
                data = self.vault.read(subject_id, purpose, actor=ACTOR)
            except (SubjectErased, SubjectNotFound):
                continue
            births = []
            for value in data.values:
                if value.category == DATE_OF_BIRTH:
                    try:
                        births.append(read_birth_date(value.value, today))
                    except DateUnreadable:
                        continue
            if not births:
                # Nothing readable: the band stays as it is (the stricter) and is not due again.
                self.vault.keep_band(subject_id, None, None, actor=ACTOR)
                continue
            born = max(births)  # the youngest date given: anyone can type an older one
            band = band_of(age_on(born, today), document.children)
            until = band_changes_on(born, today, document.children)
            self.vault.keep_band(subject_id, band, until, actor=ACTOR)
        return len(due)


ACTOR = "pledge children"

__all__ = ["AgeBands", "AgeScreen", "DateUnreadable", "ScreenAnswer", "UnknownCollectionPoint"]
