"""Vault use cases. Each writes in one transaction together with its audit entry."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import record
from pledge.keyring import Keyring, SubjectKeyDestroyed
from pledge.policy import LoadedPolicy, PublishedVersion, current_version
from pledge.vault.redaction import PersonalDataScanner
from pledge.vault.rules import (
    IDENTITY_CATEGORIES,
    MAX_BATCH,
    MAX_VALUE_CHARS,
    IdentityInvalid,
    IdentityKind,
    Problem,
    Source,
    identities_in,
    normalize_identity,
    submission_problems,
    value_aad,
)
from pledge.vault.sealing import seal, unseal
from pledge.vault.tables import Identity, PersonalValue, Subject

log = logging.getLogger(__name__)


class CollectionRefused(Exception):
    """The submission breaks the policy or the limits; nothing was stored."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, p.path))}: {p.message}" for p in problems))


class NoPolicyInForce(Exception):
    """No published policy version is in force, so nothing can be collected or read."""


class UnknownPurpose(ValueError):
    """A purpose the policy in force does not declare."""


class SubjectNotFound(LookupError):
    """No subject has this ID."""


class SubjectErased(LookupError):
    """The subject was erased: its data can never be read again."""


class ValueNotFound(LookupError):
    """No current value has this ID."""


@dataclass(frozen=True)
class Submission:
    """Fields submitted at one collection point, for one person."""

    collection_point: str
    fields: Mapping[str, str]
    source: Source
    identity: tuple[IdentityKind, str] | None = None
    subject_id: str | None = None
    entered_by: str | None = None
    """The staff member who typed it in (phone, letter, meeting); needs source staff_entry."""


@dataclass(frozen=True)
class Collected:
    """What one submission stored."""

    subject_id: str
    created: bool
    value_ids: dict[str, int]
    findings: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredValue:
    """A decrypted value with its provenance, as a purpose-bound read returns it."""

    id: int
    category: str
    collection_point: str
    field: str
    value: str
    source: str
    entered_by: str | None
    collected_at: dt.datetime
    policy_version_id: int
    version: int
    redacted: str | None
    findings: dict[str, int] | None


@dataclass(frozen=True)
class SubjectData:
    """The answer to a purpose-bound read."""

    subject_id: str
    purpose: str
    policy_version: str
    categories: tuple[str, ...]
    values: list[StoredValue]


