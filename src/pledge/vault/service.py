"""Vault use cases. Each writes in one transaction together with its audit entry."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Delete, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import Act, record, record_many
from pledge.keyring import Keyring, SubjectKeyDestroyed
from pledge.policy import LoadedPolicy, PublishedVersion, current_version
from pledge.policy.ages import AgeBand
from pledge.policy.document import LegalBasis
from pledge.vault.redaction import PersonalDataScanner
from pledge.vault.rules import (
    IDENTITY_CATEGORIES,
    MAX_BATCH,
    MAX_VALUE_CHARS,
    IdentityInvalid,
    IdentityKind,
    KeptByLaw,
    Problem,
    Source,
    identities_in,
    kept_by_law,
    normalize_identity,
    submission_problems,
    value_aad,
)
from pledge.vault.screening import (
    Screening,
    issue_age_pass,
    issue_parental_pass,
    parental_consent_of,
    screen_submission,
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


class SubjectFrozen(LookupError):
    """The subject is a child found without a parent's consent: it is read only for what the
    law requires (answering requests, erasure) until a parent consents or it is erased."""


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
    age_pass: str | None = None
    """The age screen's pass, for a collection point that screens ages (`vault.screening`)."""
    parental_pass: str | None = None
    """For a child's account: the pass for the parent's consent it is opened under."""


@dataclass(frozen=True)
class _SubjectPlan:
    """Where one submission goes: its subject, whether it is new, and its identities' digests."""

    subject_id: str
    created: bool
    digests: list[tuple[IdentityKind, str]]


@dataclass(frozen=True)
class Retained:
    """Values of one category an erasure kept, why, and until when."""

    category: str
    reason: str
    until: dt.datetime
    values: int


