"""Audit use cases: append an entry inside the caller's transaction; verify the chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Select, Table, Update, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import ReturningUpdate

from pledge.audit.rules import (
    ChainBreak,
    ChainLink,
    canonical_details,
    find_break,
    hashed_time,
    link_hash,
)
from pledge.audit.tables import AuditEntry, AuditHead, ChainHeadColumns

HEAD_ID = 1


@dataclass(frozen=True)
class Act:
    """One act to audit: who did what, to which subject, for which purpose."""

    actor: str
    action: str
    subject_id: str | None = None
    purpose: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


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
    """Append an entry in `session`'s transaction (so it commits or fails with the act itself)."""
    act = Act(actor, action, subject_id, purpose, details or {})
    return record_many(session, [act], now=now)[0]


def record_many(
    session: Session, acts: Sequence[Act], *, now: dt.datetime | None = None
) -> list[int]:
    """Append entries for `acts`, in order, in `session`'s transaction; their sequence numbers.

    The head row is updated first: that takes its lock, so appends from concurrent
    transactions queue up behind each other and the chain never forks.
    """
    if not acts:
        return []
    first_seq, prev_hash = reserve_chain(session, AuditHead, len(acts))
    at = now or dt.datetime.now(dt.UTC)
    at_hashed = hashed_time(at)
    rows: list[dict[str, Any]] = []
    for seq, act in enumerate(acts, start=first_seq):
        details = canonical_details(act.details)
        row = {
            "seq": seq,
            "at": at,
            "actor": act.actor,
            "action": act.action,
            "subject_id": act.subject_id,
            "purpose": act.purpose,
            "details": details,
            "prev_hash": prev_hash,
        }
        prev_hash = row["hash"] = link_hash(
            seq, at_hashed, act.actor, act.action, act.subject_id, act.purpose, details, prev_hash
        )
        rows.append(row)
    session.execute(_INSERT_ENTRIES, rows)
    advance_chain(session, AuditHead, prev_hash)
    return list(range(first_seq, first_seq + len(acts)))


_INSERT_ENTRIES = insert(cast("Table", AuditEntry.__table__))
"""Built once: an append is on every request's path, and building a statement costs more than
running it (SQLAlchemy caches a statement's compiled form, not the statement object)."""


def reserve_chain(session: Session, head: type[ChainHeadColumns], count: int) -> tuple[int, str]:
    """Lock a chain's head row and reserve `count` sequence numbers, in `session`'s transaction.

    Returns the first reserved number and the hash the first new link must point to. The row
    stays locked until the transaction ends, so concurrent appenders queue up and the chain
    never forks; finish with `advance_chain`.
    """
    bumped = session.execute(_head_statements(head)[0], {"count": count}).one()
    # Under the lock just taken, the head still holds the hash of the link before ours.
    return bumped.seq - count + 1, bumped.hash


def lock_chain(session: Session, head: type[ChainHeadColumns]) -> None:
    """Lock a chain's head row, in `session`'s transaction, before reading what the next links
    depend on (a check of the state they change): a concurrent appender waits here, not after
    its check, so no two transactions both pass a check made on a state the other is changing.
    `reserve_chain` later in the same transaction finds the row already locked. (On SQLite the
    transaction holds the database's write lock from its start: FOR UPDATE is not needed.)"""
    built = _LOCK_STATEMENTS.get(head)
    if built is None:
        table = cast("Table", head.__table__)  # type: ignore[attr-defined]  # a mixin, as below
        built = _LOCK_STATEMENTS[head] = (
            select(table.c.seq).where(table.c.id == HEAD_ID).with_for_update()
        )
    session.execute(built)


_LOCK_STATEMENTS: dict[type[ChainHeadColumns], Select[Any]] = {}


def advance_chain(session: Session, head: type[ChainHeadColumns], last_hash: str) -> None:
    """Record the hash of the last link appended after `reserve_chain`."""
    session.execute(_head_statements(head)[1], {"last_hash": last_hash})


def _head_statements(head: type[ChainHeadColumns]) -> tuple[ReturningUpdate[Any], Update]:
    """A chain head's two statements, built once (see `_INSERT_ENTRIES`), as plain table
    statements: no ORM object ever holds a head row in these sessions."""
    built = _HEAD_STATEMENTS.get(head)
    if built is not None:
        return built
    table = cast("Table", head.__table__)  # type: ignore[attr-defined]  # a mixin of mapped classes
    reserve = (
        update(table)
        .where(table.c.id == HEAD_ID)
        .values(seq=table.c.seq + bindparam("count"))
        .returning(table.c.seq, table.c.hash)
    )
    advance = update(table).where(table.c.id == HEAD_ID).values(hash=bindparam("last_hash"))
    _HEAD_STATEMENTS[head] = reserve, advance
    return reserve, advance


_HEAD_STATEMENTS: dict[type[ChainHeadColumns], tuple[ReturningUpdate[Any], Update]] = {}


def audited_up_to(session: Session) -> int:
    """The number of the last entry that `session`'s transaction sees (0 for none)."""
    return session.execute(_AUDITED_UP_TO).scalar_one_or_none() or 0


def audited_since(session: Session, seq: int, subject_ids: Sequence[str]) -> bool:
    """Lock the audit chain in `session`'s transaction, then say whether anything but a
    decision was audited about any of `subject_ids` after entry `seq`. Every change to what
    a decision reads (a consent event, a freeze, an age band, an erasure, a collection) is
    audited with its subject in the same transaction, so `False` means that state is still
    as it was at entry `seq`, and stays so until the transaction ends.

    It reads the entries after `seq` in order (the few a snapshot a moment old did not see),
    never the people's histories: on PostgreSQL, a lookup by subject turned into a scan of
    the whole log once it was long. Past `CHANGES_LOOKED_AT` changes it answers `True`, which
    is always safe: the caller decides again under the lock."""
    lock_chain(session, AuditHead)
    changed = session.scalars(_CHANGES_SINCE, {"seq": seq}).all()
    if len(changed) > CHANGES_LOOKED_AT:
        return True
    wanted = set(subject_ids)
    return any(subject_id in wanted for subject_id in changed)


CHANGES_LOOKED_AT = 1000
"""Entries other than decisions that `audited_since` looks through before it answers `True`."""
_ENTRIES = cast("Table", AuditEntry.__table__)
_AUDITED_UP_TO = select(cast("Table", AuditHead.__table__).c.seq).where(
    cast("Table", AuditHead.__table__).c.id == HEAD_ID
)
_CHANGES_SINCE = (
    select(_ENTRIES.c.subject_id)
    .where(_ENTRIES.c.seq > bindparam("seq"), _ENTRIES.c.action != "decide")
    .order_by(_ENTRIES.c.seq)
    .limit(CHANGES_LOOKED_AT + 1)
)
"""Walks the primary key from `seq` on, whatever plan PostgreSQL caches for it."""


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


def recent_entries(
    sessions: sessionmaker[Session],
    *,
    before: int | None = None,
    action: str | None = None,
    subject_id: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries newest first, older than `before` (a sequence number) if given, optionally of
    one action or about one subject: a page of the log for staff to read."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    if action:
        query = query.where(AuditEntry.action == action)
    if subject_id:
        query = query.where(AuditEntry.subject_id == subject_id)
    with sessions() as session:
        return list(session.scalars(query))
