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


def canonical_details(details: Mapping[str, Any]) -> str:
    """Details as canonical JSON, so the same details always hash the same."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(link: ChainLink) -> str:
    """SHA-256 over every field of the entry and the previous entry's hash."""
    at = link.at.astimezone(dt.UTC) if link.at.tzinfo else link.at.replace(tzinfo=dt.UTC)
    payload = json.dumps(
        [
            link.seq,
            at.isoformat(),
            link.actor,
            link.action,
            link.subject_id,
            link.purpose,
            link.details,
            link.prev_hash,
        ],
        separators=(",", ":"),
    )
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