@dataclass(frozen=True)
class Erasure:
    """What an erasure did."""

    erased: bool
    """False if the subject had been erased before."""
    kept_as: str | None
    """The frozen record holding what the law keeps (None: nothing was kept)."""
    retained: tuple[Retained, ...]


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
        screenings = self._screen(policy, submissions, batch=batch)
        try:
            return self._store(version, policy, submissions, actor, screenings)
        except IntegrityError:
            # Another process indexed one of these identities a moment ago: resolve again.
            return self._store(version, policy, submissions, actor, screenings)

    def _screen(
        self, policy: LoadedPolicy, submissions: Sequence[Submission], *, batch: bool
    ) -> list[Screening]:
        """The age screen's answer for each submission; raise `ChildRefused` or
        `CollectionRefused` before anything is stored."""
        now = dt.datetime.now(dt.UTC)
        screenings: list[Screening] = []
        problems: list[Problem] = []
        for index, item in enumerate(submissions):
            screening, found = screen_submission(
                self.keyring,
                policy.document,
                item.collection_point,
                item.fields,
                age_pass=item.age_pass,
                parental_pass=item.parental_pass,
                now=now,
            )
            prefix: tuple[str | int, ...] = ("items", index) if batch else ()
            problems.extend(Problem((*prefix, *p.path), p.message) for p in found)
            screenings.append(screening)
        if problems:
            raise CollectionRefused(problems)
        return screenings

    def age_pass(
        self,
        collection_point: str,
        *,
        band: AgeBand = AgeBand.ADULT,
        band_until: dt.date | None = None,
    ) -> str:
        """A pass for `collection_point`, as the age screen gives an admitted person (with
        their age band, never their date of birth)."""
        return issue_age_pass(
            self.keyring,
            collection_point,
            dt.datetime.now(dt.UTC),
            band=band,
            band_until=band_until,
        )

    def parental_consent_of(self, token: str, collection_point: str) -> str | None:
        """The consent a live parental pass for `collection_point` carries, or None."""
        return parental_consent_of(self.keyring, token, collection_point, dt.datetime.now(dt.UTC))

    def parental_pass(self, consent_id: str, collection_point: str) -> str:
        """A pass to open a child's account under the parent's consent `consent_id`."""
        return issue_parental_pass(
            self.keyring, consent_id, collection_point, dt.datetime.now(dt.UTC)
        )

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
        screenings: Sequence[Screening],
    ) -> list[Collected]:
        """One transaction for the whole batch, with bulk statements: subjects are resolved
        first, the new ones' keys created together, then every row inserted at once."""
        now = dt.datetime.now(dt.UTC)
        new_subjects: list[str] = []
        try:
            with self.sessions() as session, session.begin():
                plans = self._plan_subjects(session, policy, submissions)
                new_subjects = [p.subject_id for p in plans if p.created]
                keys = self._keys_for(plans, new_subjects)
                if new_subjects:
                    session.execute(
                        insert(Subject),
                        [
                            {"id": sid, "created_at": now, "shredded_at": None}
                            for sid in new_subjects
                        ],
                    )
                self._keep_bands(session, plans, screenings)
                self._index(session, [(p.subject_id, d) for p in plans for d in p.digests], now)
                return self._insert_values(
                    session,
                    version=version,
                    policy=policy,
                    submissions=submissions,
                    plans=plans,
                    keys=keys,
                    now=now,
                    actor=actor,
                )
        except BaseException:
            # Keys are stored before the data they protect; these now protect nothing.
            self.keyring.destroy_data_keys(new_subjects)
            raise

    def _keys_for(self, plans: Sequence[_SubjectPlan], new_subjects: list[str]) -> dict[str, bytes]:
        """Data keys for every subject of the batch: created for new ones, unwrapped for others."""
        keys = self.keyring.create_data_keys(new_subjects)
        existing = list(dict.fromkeys(p.subject_id for p in plans if not p.created))
        keys.update(self.keyring.data_keys([s for s in existing if s not in keys]))
        for subject_id in existing:
            if subject_id not in keys:
                raise SubjectErased(subject_id)  # erased while this batch was on its way
        return keys

    def _keep_bands(
        self,
        session: Session,
        plans: Sequence[_SubjectPlan],
        screenings: Sequence[Screening],
    ) -> None:
        """Record each subject's age band, never relaxing one already kept (anyone can type a
        date at a sign-up: only time makes a minor older, see `AgeBands`); refuse a frozen
        subject, and a parent's pass used for a subject that exists or used before."""
        for index, (plan, screening) in enumerate(zip(plans, screenings, strict=True)):
            subject = session.get(Subject, plan.subject_id)
            if subject is not None and subject.frozen_at is not None:
                raise CollectionRefused(
                    [Problem(("items", index), "this person's data is frozen: nothing is added")]
                )
            consent = screening.parental_consent_id
            if consent is not None:
                used = session.scalar(
                    select(Subject.id).where(Subject.parental_consent_id == consent)
                )
                if not plan.created or used is not None:
                    raise CollectionRefused(
                        [
                            Problem(
                                ("parental_pass",),
                                "a parent's consent opens one new account, once",
                            )
                        ]
                    )
            if subject is None or (screening.band is None and consent is None):
                continue
            if screening.band is not None and (
                subject.age_band is None
                or _STRICTNESS[screening.band] < _STRICTNESS[AgeBand(subject.age_band)]
            ):
                subject.age_band = screening.band.value
                subject.age_band_until = screening.band_until
            if consent is not None:
                subject.parental_consent_id = consent

    def _plan_subjects(
        self, session: Session, policy: LoadedPolicy, submissions: Sequence[Submission]
    ) -> list[_SubjectPlan]:
        """Which subject each submission belongs to, and whether it is new."""
        digests_of = []
        for item in submissions:
            identities = identities_in(policy.document, item.collection_point, item.fields)
            if item.identity is not None:
                kind, value = item.identity
                identities.insert(0, (kind, normalize_identity(kind, value)))
            digests_of.append(
                [(kind, self.keyring.blind_index(kind.value, value)) for kind, value in identities]
            )
        primaries = {digests[0] for digests in digests_of if digests}
        owner = {
            (kind, digest): subject_id
            for kind, digest, subject_id in session.execute(
                select(Identity.kind, Identity.digest, Identity.subject_id).where(
                    Identity.digest.in_([digest for _, digest in primaries])
                )
            )
        }
        plans = []
        for item, digests in zip(submissions, digests_of, strict=True):
            if item.subject_id is not None:
                self._live_subject(session, item.subject_id)
                plans.append(_SubjectPlan(item.subject_id, created=False, digests=digests))
                continue
            primary = (digests[0][0].value, digests[0][1])
            subject_id = owner.get(primary)
            created = subject_id is None
            if subject_id is None:
                subject_id = str(uuid.uuid4())
                owner[primary] = subject_id  # a later submission of this batch finds it too
            plans.append(_SubjectPlan(subject_id, created=created, digests=digests))
        return plans

    def _insert_values(
        self,
        session: Session,
        *,
        version: PublishedVersion,
        policy: LoadedPolicy,
        submissions: Sequence[Submission],
        plans: Sequence[_SubjectPlan],
        keys: Mapping[str, bytes],
        now: dt.datetime,
        actor: str,
    ) -> list[Collected]:
        rows: list[dict[str, object]] = []
        owners: list[tuple[int, str]] = []
        findings: list[dict[str, dict[str, int]]] = [{} for _ in submissions]
        for index, (item, plan) in enumerate(zip(submissions, plans, strict=True)):
            point = policy.document.collection_points[item.collection_point]
            data_key = keys[plan.subject_id]
            for name, value in item.fields.items():
                spec = point.fields[name]
                aad = value_aad(plan.subject_id, item.collection_point, spec.category, name, 1)
                row: dict[str, object] = {
                    "subject_id": plan.subject_id,
                    "category": spec.category,
                    "collection_point": item.collection_point,
                    "field": name,
                    "source": item.source.value,
                    "entered_by": item.entered_by,
                    "policy_version_id": version.id,
                    "collected_at": now,
                    "version": 1,
                    "replaces_id": None,
                    "superseded_at": None,
                    "sealed": seal(data_key, value, aad),
                    "redacted_sealed": None,
                    "findings": None,
                }
                if spec.scan_for_personal_data:
                    redacted_aad = value_aad(
                        plan.subject_id, item.collection_point, spec.category, f"{name}#redacted", 1
                    )
                    sealed_copy, counts = self._redact(data_key, value, redacted_aad)
                    row.update(
                        redacted_sealed=sealed_copy, findings=json.dumps(counts, sort_keys=True)
                    )
                    findings[index][name] = counts
                rows.append(row)
                owners.append((index, name))
        ids = session.scalars(
            insert(PersonalValue).returning(PersonalValue.id, sort_by_parameter_order=True), rows
        ).all()
        value_ids: list[dict[str, int]] = [{} for _ in submissions]
        for (index, name), value_id in zip(owners, ids, strict=True):
            value_ids[index][name] = value_id
        record_many(
            session,
            [
                Act(
                    actor=actor,
                    action="collect",
                    subject_id=plan.subject_id,
                    details={
                        "collection_point": item.collection_point,
                        "fields": sorted(item.fields),
                        "source": item.source.value,
                        "entered_by": item.entered_by,
                        "new_subject": plan.created,
                        "policy_version": version.version,
                    },
                )
                for item, plan in zip(submissions, plans, strict=True)
            ],
            now=now,
        )
        return [
            Collected(plan.subject_id, plan.created, value_ids[index], findings[index])
            for index, plan in enumerate(plans)
        ]

    def _redact(self, data_key: bytes, value: str, aad: bytes) -> tuple[bytes, dict[str, int]]:
        scan = self.scanner.scan(value)
        return seal(data_key, scan.redacted, aad), scan.findings

    def _attach_redaction(self, row: PersonalValue, data_key: bytes, value: str) -> dict[str, int]:
        sealed_copy, counts = self._redact(data_key, value, _aad(row, redacted=True))
        row.redacted_sealed = sealed_copy
        row.findings = json.dumps(counts, sort_keys=True)
        return counts

    def _index(
        self,
        session: Session,
        entries: Sequence[tuple[str, tuple[IdentityKind, str]]],
        now: dt.datetime,
    ) -> None:
        """Index the identities not indexed yet; one already another subject's stays theirs."""
        known = {
            (kind, digest)
            for kind, digest in session.execute(
                select(Identity.kind, Identity.digest).where(
                    Identity.digest.in_([digest for _, (_, digest) in entries])
                )
            )
        }
        rows = []
        for subject_id, (kind, digest) in entries:
            if (kind.value, digest) not in known:
                known.add((kind.value, digest))
                rows.append(
                    {
                        "subject_id": subject_id,
                        "kind": kind.value,
                        "digest": digest,
                        "created_at": now,
                    }
                )
        if rows:
            session.execute(insert(Identity), rows)

    # --- reading --------------------------------------------------------------------------

    def read(self, subject_id: str, purpose: str, *, actor: str) -> SubjectData:
        """The subject's current values in the categories `purpose` may use; audited."""
        version, policy = self._policy()
        if purpose not in policy.document.purposes:
            raise UnknownPurpose(purpose)
        allowed = policy.purpose_map.allowed_categories(purpose)
        with self.sessions() as session, session.begin():
            subject = self._live_subject(session, subject_id)
            if (
                subject.frozen_at is not None
                and policy.document.purposes[purpose].legal_basis is not LegalBasis.LEGAL_OBLIGATION
            ):
                raise SubjectFrozen(subject_id)
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

    def categories_held(self, subject_id: str) -> list[str]:
        """The categories the subject has current values in; nothing is decrypted."""
        with self.sessions() as session:
            self._live_subject(session, subject_id)
            return list(
                session.scalars(
                    select(PersonalValue.category)
                    .where(
                        PersonalValue.subject_id == subject_id,
                        PersonalValue.superseded_at.is_(None),
                    )
                    .distinct()
                    .order_by(PersonalValue.category)
                )
            )

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
            if self._live_subject(session, subject_id).frozen_at is not None:
                raise SubjectFrozen(subject_id)
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
                    value_id=old.id,
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
        value_id: int,
        now: dt.datetime,
    ) -> None:
        try:
            new_normal = normalize_identity(kind, new_value)
        except IdentityInvalid as invalid:
            raise CollectionRefused([Problem(("value",), str(invalid))]) from None
        new_digest = self.keyring.blind_index(kind.value, new_normal)
        owner = session.scalar(
            select(Identity.subject_id).where(
                Identity.kind == kind.value, Identity.digest == new_digest
            )
        )
        if owner is not None and owner != subject_id:
            raise CollectionRefused(
                [Problem(("value",), f"this {kind.value} identifies another subject")]
            )
        old_normal = normalize_identity(kind, old_value)
        if not self._still_held(session, subject_id, kind, old_normal, except_value=value_id):
            old_digest = self.keyring.blind_index(kind.value, old_normal)
            session.execute(
                delete(Identity).where(
                    Identity.subject_id == subject_id,
                    Identity.kind == kind.value,
                    Identity.digest == old_digest,
                )
            )
        self._index(session, [(subject_id, (kind, new_digest))], now)

    def _still_held(
        self,
        session: Session,
        subject_id: str,
        kind: IdentityKind,
        normal: str,
        *,
        except_value: int,
    ) -> bool:
        """Whether another current value of the subject holds this identity too."""
        categories = [c for c, k in IDENTITY_CATEGORIES.items() if k is kind]
        rows = session.scalars(
            select(PersonalValue).where(
                PersonalValue.subject_id == subject_id,
                PersonalValue.superseded_at.is_(None),
                PersonalValue.category.in_(categories),
                PersonalValue.id != except_value,
            )
        ).all()
        data_key = self._data_key(subject_id)
        for row in rows:
            try:
                if normalize_identity(kind, unseal(data_key, row.sealed, _aad(row))) == normal:
                    return True
            except IdentityInvalid:
                continue
        return False

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

    def erase(self, subject_id: str, *, actor: str, reason: str) -> Erasure:
        """Erase a subject, keeping what the law requires: values collected for a purpose
        resting on a legal obligation whose category keeps them longer for it (orders and
        billing addresses for tax) move to a record of their own, frozen, with no identity
        and a key of its own; then the subject is crypto-shredded. Run again after a crash,
        it keeps nothing twice."""
        now = dt.datetime.now(dt.UTC)
        _, policy = self._policy()
        with self.sessions() as session:
            subject = session.get(Subject, subject_id)
            if subject is None:
                raise SubjectNotFound(subject_id)
            already_kept = session.scalar(select(Subject.id).where(Subject.kept_from == subject_id))
            kept: list[tuple[StoredValue, KeptByLaw]] = []
            if subject.shredded_at is None and already_kept is None:
                rows = session.scalars(
                    select(PersonalValue)
                    .where(
                        PersonalValue.subject_id == subject_id,
                        PersonalValue.superseded_at.is_(None),
                    )
                    .order_by(PersonalValue.id)
                ).all()
                rules = [
                    (
                        row,
                        kept_by_law(
                            policy.document,
                            category=row.category,
                            collection_point=row.collection_point,
                            field=row.field,
                            collected_at=_utc_moment(row.collected_at),
                        ),
                    )
                    for row in rows
                ]
                wanted = [
                    (row, rule) for row, rule in rules if rule is not None and rule.until > now
                ]
                if wanted:
                    data_key = self._data_key(subject_id)
                    kept = [(self._open(row, data_key), rule) for row, rule in wanted]
        record_id = already_kept
        if kept:
            record_id = self._keep_record(subject_id, kept, actor=actor, now=now)
        erased = self.shred(subject_id, actor=actor, reason=reason)
        summary: dict[tuple[str, str], list[dt.datetime]] = {}
        for value, rule in kept:
            summary.setdefault((value.category, rule.reason), []).append(rule.until)
        return Erasure(
            erased=erased,
            kept_as=record_id,
            retained=tuple(
                Retained(category, why, max(untils), len(untils))
                for (category, why), untils in sorted(summary.items())
            ),
        )

    def _keep_record(
        self,
        subject_id: str,
        kept: Sequence[tuple[StoredValue, KeptByLaw]],
        *,
        actor: str,
        now: dt.datetime,
    ) -> str:
        """A frozen record, with no identity, holding the values the law keeps, re-sealed under
        a key of its own (the erased subject's key is destroyed next)."""
        record_id = str(uuid.uuid4())
        key = self.keyring.create_data_key(record_id)
        try:
            with self.sessions() as session, session.begin():
                session.add(
                    Subject(
                        id=record_id,
                        created_at=now,
                        shredded_at=None,
                        kept_from=subject_id,
                        frozen_at=now,
                    )
                )
                session.flush()
                for value, _rule in kept:
                    aad = value_aad(
                        record_id,
                        value.collection_point,
                        value.category,
                        value.field,
                        value.version,
                    )
                    session.add(
                        PersonalValue(
                            subject_id=record_id,
                            category=value.category,
                            collection_point=value.collection_point,
                            field=value.field,
                            source=value.source,
                            entered_by=value.entered_by,
                            policy_version_id=value.policy_version_id,
                            collected_at=value.collected_at,
                            version=value.version,
                            replaces_id=None,
                            superseded_at=None,
                            sealed=seal(key, value.value, aad),
                            redacted_sealed=None,
                            findings=None,
                        )
                    )
                record(
                    session,
                    actor=actor,
                    action="erasure.kept",
                    subject_id=record_id,
                    details={
                        "kept_from": subject_id,
                        "values": len(kept),
                        "categories": sorted({v.category for v, _ in kept}),
                    },
                )
        except BaseException:
            self.keyring.destroy_data_key(record_id)
            raise
        return record_id

    def freeze(self, subject_id: str, *, actor: str, reason: str) -> bool:
        """Freeze a subject (a child found without a parent's consent): reads only for what the
        law requires, no marketing, no disclosure. False if it was frozen already."""
        with self.sessions() as session, session.begin():
            subject = self._live_subject(session, subject_id)
            if subject.frozen_at is not None:
                return False
            subject.frozen_at = dt.datetime.now(dt.UTC)
            subject.age_band = AgeBand.CHILD.value
            subject.age_band_until = None  # a child found later stays a child here
            record(
                session,
                actor=actor,
                action="subject.frozen",
                subject_id=subject_id,
                details={"reason": reason},
            )
        return True

    def thaw(self, subject_id: str, *, actor: str, parental_consent_id: str) -> None:
        """Unfreeze a child's subject once a parent consented (`parental_consent_id`)."""
        with self.sessions() as session, session.begin():
            subject = self._live_subject(session, subject_id)
            subject.frozen_at = None
            subject.parental_consent_id = parental_consent_id
            record(
                session,
                actor=actor,
                action="subject.thawed",
                subject_id=subject_id,
                details={"parental_consent": parental_consent_id},
            )

    def bands_due(self, today: dt.date, *, limit: int = 1000) -> list[str]:
        """Live subjects whose age band may have ended by `today` (minors growing up)."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Subject.id)
                    .where(
                        Subject.shredded_at.is_(None),
                        Subject.frozen_at.is_(None),
                        Subject.age_band_until.is_not(None),
                        Subject.age_band_until <= today,
                    )
                    .limit(limit)
                )
            )

    def keep_band(
        self, subject_id: str, band: AgeBand | None, until: dt.date | None, *, actor: str
    ) -> None:
        """Record a subject's age band, worked out again from its date of birth (None: keep the
        band, and stop working it out); audited."""
        with self.sessions() as session, session.begin():
            subject = self._live_subject(session, subject_id)
            before = subject.age_band
            if band is not None:
                subject.age_band = band.value
            subject.age_band_until = until
            record(
                session,
                actor=actor,
                action="subject.age_band",
                subject_id=subject_id,
                details={"from": before, "to": subject.age_band},
            )

    def state(self, subject_id: str) -> SubjectState:
        """The subject's age band and whether it is frozen; raise if unknown or erased."""
        with self.sessions() as session:
            return check_live_subject(session, subject_id)

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

    def subject_for_digest(self, kind: IdentityKind, digest: str) -> str | None:
        """The live subject an identity's blind index belongs to, or None. Not audited here:
        the caller (a privacy-center session the person opened) audits what it reads."""
        with self.sessions() as session:
            return session.scalar(
                select(Identity.subject_id)
                .join(Subject, Subject.id == Identity.subject_id)
                .where(
                    Identity.kind == kind.value,
                    Identity.digest == digest,
                    Subject.shredded_at.is_(None),
                )
            )

    def subjects_for(self, kind: IdentityKind, values: Sequence[str]) -> dict[str, str]:
        """The subject each identity belongs to, for a batch; unknown or invalid ones are left
        out. Not audited here: the caller audits the act the batch serves."""
        digests: dict[str, str] = {}
        for value in values:
            try:
                digests[self.keyring.blind_index(kind.value, normalize_identity(kind, value))] = (
                    value
                )
            except IdentityInvalid:
                continue
        with self.sessions() as session:
            rows = session.execute(
                select(Identity.digest, Identity.subject_id).where(
                    Identity.kind == kind.value, Identity.digest.in_(list(digests))
                )
            )
            return {digests[digest]: subject_id for digest, subject_id in rows}

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


