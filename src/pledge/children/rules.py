"""Pure rules about children: a person's age from a date of birth, the neutral age screen, the
age bands decisions follow, the browser's retry block, and which parental-consent methods may
stand for what (COPPA, 16 CFR part 312, as amended in 2025; CCPA 1798.120(c) for 13 to 15).

No I/O: the date of birth typed at the screen is read here and dropped; nothing of it is kept.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
from dataclasses import dataclass

from pledge.policy.ages import (
    OLDEST,
    AgeBand,
    DateUnreadable,
    age_on,
    band_changes_on,
    band_of,
    read_birth_date,
)
from pledge.policy.document import Children, ParentalConsentMethod

__all__ = [
    "OLDEST",
    "RETRY_COOKIE",
    "AgeBand",
    "DateUnreadable",
    "MethodRefused",
    "Screened",
    "age_on",
    "band_changes_on",
    "band_of",
    "method_problem",
    "read_birth_date",
    "retry_blocked",
    "retry_token",
    "screen",
]


class Screened(enum.StrEnum):
    """What the age screen answers. Nothing in it, nor in the page, says where the line is."""

    ADMITTED = "admitted"
    REFUSED = "refused"
    """Under the minimum age, and the policy takes no child accounts."""
    PARENT_NEEDED = "parent_needed"
    """Under the minimum age; the policy lets a parent consent to a child account."""


def screen(born: dt.date, today: dt.date, children: Children) -> Screened:
    """The screen's answer for a date of birth."""
    if age_on(born, today) >= children.minimum_age:
        return Screened.ADMITTED
    if children.child_accounts == "with_parental_consent":
        return Screened.PARENT_NEEDED
    return Screened.REFUSED


# --- The retry block ------------------------------------------------------------------------

RETRY_COOKIE = "pledge_age"
"""The signed cookie that keeps a refused browser refused for the policy's `retry_block`."""


def retry_token(secret: bytes, until: dt.datetime) -> str:
    """A token that says only "this browser was refused until `until`", signed."""
    stamp = str(int(until.timestamp()))
    mac = hmac.new(secret, f"age-refused:{stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def retry_blocked(secret: bytes, token: str | None, now: dt.datetime) -> bool:
    """Whether `token` is a valid, unexpired retry block (a forged or stale one is not)."""
    if not token or "." not in token or len(token) > 200:
        return False
    stamp, mac = token.split(".", 1)
    if not stamp.isdigit():
        return False
    expected = hmac.new(secret, f"age-refused:{stamp}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, mac) and int(stamp) > now.timestamp()


# --- Parental consent -----------------------------------------------------------------------


@dataclass(frozen=True)
class MethodRefused:
    """Why a parental-consent method cannot stand for what was asked."""

    reason: str


def method_problem(
    method: ParentalConsentMethod, children: Children, *, third_party_disclosure: bool
) -> MethodRefused | None:
    """None if `method` may stand for this consent; otherwise why not. The policy must accept
    the method; "e-mail plus" is good only when nothing is disclosed to third parties
    (16 CFR 312.5(b)(2)(vi))."""
    if method not in children.parental_consent_methods:
        return MethodRefused(f"the policy does not accept '{method.value}' as parental consent")
    if method is ParentalConsentMethod.EMAIL_PLUS and third_party_disclosure:
        return MethodRefused(
            "e-mail plus is not enough when the child's information is disclosed to third "
            "parties: use another method"
        )
    return None
