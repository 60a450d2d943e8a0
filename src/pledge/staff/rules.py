"""Pure rules of staff access: the roles, what each may do, and how logins are limited.

The role matrix is the one place that says who may do what in the admin console; every
console route names the permission it needs, and a test checks every route against this
table for every role."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets

import pyotp


class Role(enum.StrEnum):
    """What a staff member is there to do."""

    ADMIN = "admin"
    """Runs Pledge: staff accounts, and everything a privacy officer does."""
    PRIVACY_OFFICER = "privacy_officer"
    """Owns the privacy program: decides requests (approve, deny, extend), reads the audit log."""
    SUPPORT_AGENT = "support_agent"
    """Works the queue with people: enters requests received by e-mail, phone or post, verifies
    and acknowledges them; decides nothing."""
    AUDITOR = "auditor"
    """Checks what was done: the queue and its records, the audit log; never a person's data."""


class Permission(enum.StrEnum):
    """One thing the console lets a staff member do."""

    VIEW_QUEUE = "view_queue"
    """See the request queue and a request's state, deadlines and history (no personal data)."""
    VIEW_REQUESTER = "view_requester"
    """See a request's sealed details (the requester's address, residence, agent, corrections),
    for the purpose of answering it; every view is audited."""
    ENTER_REQUEST = "enter_request"
    """Type in a request received by e-mail, phone or post."""
    VERIFY_REQUEST = "verify_request"
    """Record that the person's identity was checked, or that a request was acknowledged."""
    DECIDE_REQUEST = "decide_request"
    """Approve, deny or extend a request."""
    EXPORT_RECORDS = "export_records"
    """Download the request records as CSV."""
    READ_AUDIT = "read_audit"
    """Read the audit log and check its hash chain."""
    MANAGE_CHILDREN = "manage_children"
    """Check the evidence of parents' consents, and flag a subject as a child."""
    MANAGE_STAFF = "manage_staff"
    """Create staff accounts, change their roles, disable them."""


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.PRIVACY_OFFICER: frozenset(Permission) - {Permission.MANAGE_STAFF},
    Role.SUPPORT_AGENT: frozenset(
        {
            Permission.VIEW_QUEUE,
            Permission.VIEW_REQUESTER,
            Permission.ENTER_REQUEST,
            Permission.VERIFY_REQUEST,
        }
    ),
    Role.AUDITOR: frozenset(
        {Permission.VIEW_QUEUE, Permission.EXPORT_RECORDS, Permission.READ_AUDIT}
    ),
}
"""The role matrix."""


def allows(role: Role, permission: Permission) -> bool:
    """Whether `role` may do `permission`."""
    return permission in ROLE_PERMISSIONS[role]


# --- Accounts ------------------------------------------------------------------------------------

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,39}$")
"""Lowercase letters, digits, dots, dashes and underscores; 2 to 40 characters."""
PASSWORD_MIN = 12
PASSWORD_MAX = 256


class AccountRefused(ValueError):
    """A username, password or role that cannot be used."""


def check_username(username: str) -> str:
    """The username, or raise `AccountRefused` saying what is wrong."""
    if not USERNAME.fullmatch(username):
        raise AccountRefused(
            "a username is 2 to 40 lowercase letters, digits, dots, dashes or underscores, "
            "starting with a letter"
        )
    return username


def check_password(password: str, username: str) -> str:
    """The password, or raise `AccountRefused`: 12 to 256 characters, not the username."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountRefused(
            f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters; a few words make a "
            "good one"
        )
    if username.casefold() in password.casefold():
        raise AccountRefused("a password may not contain the username")
    return password


# --- Logging in ----------------------------------------------------------------------------------

MAX_FAILURES = 5
"""Failed logins in a row before an account is locked."""
LOCKOUT = dt.timedelta(minutes=15)
"""How long a locked account refuses every login, right or wrong."""
SESSION_IDLE = dt.timedelta(minutes=30)
"""A console session ends after this long without a request."""
SESSION_MAX = dt.timedelta(hours=8)
"""... and this long after it started, whatever happens."""
TOTP_DRIFT_STEPS = 1
"""A code from the 30-second step before or after the server's is accepted (clock drift)."""


def new_totp_secret() -> str:
    """A random base32 TOTP secret (160 bits, RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, username: str, issuer: str) -> str:
    """The `otpauth://` URI an authenticator app reads (as a QR code or typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def totp_step(secret: str, code: str, now: dt.datetime, last_step: int | None) -> int | None:
    """The time step a 6-digit `code` belongs to, within the allowed drift, if it is later
    than `last_step` (a code is good once: a code seen over a shoulder cannot be replayed);
    None when it matches no allowed step."""
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected, code) and (last_step is None or step > last_step):
            return step
    return None


def locked_until(failures: int, last_failure: dt.datetime | None) -> dt.datetime | None:
    """When an account with `failures` failed logins in a row, the last at `last_failure`,
    opens again; None if it is not locked."""
    if failures < MAX_FAILURES or last_failure is None:
        return None
    return last_failure + LOCKOUT


def new_session_token() -> str:
    """A 256-bit session token, for the staff member's cookie only."""
    return secrets.token_urlsafe(32)


def session_digest(token: str) -> str:
    """What the database keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def form_token(secret: bytes, session_token: str) -> str:
    """The anti-forgery token of a session's forms: another site cannot compute it."""
    return hmac.new(secret, f"console:{session_token}".encode(), hashlib.sha256).hexdigest()


def form_token_ok(secret: bytes, session_token: str, given: object) -> bool:
    """Whether `given` is the session's anti-forgery token."""
    return isinstance(given, str) and hmac.compare_digest(form_token(secret, session_token), given)
