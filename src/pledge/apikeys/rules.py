"""Pure rules of API keys: the scopes there are, and whether a key's scopes allow an act."""

from __future__ import annotations

import re
from collections.abc import Iterable

FIXED_SCOPES = {
    "collect": "record personal data at a collection point",
    "resolve": "find a subject's ID from an identity (e-mail, phone, ...)",
    "correct": "write a corrected version of a stored value",
    "shred": "erase a subject (crypto-shredding)",
    "policy:read": "read the policy in force and its versions",
    "consent:write": "record a person's grant or withdrawal of consent",
    "consent:read": "read a person's consent choices and their history",
    "decide": "ask whether a use of personal data is allowed",
    "mail:send": "send marketing e-mail (each message is checked again right before sending)",
    "jobs:read": "see background jobs: their state, attempts and last error",
    "jobs:write": "retry a background job that failed",
    "requests:read": "see privacy requests, their deadlines and history, and export the records",
    "requests:write": "receive privacy requests and verify, approve, deny or extend them",
    "children:read": "see parental consents (never a parent's address)",
    "children:write": "flag a subject as a child (frozen, then erased unless a parent consents)",
    "children:verify": "report a parent verified by a card payment or knowledge-based questions",
}
"""Scopes that are not about a purpose, with what each lets a key do."""

READ_SCOPE = re.compile(r"^read:([A-Za-z0-9_.-]+|\*)\Z")
"""`read:<purpose>` reads the categories that purpose may use; `read:*` any purpose."""

TOKEN_PATTERN = re.compile(r"^pledge_([a-z0-9]{12})_([A-Za-z0-9_-]{43})\Z")
"""A key as presented: `pledge_<prefix>_<secret>`."""


def scope_problem(scope: str) -> str | None:
    """Why `scope` is not a valid scope, or None."""
    if scope in FIXED_SCOPES or READ_SCOPE.fullmatch(scope):
        return None
    known = ", ".join([*sorted(FIXED_SCOPES), "read:<purpose>", "read:*"])
    return f"unknown scope '{scope}' (known: {known})"


def allows(scopes: Iterable[str], required: str) -> bool:
    """Whether a key holding `scopes` may do what `required` names."""
    held = set(scopes)
    if required in held:
        return True
    return required.startswith("read:") and "read:*" in held