class SubjectState(NamedTuple):
    """What decisions need to know of a live subject besides its choices."""

    age_band: AgeBand | None
    frozen: bool


def check_live_subject(session: Session, subject_id: str) -> SubjectState:
    """Raise `SubjectNotFound` or `SubjectErased` unless the subject exists and is not erased;
    its age band (if a date of birth was collected) and whether it is frozen."""
    subject = session.execute(_SUBJECT_STATE, {"subject_id": subject_id}).first()
    if subject is None:
        raise SubjectNotFound(subject_id)
    if subject.shredded_at is not None:
        raise SubjectErased(subject_id)
    band = AgeBand(subject.age_band) if subject.age_band else None
    return SubjectState(band, subject.frozen_at is not None)


_SUBJECT_STATE = select(Subject.shredded_at, Subject.age_band, Subject.frozen_at).where(
    Subject.id == bindparam("subject_id")
)
"""Built once: every consent write and decision checks its subject (a statement costs more to
build than to run)."""


_STRICTNESS = {AgeBand.CHILD: 0, AgeBand.TEEN: 1, AgeBand.ADULT: 2}


def _utc_moment(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE and say how many rows it removed."""
    result = session.execute(statement)
    return int(cast("CursorResult[Any]", result).rowcount)


def _aad(row: PersonalValue, *, redacted: bool = False) -> bytes:
    field = f"{row.field}#redacted" if redacted else row.field
    return value_aad(row.subject_id, row.collection_point, row.category, field, row.version)


def subject_states(session: Session, subject_ids: Sequence[str]) -> dict[str, SubjectState | None]:
    """`check_live_subject` for many subjects in one query: each that exists, with its state,
    or None if it was erased; an unknown subject is left out."""
    rows = session.execute(_SUBJECT_STATES, {"subject_ids": list(subject_ids)}).all()
    return {
        row.id: None
        if row.shredded_at is not None
        else _PLAIN_STATE
        if row.age_band is None and row.frozen_at is None
        else SubjectState(
            AgeBand(row.age_band) if row.age_band else None, row.frozen_at is not None
        )
        for row in rows
    }


_SUBJECT_STATES = select(
    Subject.id, Subject.shredded_at, Subject.age_band, Subject.frozen_at
).where(Subject.id.in_(bindparam("subject_ids", expanding=True)))
"""Built once, with one expanding parameter: a batch of decisions reads 1,000 subjects, and
building the statement from a list coerces every ID on every call."""

_PLAIN_STATE = SubjectState(age_band=None, frozen=False)
"""The state of most people: no age band known, not frozen (shared, it is immutable)."""


def live_subjects(session: Session, subject_ids: Sequence[str]) -> set[str]:
    """Those of `subject_ids` that exist and were not erased."""
    return set(
        session.scalars(
            select(Subject.id).where(Subject.id.in_(subject_ids), Subject.shredded_at.is_(None))
        )
    )


def restricted_subjects(session: Session) -> dict[str, SubjectState]:
    """Live subjects whose age band or frozen state limits what may be done with their data:
    minors and frozen children (few, so read in one go for an audience)."""
    rows = session.execute(
        select(Subject.id, Subject.age_band, Subject.frozen_at).where(
            Subject.shredded_at.is_(None),
            (Subject.age_band.in_([AgeBand.CHILD.value, AgeBand.TEEN.value]))
            | Subject.frozen_at.is_not(None),
        )
    )
    return {
        row.id: SubjectState(
            AgeBand(row.age_band) if row.age_band else None, row.frozen_at is not None
        )
        for row in rows
    }


def erased_subjects(session: Session) -> set[str]:
    """Every erased subject's ID."""
    return set(session.scalars(select(Subject.id).where(Subject.shredded_at.is_not(None))))


def all_live_subjects(session: Session) -> set[str]:
    """Every live subject's ID (for filters over a large share of all subjects)."""
    return set(session.scalars(select(Subject.id).where(Subject.shredded_at.is_(None))))
