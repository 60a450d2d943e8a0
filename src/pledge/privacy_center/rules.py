"""Pure rules of the privacy center: one-time codes, sessions, and the choices a person sees."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pledge.policy.document import LegalBasis, PolicyDocument

CODE_DIGITS = 6
CODE_LIFETIME = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 5
"""Wrong or right, a code can be tried this many times; then a new one must be asked for."""
MAX_CODES_PER_HOUR = 5
"""Codes sent to one address in an hour; more requests get the same answer and no mail."""
MAX_TRIES_PER_HOUR = 10
"""Code tries for one address in an hour, across all its codes: with 5 codes of 5 tries, a
guesser would otherwise get 25 tries an hour at one in a million each."""
SESSION_LIFETIME = dt.timedelta(minutes=30)


def new_code() -> str:
    """Six random digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(secret: bytes, challenge_id: str, code: str) -> str:
    """A keyed hash of a code: without the secret key a leaked table cannot be brute-forced."""
    return hmac.new(secret, f"{challenge_id}:{code}".encode(), hashlib.sha256).hexdigest()


def codes_match(secret: bytes, challenge_id: str, code: str, digest: str) -> bool:
    """Whether `code` is the challenge's, compared in constant time."""
    return hmac.compare_digest(code_digest(secret, challenge_id, code), digest)


def new_session_token() -> tuple[str, str]:
    """A session token for the cookie and the SHA-256 stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, session_digest(token)


def session_digest(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def form_token(secret: bytes, session_token: str) -> str:
    """The anti-forgery token of a session's forms (a site cannot read the cookie to make it)."""
    return hmac.new(secret, f"form:{session_token}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChoiceItem:
    """One choice the preferences page offers."""

    purpose: str
    group: str
    label: str
    description: str
    opt_out: bool
    """On until withdrawn (an opt-out purpose) rather than off until granted."""
    sale_or_sharing: bool


GROUPS = ("E-mail", "Post", "Sale and sharing", "Cookies and ads", "Other uses of your data")


def choice_items(document: PolicyDocument) -> list[ChoiceItem]:
    """Every choice a person can make, grouped: marketing e-mail, postal marketing, sale and
    sharing of their data, cookies, and any other purpose resting on consent or an opt-out."""
    cookie_purposes = {
        purpose: category.name
        for category in document.cookies.values()
        for purpose in category.purposes
    }
    items = []
    for key, purpose in document.purposes.items():
        if purpose.legal_basis not in {LegalBasis.CONSENT, LegalBasis.OPT_OUT}:
            continue
        sale_or_sharing = purpose.sale or purpose.sharing
        if key.startswith("marketing.communications.email"):
            group = GROUPS[0]
        elif key.startswith("marketing.communications.postal"):
            group = GROUPS[1]
        elif key in cookie_purposes:
            group = GROUPS[3]
        elif sale_or_sharing:
            group = GROUPS[2]
        else:
            group = GROUPS[4]
        items.append(
            ChoiceItem(
                purpose=key,
                group=group,
                label=purpose.name or key,
                description=purpose.description,
                opt_out=purpose.legal_basis is LegalBasis.OPT_OUT,
                sale_or_sharing=sale_or_sharing,
            )
        )
    return sorted(items, key=lambda item: (GROUPS.index(item.group), item.label))


def notice_text(item: ChoiceItem) -> str:
    """The words shown next to a choice: what the ledger's proof hash is computed from."""
    return f"{item.label}: {item.description}"
