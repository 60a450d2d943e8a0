"""Policy use cases: publishing versions and finding the one in force."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import record
from pledge.policy.loader import LoadedPolicy, load_policy_text
from pledge.policy.tables import PolicyVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedVersion:
    """A stored policy version, as callers see it."""

    id: int
    version: str
    content_hash: str
    effective_date: dt.date
    material: bool
    published_at: dt.datetime
    published_by: str

    @classmethod
    def of(cls, row: PolicyVersion) -> PublishedVersion:
        """The public view of a stored row."""
        return cls(
            id=row.id,
            version=row.version,
            content_hash=row.content_hash,
            effective_date=row.effective_date,
            material=row.material,
            published_at=row.published_at.replace(tzinfo=dt.UTC)
            if row.published_at.tzinfo is None
            else row.published_at,
            published_by=row.published_by,
        )


@dataclass(frozen=True)
class PublishOutcome:
    """What publishing did: `created` is false when that content was already published."""

    version: PublishedVersion
    created: bool


def publish_policy(
    sessions: sessionmaker[Session],
    policy: LoadedPolicy,
    *,
    published_by: str,
    now: dt.datetime | None = None,
) -> PublishOutcome:
    """Store `policy` as an immutable version; publishing the same content again changes nothing."""
    with sessions() as session:
        existing = _by_hash(session, policy.content_hash)
        if existing is not None:
            return PublishOutcome(PublishedVersion.of(existing), created=False)
        row = PolicyVersion(
            content_hash=policy.content_hash,
            version=policy.document.version,
            effective_date=policy.document.effective_date,
            material=policy.document.material,
            published_at=now or dt.datetime.now(dt.UTC),
            published_by=published_by,
            source_text=policy.source_text,
        )
        session.add(row)
        try:
            session.flush()
            record(
                session,
                actor=published_by,
                action="policy.publish",
                details={
                    "version": row.version,
                    "content_hash": row.content_hash,
                    "effective_date": row.effective_date.isoformat(),
                    "material": row.material,
                },
            )
            session.commit()
        except IntegrityError:
            # Another process published the same content a moment before us.
            session.rollback()
            raced = _by_hash(session, policy.content_hash)
            if raced is None:
                raise
            return PublishOutcome(PublishedVersion.of(raced), created=False)
        log.info("published policy version %s (%s)", row.version, row.content_hash[:12])
        return PublishOutcome(PublishedVersion.of(row), created=True)


def list_versions(sessions: sessionmaker[Session]) -> list[PublishedVersion]:
    """Every published version, newest first."""
    with sessions() as session:
        rows = session.scalars(
            select(PolicyVersion).order_by(
                PolicyVersion.published_at.desc(), PolicyVersion.id.desc()
            )
        )
        return [PublishedVersion.of(row) for row in rows]


def current_version(
    sessions: sessionmaker[Session], *, today: dt.date | None = None
) -> tuple[PublishedVersion, LoadedPolicy] | None:
    """The version in force: the latest published whose effective date has come."""
    today = today or dt.datetime.now(dt.UTC).date()
    with sessions() as session:
        row = session.scalars(_IN_FORCE, {"today": today}).first()
        if row is None:
            return None
        return PublishedVersion.of(row), _load_stored(row)


def policy_in_force(session: Session, *, today: dt.date | None = None) -> LoadedPolicy | None:
    """The policy in force, read in `session`'s transaction, so that a request's other work sees
    the same version. Only its content hash is read each time; its text is parsed once."""
    params = {"today": today or dt.datetime.now(dt.UTC).date()}
    content_hash = session.scalars(_HASH_IN_FORCE, params).first()
    if content_hash is None:
        return None
    loaded = _parsed.get(content_hash)
    if loaded is None:
        row = session.scalars(_IN_FORCE, params).first()
        loaded = None if row is None else _load_stored(row)
    return loaded


_IN_FORCE = (
    select(PolicyVersion)
    .where(PolicyVersion.effective_date <= bindparam("today"))
    .order_by(PolicyVersion.published_at.desc(), PolicyVersion.id.desc())
    .limit(1)
)
"""The latest version whose effective date has come; built once, as it is read on every request."""
_HASH_IN_FORCE = _IN_FORCE.with_only_columns(PolicyVersion.content_hash)


def find_version(
    sessions: sessionmaker[Session], ref: str
) -> tuple[PublishedVersion, LoadedPolicy] | None:
    """A published version by its id, its version label or a prefix of its content hash (≥ 8)."""
    with sessions() as session:
        query = select(PolicyVersion).order_by(PolicyVersion.id.desc())
        if ref.isdigit():
            row = session.get(PolicyVersion, int(ref))
        elif len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref):
            row = session.scalars(query.where(PolicyVersion.content_hash.startswith(ref))).first()
        else:
            row = session.scalars(query.where(PolicyVersion.version == ref)).first()
        return None if row is None else (PublishedVersion.of(row), _load_stored(row))


def _by_hash(session: Session, content_hash: str) -> PolicyVersion | None:
    return session.scalars(
        select(PolicyVersion).where(PolicyVersion.content_hash == content_hash)
    ).first()


_parsed: dict[str, LoadedPolicy] = {}
"""Stored versions parsed once per process: a version never changes, so neither does this."""


def _load_stored(row: PolicyVersion) -> LoadedPolicy:
    # A stored version passed validation when published; loading it again re-checks it against
    # this release's rules, so a stored policy that a newer Pledge refuses is noticed.
    loaded = _parsed.get(row.content_hash)
    if loaded is None:
        loaded = load_policy_text(row.source_text, f"policy version {row.version} (#{row.id})")
        _parsed[row.content_hash] = loaded
    return loaded
