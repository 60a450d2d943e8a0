"""Pure rules of the audit chain: how an entry is hashed, and how a chain is checked."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
"""The `prev_hash` of the first entry."""


@dataclass(frozen=True)
class ChainLink:
    """The fields of an entry that its hash covers."""

    seq: int
    at: dt.datetime
    actor: str
    action: str
    subject_id: str | None
    purpose: str | None
    details: str
    prev_hash: str


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
_COMPACT = json.JSONEncoder(separators=(",", ":"))
# Built once: `json.dumps` with options builds an encoder on every call, and an entry is
# written on every decision's path. The output is the same as `json.dumps` with these options.


def canonical_details(details: Mapping[str, Any]) -> str:
    """Details as canonical JSON, so the same details always hash the same."""
    return _CANONICAL.encode(details)


def hashed_time(at: dt.datetime) -> str:
    """How an entry's time enters its hash: ISO 8601 in UTC (a naive time is taken as UTC)."""
    return (at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)).isoformat()


def entry_hash(link: ChainLink) -> str:
    """SHA-256 over every field of the entry and the previous entry's hash."""
    return link_hash(
        link.seq,
        hashed_time(link.at),
        link.actor,
        link.action,
        link.subject_id,
        link.purpose,
        link.details,
        link.prev_hash,
    )


def link_hash(  # noqa: PLR0917 - the fields of a link, in the order they are hashed
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject_id: str | None,
    purpose: str | None,
    details: str,
    prev_hash: str,
) -> str:
    """`entry_hash` of a link given field by field, its time already as `hashed_time`."""
    payload = _COMPACT.encode([seq, at, actor, action, subject_id, purpose, details, prev_hash])
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """The first entry where the chain does not hold, and why."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}"


def find_break(
    entries: Iterable[tuple[ChainLink, str]], head: tuple[int, str] | None
) -> ChainBreak | None:
    """The first break in `entries` (ordered by seq, each with its stored hash), or None.

    An edited entry no longer matches its hash; an inserted or deleted one breaks the sequence
    or the link to its predecessor; entries deleted from the end no longer reach the head.
    """
    expected_seq, expected_prev = 1, GENESIS
    for link, stored in entries:
        if link.seq != expected_seq:
            what = "missing" if link.seq > expected_seq else "duplicated or inserted"
            return ChainBreak(link.seq, f"expected entry {expected_seq} here: an entry is {what}")
        if link.prev_hash != expected_prev:
            return ChainBreak(
                link.seq, "does not link to the entry before it (inserted or replaced)"
            )
        if entry_hash(link) != stored:
            return ChainBreak(link.seq, "its content does not match its hash (edited)")
        expected_seq, expected_prev = link.seq + 1, stored
    last_seq = expected_seq - 1
    head_seq, head_hash = head if head else (0, GENESIS)
    if (last_seq, expected_prev) != (head_seq, head_hash):
        return ChainBreak(
            last_seq + 1,
            f"the chain ends at entry {last_seq} but its head is entry {head_seq} "
            "(entries deleted from the end)",
        )
    return None
