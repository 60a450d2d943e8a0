"""The age screen's side of collection: at a collection point the policy marks `age_screen`,
nothing is stored unless the person was screened, by a date of birth in the submission or by
a pass the age screen issued a moment ago; a child's submission is stored only under a pass
for a parent's consent. Passes are signed with the keyring's index key (a key that never
leaves the keyring), bound to the collection point, and short-lived; they hold no date.

Nothing a person typed is logged or kept when a submission is refused here."""

from __future__ import annotations

import datetime as dt
import hmac
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass

from pledge.keyring import Keyring
from pledge.policy.ages import AgeBand, DateUnreadable, age_on, band_changes_on, band_of
from pledge.policy.ages import read_birth_date as read_date
from pledge.policy.document import PolicyDocument
from pledge.vault.rules import DATE_OF_BIRTH, Problem

PASS_LIFETIME = dt.timedelta(hours=1)


class ChildRefused(Exception):
    """The age screen refuses the submission: the person is under the minimum age and no
    parent's consent stands for them. Nothing was stored."""

    def __init__(self, collection_point: str, *, parent_possible: bool) -> None:
        super().__init__(collection_point)
        self.collection_point = collection_point
        self.parent_possible = parent_possible
        """Whether the policy lets a parent consent to a child's account."""


@dataclass(frozen=True)
class Screening:
    """What the screen found for one submission."""

    band: AgeBand | None
    """None when screened by an age pass (old enough, age not known) or not screened."""
    band_until: dt.date | None
    parental_consent_id: str | None


NOT_SCREENED = Screening(None, None, None)


def business_day(document: PolicyDocument, now: dt.datetime) -> dt.date:
    """Today in the business's time zone (the policy's `requests.timezone`)."""
    return now.astimezone(zoneinfo.ZoneInfo(document.requests.timezone)).date()


def issue_age_pass(
    keyring: Keyring,
    collection_point: str,
    now: dt.datetime,
    *,
    band: AgeBand = AgeBand.ADULT,
    band_until: dt.date | None = None,
) -> str:
    """A pass saying "screened and old enough for `collection_point`", good for an hour. It
    carries the person's age band (a 13-year-old is admitted, but is not an adult) and when
    that band ends, coarse (a month), never the date of birth."""
    until = str(int((now + PASS_LIFETIME).timestamp()))
    ends = band_until.isoformat() if band_until else "-"
    mac = _mac(keyring, "age", collection_point, until, band.value, ends)
    return f"{until}.{band.value}.{ends}.{mac}"


def issue_parental_pass(
    keyring: Keyring, consent_id: str, collection_point: str, now: dt.datetime
) -> str:
    """A pass saying "a parent consented (`consent_id`) to this child's account at
    `collection_point`", good for an hour."""
    until = str(int((now + PASS_LIFETIME).timestamp()))
    return f"{consent_id}.{until}.{_mac(keyring, 'parent', consent_id, collection_point, until)}"


def _mac(keyring: Keyring, *parts: str) -> str:
    return keyring.blind_index("screen-pass", "|".join(parts))


def _screen_birth_date(
    document: PolicyDocument,
    point_key: str,
    typed: str,
    *,
    field: str,
    consent_id: str | None,
    today: dt.date,
) -> tuple[Screening, list[Problem]]:
    children = document.children
    try:
        born = read_date(typed, today)
    except DateUnreadable as unreadable:
        return NOT_SCREENED, [Problem(("fields", field), str(unreadable))]
    band = band_of(age_on(born, today), children)
    until = band_changes_on(born, today, children)
    if consent_id is not None:
        return Screening(AgeBand.CHILD, until, consent_id), []
    if band is AgeBand.CHILD:
        raise ChildRefused(
            point_key, parent_possible=children.child_accounts == "with_parental_consent"
        )
    return Screening(band, until, None), []


def age_pass_of(
    keyring: Keyring, token: str | None, point: str, now: dt.datetime
) -> Screening | None:
    """The band a live age pass for `point` carries, or None for anything else."""
    if not token or len(token) > 200 or token.count(".") != 3:
        return None
    until, band, ends, mac = token.split(".")
    if not (
        until.isdigit()
        and int(until) > now.timestamp()
        and band in {AgeBand.TEEN.value, AgeBand.ADULT.value}
        and hmac.compare_digest(_mac(keyring, "age", point, until, band, ends), mac)
    ):
        return None
    try:
        band_until = None if ends == "-" else dt.date.fromisoformat(ends)
    except ValueError:
        return None
    return Screening(AgeBand(band), band_until, None)


def parental_consent_of(
    keyring: Keyring, token: str | None, point: str, now: dt.datetime
) -> str | None:
    """The consent ID a live parental pass for `point` carries, or None."""
    if not token or len(token) > 200 or token.count(".") != 2:
        return None
    consent_id, until, mac = token.split(".")
    valid = (
        until.isdigit()
        and int(until) > now.timestamp()
        and hmac.compare_digest(_mac(keyring, "parent", consent_id, point, until), mac)
    )
    return consent_id if valid else None


def screen_submission(
    keyring: Keyring,
    document: PolicyDocument,
    point_key: str,
    fields: Mapping[str, str],
    *,
    age_pass: str | None,
    parental_pass: str | None,
    now: dt.datetime,
) -> tuple[Screening, list[Problem]]:
    """Screen one submission; raise `ChildRefused` for a child no parent consented for.

    A date of birth in the submission is screened whatever the point (its band is kept), and
    one under the minimum age is refused anywhere without a parent's pass; a point marked
    `age_screen` without one needs a live age pass or a parental pass. Under a parent's pass
    the person is a child whatever date is typed (a child cannot make themselves older).
    Days are counted in the business's time zone, as everywhere else."""
    point = document.collection_points[point_key]
    today = business_day(document, now)
    consent_id = parental_consent_of(keyring, parental_pass, point_key, now)
    born_field = next(
        (name for name, spec in point.fields.items() if spec.category == DATE_OF_BIRTH), None
    )
    if born_field is not None and fields.get(born_field):
        return _screen_birth_date(
            document,
            point_key,
            fields[born_field],
            field=born_field,
            consent_id=consent_id,
            today=today,
        )
    if not point.age_screen:
        return NOT_SCREENED, []
    if consent_id is not None:
        return Screening(AgeBand.CHILD, None, consent_id), []
    passed = age_pass_of(keyring, age_pass, point_key, now)
    if passed is not None:
        return passed, []
    return NOT_SCREENED, [
        Problem(
            ("age_pass",),
            "this collection point screens ages first: give the pass the age screen issued "
            "(POST /v1/age-screen), or the date of birth",
        )
    ]
