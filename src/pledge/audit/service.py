"""Audit use cases: append an entry inside the caller's transaction; verify the chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit.rules import ChainBreak, ChainLink, canonical_details, entry_hash, find_break
from pledge.audit.tables import AuditEntry, AuditHead

HEAD_ID = 1


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_id: str | None = None,
    purpose: str | None = None,
    details: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Append an entry in `session`'s transaction (so it commits or fails with the act itself).

    The head row is updated first: that takes its lock, so appends from concurrent
    transactions queue up behind each other and the chain never forks.
    """
    session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq + 1))
    head = session.execute(
        select(AuditHead).where(AuditHead.id == HEAD_ID).execution_options(populate_existing=True)
    ).scalar_one()
    # Under the lock taken above, the head still holds the hash of the entry before ours.
    prev_hash = head.hash
    link = ChainLink(
        seq=head.seq,
        at=now or dt.datetime.now(dt.UTC),
        actor=actor,
        action=action,
        subject_id=subject_id,
        purpose=purpose,
        details=canonical_details(details or {}),
        prev_hash=prev_hash,
    )
    digest = entry_hash(link)
    session.add(AuditEntry(**link.__dict__, hash=digest))
    head.hash = digest
    session.flush()
    return link.seq


def chain_head(sessions: sessionmaker[Session]) -> tuple[int, str]:
    """The last entry's number and hash: write them down elsewhere to anchor the chain."""
    with sessions() as session:
        head = session.get(AuditHead, HEAD_ID)
        return (head.seq, head.hash) if head else (0, "0" * 64)


def verify_chain(sessions: sessionmaker[Session]) -> tuple[int, ChainBreak | None]:
    """How many entries the log holds, and the first break in its chain (None if intact)."""
    with sessions() as session:
        head_row = session.get(AuditHead, HEAD_ID)
        head = (head_row.seq, head_row.hash) if head_row else None
        rows = session.scalars(
            select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=1000)
        )
        count = 0

        def links() -> Iterator[tuple[ChainLink, str]]:
            nonlocal count
            for row in rows:
                count += 1
                link = ChainLink(
                    row.seq,
                    row.at,
                    row.actor,
                    row.action,
                    row.subject_id,
                    row.purpose,
                    row.details,
                    row.prev_hash,
                )
                yield link, row.hash

        try:
            problem = find_break(links(), head)
        finally:
            rows.close()  # the scan may stop at the first break; release the server cursor
        return count, problem


def entries_for(sessions: sessionmaker[Session], subject_id: str) -> list[AuditEntry]:
    """Every entry about a subject, oldest first."""
    with sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.subject_id == subject_id)
                .order_by(AuditEntry.seq)
            )
        )