class Vault:
    """Subjects and their sealed personal data, reachable only through these use cases."""

    def __init__(
        self, sessions: sessionmaker[Session], keyring: Keyring, scanner: PersonalDataScanner
    ) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.scanner = scanner

    # --- collection ---------------------------------------------------------------------

    def collect(
        self, submissions: Sequence[Submission], *, actor: str, batch: bool = False
    ) -> list[Collected]:
        """Store every submission, or none: any problem refuses the whole batch.

        With `batch`, problems are located as `items.<index>...`, even in a batch of one.
        """
        version, policy = self._policy()
        problems = self._problems(policy, submissions, batch=batch)
        if problems:
            raise CollectionRefused(problems)
        try:
            return self._store(version, policy, submissions, actor)
        except IntegrityError:
            # Another process indexed one of these identities a moment ago: resolve again.
            return self._store(version, policy, submissions, actor)

    def _problems(
        self, policy: LoadedPolicy, submissions: Sequence[Submission], *, batch: bool
    ) -> list[Problem]:
        if len(submissions) > MAX_BATCH:
            return [Problem(("items",), f"more than {MAX_BATCH} submissions in one batch")]
        problems: list[Problem] = []
        for index, item in enumerate(submissions):
            prefix: tuple[str | int, ...] = ("items", index) if batch else ()
            found = submission_problems(
                policy.document,
                item.collection_point,
                item.fields,
                has_identity=item.identity is not None or item.subject_id is not None,
            )
            if item.identity is not None:
                try:
                    normalize_identity(*item.identity)
                except IdentityInvalid as invalid:
                    found.append(Problem(("identity", "value"), str(invalid)))
            if (item.source is Source.STAFF_ENTRY) != (item.entered_by is not None):
                found.append(
                    Problem(("entered_by",), "staff entries, and only they, name the staff member")
                )
            problems.extend(Problem((*prefix, *p.path), p.message) for p in found)
        return problems

    def _store(
        self,
        version: PublishedVersion,
        policy: LoadedPolicy,
        submissions: Sequence[Submission],
        actor: str,
    ) -> list[Collected]:
        now = dt.datetime.now(dt.UTC)
        new_subjects: list[str] = []
        try:
            with self.sessions() as session, session.begin():
                return [
                    self._store_one(
                        session,
                        version=version,
                        policy=policy,
                        item=item,
                        now=now,
                        actor=actor,
                        new_subjects=new_subjects,
                    )
                    for item in submissions
                ]
        except BaseException:
            # Keys are stored before the data they protect; these now protect nothing.
            for subject_id in new_subjects:
                self.keyring.destroy_data_key(subject_id)
            raise

    def _store_one(
        self,
        session: Session,
        *,
        version: PublishedVersion,
        policy: LoadedPolicy,
        item: Submission,
        now: dt.datetime,
        actor: str,
        new_subjects: list[str],
    ) -> Collected:
        subject_id, created, data_key = self._subject_for(session, policy, item, now, new_subjects)
        point = policy.document.collection_points[item.collection_point]
        value_ids: dict[str, int] = {}
        findings: dict[str, dict[str, int]] = {}
        for name, value in item.fields.items():
            spec = point.fields[name]
            row = PersonalValue(
                subject_id=subject_id,
                category=spec.category,
                collection_point=item.collection_point,
                field=name,
                source=item.source.value,
                entered_by=item.entered_by,
                policy_version_id=version.id,
                collected_at=now,
                version=1,
            )
            row.sealed = seal(data_key, value, _aad(row))
            if spec.scan_for_personal_data:
                findings[name] = self._attach_redaction(row, data_key, value)
            session.add(row)
            session.flush()
            value_ids[name] = row.id
        record(
            session,
            actor=actor,
            action="collect",
            subject_id=subject_id,
            details={
                "collection_point": item.collection_point,
                "fields": sorted(item.fields),
                "source": item.source.value,
                "entered_by": item.entered_by,
                "new_subject": created,
                "policy_version": version.version,
            },
        )
        return Collected(subject_id, created, value_ids, findings)

    def _attach_redaction(self, row: PersonalValue, data_key: bytes, value: str) -> dict[str, int]:
        scan = self.scanner.scan(value)
        row.redacted_sealed = seal(data_key, scan.redacted, _aad(row, redacted=True))
        row.findings = json.dumps(scan.findings, sort_keys=True)
        return scan.findings

    def _subject_for(
        self,
        session: Session,
        policy: LoadedPolicy,
        item: Submission,
        now: dt.datetime,
        new_subjects: list[str],
    ) -> tuple[str, bool, bytes]:
        identities = identities_in(policy.document, item.collection_point, item.fields)
        if item.identity is not None:
            kind, value = item.identity
            identities.insert(0, (kind, normalize_identity(kind, value)))
        digests = [
            (kind, self.keyring.blind_index(kind.value, value)) for kind, value in identities
        ]
        subject_id = item.subject_id
        if subject_id is not None:
            self._live_subject(session, subject_id)
        elif digests:
            kind, digest = digests[0]
            subject_id = session.scalar(
                select(Identity.subject_id).where(
                    Identity.kind == kind.value, Identity.digest == digest
                )
            )
        created = subject_id is None
        if subject_id is None:
            subject_id = str(uuid.uuid4())
            data_key = self.keyring.create_data_key(subject_id)
            new_subjects.append(subject_id)
            session.add(Subject(id=subject_id, created_at=now))
            session.flush()
        else:
            data_key = self._data_key(subject_id)
        self._index(session, subject_id, digests, now)
        return subject_id, created, data_key

    def _index(
        self,
        session: Session,
        subject_id: str,
        digests: Sequence[tuple[IdentityKind, str]],
        now: dt.datetime,
    ) -> None:
        """Index the identities not indexed yet; one already another subject's stays theirs."""
        known = {
            (kind, digest)
            for kind, digest in session.execute(
                select(Identity.kind, Identity.digest).where(
                    Identity.digest.in_([d for _, d in digests])
                )
            )
        }
        for kind, digest in dict.fromkeys(digests):
            if (kind.value, digest) not in known:
                session.add(
                    Identity(subject_id=subject_id, kind=kind.value, digest=digest, created_at=now)
                )
        session.flush()

    # --- reading --------------------------------------------------------------------------

    def read(self, subject_id: str, purpose: str, *, actor: str) -> SubjectData:
        """The subject's current values in the categories `purpose` may use; audited."""
        version, policy = self._policy()
        if purpose not in policy.document.purposes:
            raise UnknownPurpose(purpose)
        allowed = policy.purpose_map.allowed_categories(purpose)
        with self.sessions() as session, session.begin():
            self._live_subject(session, subject_id)
            rows = session.scalars(
                select(PersonalValue)
                .where(
                    PersonalValue.subject_id == subject_id,
                    PersonalValue.superseded_at.is_(None),
                    PersonalValue.category.in_(sorted(allowed)),
                )
                .order_by(PersonalValue.id)
            ).all()
            data_key = self._data_key(subject_id)
            values = [self._open(row, data_key) for row in rows]
            record(
                session,
                actor=actor,
                action="read",
                subject_id=subject_id,
                purpose=purpose,
                details={"categories": sorted({v.category for v in values}), "values": len(values)},
            )
        return SubjectData(subject_id, purpose, version.version, tuple(sorted(allowed)), values)

    def history(
        self, subject_id: str, value_id: int, purpose: str, *, actor: str
    ) -> list[StoredValue]:
        """Every version of one value, oldest first, if `purpose` may use its category."""
        _, policy = self._policy()
        if purpose not in policy.document.purposes:
            raise UnknownPurpose(purpose)
        with self.sessions() as session, session.begin():
            self._live_subject(session, subject_id)
            chain = self._version_chain(session, subject_id, value_id)
            if not chain or not policy.purpose_map.permits(purpose, chain[0].category):
                raise ValueNotFound(value_id)
            data_key = self._data_key(subject_id)
            record(
                session,
                actor=actor,
                action="read.history",
                subject_id=subject_id,
                purpose=purpose,
                details={"value_id": value_id, "versions": len(chain)},
            )
            return [self._open(row, data_key) for row in chain]

    def _version_chain(
        self, session: Session, subject_id: str, value_id: int
    ) -> list[PersonalValue]:
        row = session.get(PersonalValue, value_id)
        if row is None or row.subject_id != subject_id:
            return []
        chain = [row]
        while chain[0].replaces_id is not None:
            previous = session.get(PersonalValue, chain[0].replaces_id)
            if previous is None:
                break
            chain.insert(0, previous)
        return chain

    def _open(self, row: PersonalValue, data_key: bytes) -> StoredValue:
        redacted = None
        if row.redacted_sealed is not None:
            redacted = unseal(data_key, row.redacted_sealed, _aad(row, redacted=True))
        return StoredValue(
            id=row.id,
            category=row.category,
            collection_point=row.collection_point,
            field=row.field,
            value=unseal(data_key, row.sealed, _aad(row)),
            source=row.source,
            entered_by=row.entered_by,
            collected_at=row.collected_at,
            policy_version_id=row.policy_version_id,
            version=row.version,
            redacted=redacted,
            findings=json.loads(row.findings) if row.findings else None,
        )

    # --- correction -----------------------------------------------------------------------

    def correct(
        self,
        subject_id: str,
        value_id: int,
        new_value: str,
        *,
        actor: str,
        source: Source,
        entered_by: str | None = None,
    ) -> int:
        """Store `new_value` as the next version of a value; the old version is kept.

        Correcting an e-mail, phone, social account or device also moves the subject's index
        from the old identity to the new one.
        """
        if not new_value.strip() or len(new_value) > MAX_VALUE_CHARS:
            raise CollectionRefused(
                [Problem(("value",), f"must have 1 to {MAX_VALUE_CHARS} characters")]
            )
        version, _ = self._policy()
        now = dt.datetime.now(dt.UTC)
        with self.sessions() as session, session.begin():
            self._live_subject(session, subject_id)
            old = session.get(PersonalValue, value_id)
            if old is None or old.subject_id != subject_id or old.superseded_at is not None:
                raise ValueNotFound(value_id)
            data_key = self._data_key(subject_id)
            kind = IDENTITY_CATEGORIES.get(old.category)
            if kind is not None:
                self._move_identity(
                    session,
                    subject_id=subject_id,
                    kind=kind,
                    old_value=unseal(data_key, old.sealed, _aad(old)),
                    new_value=new_value,
                    now=now,
                )
            row = PersonalValue(
                subject_id=subject_id,
                category=old.category,
                collection_point=old.collection_point,
                field=old.field,
                source=source.value,
                entered_by=entered_by,
                policy_version_id=version.id,
                collected_at=now,
                version=old.version + 1,
                replaces_id=old.id,
            )
            row.sealed = seal(data_key, new_value, _aad(row))
            if old.redacted_sealed is not None:
                self._attach_redaction(row, data_key, new_value)
            old.superseded_at = now
            session.add(row)
            session.flush()
            record(
                session,
                actor=actor,
                action="correct",
                subject_id=subject_id,
                details={
                    "value_id": old.id,
                    "new_value_id": row.id,
                    "field": old.field,
                    "category": old.category,
                    "version": row.version,
                    "policy_version": version.version,
                },
            )
            return row.id

    def _move_identity(
        self,
        session: Session,
        *,
        subject_id: str,
        kind: IdentityKind,
        old_value: str,
        new_value: str,
        now: dt.datetime,
    ) -> None:
        try:
            new_normal = normalize_identity(kind, new_value)
        except IdentityInvalid as invalid:
            raise CollectionRefused([Problem(("value",), str(invalid))]) from None
        old_digest = self.keyring.blind_index(kind.value, normalize_identity(kind, old_value))
        session.execute(
            delete(Identity).where(
                Identity.subject_id == subject_id,
                Identity.kind == kind.value,
                Identity.digest == old_digest,
            )
        )
        self._index(
            session, subject_id, [(kind, self.keyring.blind_index(kind.value, new_normal))], now
        )

    # --- erasure and lookup ---------------------------------------------------------------

    def shred(self, subject_id: str, *, actor: str, reason: str) -> bool:
        """Erase a subject for good: key destroyed first, then identities and values deleted.

        Returns false if the subject was already erased. Once the key is gone no copy of the
        database, however old, can be decrypted for this subject.
        """
        with self.sessions() as session:
            subject = session.get(Subject, subject_id)
            if subject is None:
                raise SubjectNotFound(subject_id)
            already = subject.shredded_at is not None
        # The key goes first: if what follows fails, the data is already unreadable, and a
        # second call finishes the job. It goes even when the subject was erased before: a
        # restored key store may have brought the key back.
        key_existed = self.keyring.destroy_data_key(subject_id)
        if already:
            if key_existed:
                log.warning(
                    "subject %s was erased before, but its key was back; destroyed", subject_id
                )
            return False
        with self.sessions() as session, session.begin():
            identities = _deleted(
                session, delete(Identity).where(Identity.subject_id == subject_id)
            )
            values = _deleted(
                session, delete(PersonalValue).where(PersonalValue.subject_id == subject_id)
            )
            session.execute(
                update(Subject)
                .where(Subject.id == subject_id)
                .values(shredded_at=dt.datetime.now(dt.UTC))
            )
            record(
                session,
                actor=actor,
                action="shred",
                subject_id=subject_id,
                details={
                    "reason": reason,
                    "identities": identities,
                    "values": values,
                },
            )
        log.info("subject %s erased", subject_id)
        return True

    def resolve(self, kind: IdentityKind, value: str, *, actor: str) -> str | None:
        """The ID of the subject an identity belongs to, or None; audited either way."""
        digest = self.keyring.blind_index(kind.value, normalize_identity(kind, value))
        with self.sessions() as session, session.begin():
            subject_id = session.scalar(
                select(Identity.subject_id).where(
                    Identity.kind == kind.value, Identity.digest == digest
                )
            )
            record(
                session,
                actor=actor,
                action="resolve",
                subject_id=subject_id,
                details={"kind": kind.value, "found": subject_id is not None},
            )
        return subject_id

    # --- shared -------------------------------------------------------------------------------

    def _policy(self) -> tuple[PublishedVersion, LoadedPolicy]:
        found = current_version(self.sessions)
        if found is None:
            raise NoPolicyInForce("no policy version is in force: publish one first")
        return found

    def _live_subject(self, session: Session, subject_id: str) -> Subject:
        subject = session.get(Subject, subject_id)
        if subject is None:
            raise SubjectNotFound(subject_id)
        if subject.shredded_at is not None:
            raise SubjectErased(subject_id)
        return subject

    def _data_key(self, subject_id: str) -> bytes:
        try:
            return self.keyring.data_key(subject_id)
        except SubjectKeyDestroyed:
            raise SubjectErased(subject_id) from None


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE and say how many rows it removed."""
    result = session.execute(statement)
    return int(cast("CursorResult[Any]", result).rowcount)


def _aad(row: PersonalValue, *, redacted: bool = False) -> bytes:
    field = f"{row.field}#redacted" if redacted else row.field
    return value_aad(row.subject_id, row.collection_point, row.category, field, row.version)
