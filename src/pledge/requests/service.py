"""The request desk: intake, verification, staff decisions, deadlines and the records kept.

A request is received from the privacy center, the API, or a staff member who typed in one
that came by e-mail, phone or post. Receiving does the same work whether or not the address
is known: who the address belongs to is looked up only once its owner proved it (a
privacy-center sign-in with a one-time code), and then only the owner sees the answer.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import secrets
import uuid
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import record
from pledge.datasets import ConnectedDatabases
from pledge.db import reading
from pledge.jobs import JobQueue
from pledge.keyring import Keyring, SubjectKeyDestroyed
from pledge.mail import Mailer
from pledge.policy import policy_in_force
from pledge.policy.document import OPT_OUT_KINDS, PolicyDocument, RequestKind, VerificationTier
from pledge.requests.rules import (
    OPEN_STATUSES,
    STAFF_CHANNELS,
    Channel,
    Deadlines,
    Regime,
    Status,
    TransitionRefused,
    check_transition,
    csv_cell,
    deadlines,
    matching_points,
    moment_after,
    regime_for,
)
from pledge.requests.tables import PrivacyRequest, RequestTransition
from pledge.vault import IdentityKind, SubjectErased, SubjectNotFound, Vault
from pledge.vault.rules import IDENTITY_CATEGORIES, IdentityInvalid, normalize_identity
from pledge.vault.sealing import seal, unseal

log = logging.getLogger(__name__)

PRIVACY_REQUESTS = "essential.legal_obligation.privacy_requests"
"""The purpose every read made to answer a request is made for."""
FULFIL = "requests.fulfil"
DECLARATION = (
    "I declare under penalty of perjury under the laws of the State of California that I am "
    "the person whose personal information is the subject of this request."
)
"""The signed declaration the highest verification tier asks for (Cal. Code Regs. tit. 11,
section 7062(c))."""
REMIND_WITHIN = dt.timedelta(days=7)
ACKNOWLEDGEMENTS_PER_DAY = 5
"""Acknowledgements mailed to one address in a day; further requests are received unmailed."""
VERIFY_FAILURES_PER_DAY = 5
"""Wrong sets of data points one address may give in a day, across all its requests: opening a
new request is no way around the attempts a request allows."""


class RequestNotFound(LookupError):
    """No request has this ID (or it is not the caller's)."""


class IntakeRefused(ValueError):
    """The request cannot be received as given."""


class StaffTextRefused(IntakeRefused):
    """A staff note or reason holds personal data (it would be kept in clear): nothing was
    done."""


class ExtensionRefused(ValueError):
    """The request cannot be extended (again, or this late)."""


@dataclass(frozen=True)
class Agent:
    """An authorized agent acting for the person, with the reference of the signed permission."""

    name: str
    document_reference: str


@dataclass(frozen=True)
class Correction:
    """A category's correct value, as the person states it."""

    category: str
    value: str


@dataclass(frozen=True)
class Intake:
    """A request as it is received."""

    kind: RequestKind
    channel: Channel
    residence: str
    """Where the person lives, as an ISO 3166 code (`US-CA`, `FR`): it picks the law's clock."""
    email: str | None
    """Where the answer goes; may be None only for a request received by phone or post."""
    agent: Agent | None = None
    corrections: Sequence[Correction] = ()
    entered_by: str | None = None
    """The staff member who typed in a request received by e-mail, phone or post."""
    received_at: dt.datetime | None = None
    """When it arrived, if earlier than now (a letter opened today that came yesterday)."""


@dataclass(frozen=True)
class RequestView:
    """A request as staff see it. Personal details are shown only through `details`."""

    id: str
    kind: RequestKind
    channel: Channel
    status: Status
    regime: Regime
    tier: VerificationTier
    by_agent: bool
    entered_by: str | None
    subject_id: str | None
    attempts: int
    staff_check: bool
    received_at: dt.datetime
    received_on: dt.date
    acknowledge_by: dt.date | None
    acknowledged_at: dt.datetime | None
    answer_by: dt.date
    extended: bool
    due: dt.date
    verified_at: dt.datetime | None
    work_started_at: dt.datetime | None
    closed_at: dt.datetime | None
    denial_reason: str | None
    outcome: dict[str, Any] | None
    package_ready: bool

    def overdue(self, today: dt.date) -> bool:
        """Still open after its last day."""
        return self.status in OPEN_STATUSES and today > self.due

    def acknowledgement_overdue(self, today: dt.date) -> bool:
        """Not acknowledged, and the day to do it has passed."""
        return (
            self.acknowledged_at is None
            and self.acknowledge_by is not None
            and self.status in OPEN_STATUSES
            and today > self.acknowledge_by
        )


@dataclass(frozen=True)
class TransitionView:
    """One move of a request's status."""

    from_status: Status | None
    to_status: Status
    actor: str
    at: dt.datetime
    note: str | None


@dataclass(frozen=True)
class RequestRecord:
    """A request as its status page shows it: the request, its history, and the day it was read
    on in the business's time zone (the day its deadlines are counted against)."""

    request: RequestView
    transitions: list[TransitionView]
    today: dt.date


@dataclass
class Details:
    """A request's sealed details."""

    email: str | None
    residence: str
    agent: Agent | None = None
    corrections: list[Correction] = field(default_factory=list)
    declaration: dict[str, str] | None = None
    addresses: list[str] = field(default_factory=list)
    """For a request without an e-mail address, the addresses the verified subject's record
    held when it was erased: recipients are told of the deletion under them."""

    def dumps(self) -> str:
        return json.dumps(
            {
                "addresses": self.addresses,
                "email": self.email,
                "residence": self.residence,
                "agent": None if self.agent is None else vars(self.agent),
                "corrections": [vars(c) for c in self.corrections],
                "declaration": self.declaration,
            }
        )

    @classmethod
    def loads(cls, text: str) -> Details:
        raw = json.loads(text)
        return cls(
            email=raw["email"],
            residence=raw["residence"],
            agent=None if raw["agent"] is None else Agent(**raw["agent"]),
            corrections=[Correction(**c) for c in raw["corrections"]],
            declaration=raw["declaration"],
            addresses=raw.get("addresses", []),
        )


@dataclass(frozen=True)
class VerificationResult:
    """What a person's proof achieved."""

    status: Status
    attempts_left: int
    staff_check: bool = False
    """Too little is held to check online: the privacy team verifies the person another way."""


class RequestDesk:
    """Privacy requests from intake to the record kept afterwards."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        keyring: Keyring,
        vault: Vault,
        mailer: Mailer,
        jobs: JobQueue,
        public_url: str,
        connected: ConnectedDatabases | None = None,
    ) -> None:
        self.sessions = sessions
        self.connected = connected
        self.keyring = keyring
        self.vault = vault
        self.mailer = mailer
        self.jobs = jobs
        self.public_url = public_url.rstrip("/")
        jobs.every(60, "pledge.requests.remind_staff", self.remind_staff)
        jobs.every(60 * 24, "pledge.requests.forget_expired", self.forget_expired)

    # --- Intake -------------------------------------------------------------------------------

    def submit(self, intake: Intake, *, actor: str) -> str:
        """Receive a request and return its ID; raise `IntakeRefused`.

        The person is told at once (the acknowledgement): what was asked, by when it will be
        answered, and how to confirm it. A request an agent made is confirmed by the person.
        """
        document = self._policy()
        problem = _intake_problem(intake, document)
        if problem:
            raise IntakeRefused(problem)
        email = intake.email.strip() if intake.email else None
        email_index = self._email_index(email) if email else None
        now = _now()
        received_at = intake.received_at or now
        if received_at > now or received_at < now - dt.timedelta(days=30):
            raise IntakeRefused("received_at must be within the last 30 days")
        received_on = received_at.astimezone(zoneinfo.ZoneInfo(document.requests.timezone)).date()
        regime = regime_for(intake.residence)
        due = deadlines(received_on, regime)
        tier = document.requests.tier(intake.kind)
        request_id = str(uuid.uuid4())
        key = self.keyring.create_data_key(request_id)
        details = Details(
            email, intake.residence.strip().upper(), intake.agent, [*intake.corrections]
        )
        job_ids: list[str] = []
        with self.sessions() as session, session.begin():
            row = PrivacyRequest(
                id=request_id,
                kind=intake.kind.value,
                channel=intake.channel.value,
                status=Status.RECEIVED.value,
                regime=regime.value,
                email_index=email_index,
                subject_id=None,
                sealed=seal(key, details.dumps(), _aad(request_id, "details")),
                by_agent=intake.agent is not None,
                entered_by=intake.entered_by,
                tier=tier.value,
                attempts=0,
                staff_check=False,
                received_at=received_at,
                received_on=received_on,
                acknowledge_by=due.acknowledge_by,
                answer_by=due.answer_by,
                extended_answer_by=due.extended_answer_by,
                extended=False,
                acknowledged_at=None,
                verified_at=None,
                work_started_at=None,
                closed_at=None,
                denial_reason=None,
                outcome=None,
                package_token_sha256=None,
                package_expires_at=None,
                package_sealed=None,
                reminded_on=None,
                forget_after=None,
            )
            session.add(row)
            session.flush()
            self._move(session, row, None, Status.RECEIVED, actor=actor, note=intake.channel.value)
            record(
                session,
                actor=actor,
                action="request.received",
                purpose=PRIVACY_REQUESTS,
                details={
                    "request": request_id,
                    "kind": intake.kind.value,
                    "channel": intake.channel.value,
                    "regime": regime.value,
                    "by_agent": intake.agent is not None,
                },
                now=now,
            )
            if tier is VerificationTier.NONE:
                self._move(
                    session,
                    row,
                    Status.RECEIVED,
                    Status.VERIFIED,
                    actor=actor,
                    note="the law asks no proof of identity for this request",
                )
                row.verified_at = now
                job_ids += self._start(session, row, document, actor=actor)
            else:
                self._move(session, row, Status.RECEIVED, Status.AWAITING_VERIFICATION, actor=actor)
            if email is not None and self._may_acknowledge(session, email_index, now):
                job_ids.append(
                    self._acknowledge(session, row, email, details, due=due, document=document)
                )
        self.jobs.dispatch(job_ids)
        return request_id

    def _may_acknowledge(self, session: Session, email_index: str | None, now: dt.datetime) -> bool:
        """Whether the acknowledgement may be mailed: at most `ACKNOWLEDGEMENTS_PER_DAY` go to
        one address a day, so the form cannot be used to flood someone's mailbox. The request
        is received all the same, and the page says the same thing."""
        recent = session.scalar(
            select(func.count())
            .select_from(PrivacyRequest)
            .where(
                PrivacyRequest.email_index == email_index,
                PrivacyRequest.received_at > now - dt.timedelta(days=1),
            )
        )
        return (recent or 0) <= ACKNOWLEDGEMENTS_PER_DAY

    def _acknowledge(
        self,
        session: Session,
        row: PrivacyRequest,
        email: str,
        details: Details,
        *,
        due: Deadlines,
        document: PolicyDocument,
    ) -> str:
        kind = RequestKind(row.kind)
        lines = [
            f"We received a request to {_ASKED[kind]} (reference {row.id}).",
            f"We will answer by {row.answer_by.isoformat()}.",
        ]
        if details.agent is not None and kind in OPT_OUT_KINDS:
            lines.append(
                f"{details.agent.name} made this request for you, saying you gave them written "
                "permission. The law lets an opt-out take effect on that permission; if you did "
                f"not give it, tell us at {document.organization.privacy_email} and we will "
                "undo it."
            )
        elif details.agent is not None:
            lines.append(
                f"{details.agent.name} made this request for you, saying you gave written "
                "permission. Nothing happens unless you confirm it yourself."
            )
        if row.status == Status.AWAITING_VERIFICATION.value:
            lines.append(
                "To confirm it, open the link below and sign in with this e-mail address; we "
                f"will send you a code.\n\n{self.request_url(row.id)}"
            )
        else:
            lines.append(f"You can follow it here:\n\n{self.request_url(row.id)}")
        lines.append(
            "If you did not make this request, ignore this message: nothing is done without "
            f"your confirmation. Questions: {document.organization.privacy_email}."
        )
        row.acknowledged_at = _now()
        record(
            session,
            actor=ACTOR,
            action="request.acknowledged",
            purpose=PRIVACY_REQUESTS,
            details={"request": row.id, "due": due.answer_by.isoformat()},
        )
        return self.mailer.queue_transactional(
            session,
            to=email,
            subject_line=f"Your privacy request {row.id[:8]}",
            text="\n\n".join(lines),
        )

    def request_url(self, request_id: str) -> str:
        """The privacy-center page where the requester follows a request."""
        return f"{self.public_url}/privacy-center/requests/{request_id}"

    # --- Verification ---------------------------------------------------------------------------

    def verify(
        self,
        request_id: str,
        *,
        email_index: str,
        data_points: Mapping[str, str],
        declaration_by: str | None = None,
    ) -> VerificationResult:
        """Check the proof of a person who proved `email_index` (a privacy-center session).

        The proven address is the first data point; `data_points` (category -> value) must
        bring the number of matches to the request's tier, and the highest tier needs the
        declaration signed with the person's name. The values are compared with what the vault
        and the connected databases hold under the address. Where nothing is held anywhere the
        address alone verifies (the answer will be that nothing is held); where too little is
        held to reach the tier, no attempt is counted and the privacy team verifies the person
        another way. Raise `RequestNotFound` if the request is not this address's."""
        document = self._policy()
        now = _now()
        job_ids: list[str] = []
        with self.sessions() as session:
            row = session.get(PrivacyRequest, request_id)
            if row is None or row.email_index != email_index:
                raise RequestNotFound(request_id)
            view = _view(row)
            email = self._details(row).email
        attempts = document.requests.attempts
        if view.status is not Status.AWAITING_VERIFICATION:
            return VerificationResult(view.status, attempts - view.attempts, view.staff_check)
        tier = view.tier
        needed = tier.data_points - 1
        given = {k: v for k, v in data_points.items() if k in document.requests.data_points}
        # What is held is read before the request is locked: the vault's reads are transactions
        # of their own, which must not wait on this one (SQLite has a single writer).
        subject_id = self.vault.subject_for_digest(IdentityKind.EMAIL, email_index)
        held, holds_anything = self._held_points(subject_id, email, document)
        staff_check = needed > 0 and holds_anything and sum(1 for v in held.values() if v) < needed
        matched = (
            needed <= 0 or not holds_anything or (matching_points(given, held) >= needed)
        ) and not staff_check
        declared = tier is not VerificationTier.THREE_DATA_POINTS_AND_DECLARATION or bool(
            declaration_by and declaration_by.strip()
        )
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            status = Status(row.status)
            if status is not Status.AWAITING_VERIFICATION:
                return VerificationResult(status, attempts - row.attempts, row.staff_check)
            if staff_check:
                if not row.staff_check:
                    row.staff_check = True
                    record(
                        session,
                        actor=ACTOR,
                        action="request.staff_check_needed",
                        purpose=PRIVACY_REQUESTS,
                        details={"request": row.id, "held": len(held), "needed": needed},
                    )
                return VerificationResult(status, attempts - row.attempts, staff_check=True)
            failures_today = self._failures_today(session, email_index, now)
            if matched and declared and failures_today < VERIFY_FAILURES_PER_DAY:
                if declaration_by:
                    details = self._details(row)
                    details.declaration = {
                        "name": declaration_by.strip(),
                        "text": DECLARATION,
                        "at": now.isoformat(),
                    }
                    row.sealed = seal(self._key(row.id), details.dumps(), _aad(row.id, "details"))
                row.subject_id = subject_id
                row.verified_at = now
                self._move(
                    session,
                    row,
                    status,
                    Status.VERIFIED,
                    actor=ACTOR,
                    note=f"{tier.value}: {max(needed, 0) + 1} data point(s) matched"
                    if holds_anything
                    else "address proven; no personal information is held under it",
                )
                job_ids += self._start(session, row, document, actor=ACTOR)
            else:
                row.attempts += 1
                record(
                    session,
                    actor=ACTOR,
                    action="request.verification_failed",
                    purpose=PRIVACY_REQUESTS,
                    details={"request": row.id, "attempt": row.attempts},
                )
                if row.attempts >= attempts or failures_today + 1 >= VERIFY_FAILURES_PER_DAY:
                    job_ids += self._deny(
                        session,
                        row,
                        "We could not verify your identity to the degree the law requires "
                        "for this request.",
                        document,
                        actor=ACTOR,
                    )
            left = max(0, attempts - row.attempts)
            final = Status(row.status)
        self.jobs.dispatch(job_ids)
        return VerificationResult(final, left)

    def _failures_today(self, session: Session, email_index: str, now: dt.datetime) -> int:
        """Wrong sets of data points given under an address in the last day, all its requests."""
        total = session.scalar(
            select(func.coalesce(func.sum(PrivacyRequest.attempts), 0)).where(
                PrivacyRequest.email_index == email_index,
                PrivacyRequest.received_at > now - dt.timedelta(days=1),
            )
        )
        return int(total or 0)

    def _held_points(
        self, subject_id: str | None, email: str | None, document: PolicyDocument
    ) -> tuple[dict[str, list[str]], bool]:
        """The data-point values held under a proven address (category -> values), in the vault
        and in the connected databases, and whether anything at all is held there."""
        held: dict[str, list[str]] = {}
        anything = False
        if subject_id is not None:
            try:
                data = self.vault.read(subject_id, PRIVACY_REQUESTS, actor=ACTOR)
                anything = True
                for value in data.values:
                    if value.category in document.requests.data_points:
                        held.setdefault(value.category, []).append(value.value)
            except SubjectErased:
                pass
        if self.connected is not None and email is not None:
            for connected_record in self.connected.access({IdentityKind.EMAIL.value: [email]}):
                anything = True
                for item in connected_record.values.values():
                    if item.category in document.requests.data_points and item.value:
                        held.setdefault(item.category, []).append(item.value)
        return held, anything

    # --- Staff decisions ------------------------------------------------------------------------

    def staff_verify(
        self, request_id: str, *, actor: str, note: str, subject_id: str | None = None
    ) -> RequestView:
        """A staff member checked the person's identity themselves (a request by phone or
        post): `note` says how, without the values compared. `subject_id` says whom the request
        concerns when it came without an e-mail address (the address's owner otherwise)."""
        document = self._policy()
        note = self._staff_text(note, "The note", document)
        email = self.details(request_id).email
        owner = (
            None
            if email is None
            else self.vault.subject_for_digest(IdentityKind.EMAIL, self._email_index(email))
        )
        if subject_id is not None and email is not None and subject_id != owner:
            # The answer goes to the request's address: it may concern only that address's
            # owner, whatever subject ID is typed in.
            raise IntakeRefused("that subject does not hold the request's e-mail address")
        if subject_id is not None:
            try:
                self.vault.categories_held(subject_id)
            except (SubjectNotFound, SubjectErased):
                raise IntakeRefused("no live subject has that ID") from None
        subject_id = subject_id or owner
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            check_transition(Status(row.status), Status.VERIFIED)
            row.subject_id = subject_id
            row.verified_at = _now()
            self._move(session, row, Status(row.status), Status.VERIFIED, actor=actor, note=note)
            job_ids = self._start(session, row, document, actor=actor)
        self.jobs.dispatch(job_ids)
        return self.get(request_id)

    def acknowledge(self, request_id: str, *, actor: str, note: str) -> RequestView:
        """Record that staff acknowledged a request themselves (by post or phone); requests
        with an e-mail address are acknowledged by Pledge on receipt."""
        note = self._staff_text(note, "The note", self._policy())
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            if row.acknowledged_at is None:
                row.acknowledged_at = _now()
                record(
                    session,
                    actor=actor,
                    action="request.acknowledged",
                    purpose=PRIVACY_REQUESTS,
                    details={"request": row.id, "note": note},
                )
        return self.get(request_id)

    def approve(self, request_id: str, *, actor: str) -> RequestView:
        """Start the work on a verified request that waited for staff."""
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            current = Status(row.status)
            if row.work_started_at is not None:
                raise TransitionRefused("the work on this request has already started")
            check_transition(current, Status.IN_PROGRESS)
            self._move(session, row, current, Status.IN_PROGRESS, actor=actor, note="approved")
            row.work_started_at = _now()
            job_id = self.jobs.add(session, FULFIL, {"request_id": row.id})
        self.jobs.dispatch([job_id])
        return self.get(request_id)

    def deny(self, request_id: str, *, reason: str, actor: str) -> RequestView:
        """Refuse a request; the person is told why and how to appeal."""
        if not reason.strip():
            raise IntakeRefused("a denial needs its reason")
        document = self._policy()
        reason = self._staff_text(reason, "The reason", document)
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            check_transition(Status(row.status), Status.DENIED)
            if row.work_started_at is not None:
                # Its job may already have erased or sent something: a denial would contradict
                # what was done. A job that cannot finish is retried by staff (`pledge jobs`).
                raise TransitionRefused(
                    "the work on this request has started: it cannot be denied now"
                )
            job_ids = self._deny(session, row, reason.strip(), document, actor=actor)
        self.jobs.dispatch(job_ids)
        return self.get(request_id)

    def extend(self, request_id: str, *, reason: str, actor: str) -> RequestView:
        """Extend the deadline once, within the first period; the person is told why."""
        if not reason.strip():
            raise IntakeRefused("an extension needs its reason, which the person is told")
        document = self._policy()
        reason = self._staff_text(reason, "The reason", document)
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            current = Status(row.status)
            if row.extended:
                raise ExtensionRefused("a request can be extended only once")
            if self._today(document) > row.answer_by:
                raise ExtensionRefused(
                    "the first period is over: an extension must be noticed within it"
                )
            row.extended = True
            if current in {Status.RECEIVED, Status.AWAITING_VERIFICATION}:
                # The law's clock runs from receipt, verified or not: the deadline moves, and
                # the request still waits for the person's proof.
                self._note(session, row, current, actor=actor, note=f"extended: {reason.strip()}")
            else:
                check_transition(current, Status.EXTENDED)
                self._move(session, row, current, Status.EXTENDED, actor=actor, note=reason.strip())
            job_ids = self._tell(
                session,
                row,
                f"Your privacy request {row.id[:8]} needs more time",
                f"We need more time to answer your request (reference {row.id}): "
                f"{reason.strip()}\n\nWe will answer by {row.extended_answer_by.isoformat()}.",
            )
        self.jobs.dispatch(job_ids)
        return self.get(request_id)

    def _deny(
        self,
        session: Session,
        row: PrivacyRequest,
        reason: str,
        document: PolicyDocument,
        *,
        actor: str,
    ) -> list[str]:
        row.denial_reason = reason
        self._close(session, row, Status.DENIED, document, actor=actor, note=reason)
        return self._tell(
            session,
            row,
            f"Your privacy request {row.id[:8]}",
            f"We cannot do what you asked (reference {row.id}): {reason}\n\n"
            f"{document.requests.appeal_instructions}",
        )

    def _staff_text(self, text: str, what: str, document: PolicyDocument) -> str:
        """`text` a staff member wrote, stripped; refused (`StaffTextRefused`) when it holds an
        e-mail address, a phone number, a card number or a street address other than the
        business's own: notes and reasons are kept in clear, in the request's record and the
        audit log, which hold no personal values."""
        text = text.strip()
        found = self.vault.scanner.personal_data_in(
            text, allowed=document.organization.contact_details()
        )
        if found:
            raise StaffTextRefused(
                f"{what} is kept in clear in the request's record and the audit log, so it must "
                f"not hold personal data; it holds {' and '.join(found)}. Say what was done, "
                "not the values."
            )
        return text

    # --- Work -----------------------------------------------------------------------------------

    def _start(
        self, session: Session, row: PrivacyRequest, document: PolicyDocument, *, actor: str
    ) -> list[str]:
        """After verification: start the work, or wait for staff where the policy says so."""
        if RequestKind(row.kind) in document.requests.staff_approval:
            return []
        self._move(session, row, Status.VERIFIED, Status.IN_PROGRESS, actor=actor)
        row.work_started_at = _now()
        return [self.jobs.add(session, FULFIL, {"request_id": row.id})]

    def complete(
        self,
        request_id: str,
        *,
        outcome: Mapping[str, Any],
        answer: str,
        package: str | None = None,
        actor: str = "pledge requests",
    ) -> str | None:
        """Close a request as done, tell the person `answer`; with `package` (the access
        package's JSON), seal it and return the download token (None otherwise)."""
        document = self._policy()
        token = None
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            if row.status == Status.COMPLETED.value:
                return None
            check_transition(Status(row.status), Status.COMPLETED)
            row.outcome = dict(outcome)
            text = answer
            if package is not None:
                token = _new_token()
                row.package_sealed = seal(self._key(row.id), package, _aad(row.id, "package"))
                row.package_token_sha256 = _sha256(token)
                link = document.requests.package_link
                row.package_expires_at = moment_after(_now(), link.amount, link.unit.value)
                text += (
                    f"\n\nDownload it here until {row.package_expires_at:%Y-%m-%d} (you will be "
                    f"asked to sign in with this address):\n\n{self.package_url(row.id, token)}"
                )
            self._close(session, row, Status.COMPLETED, document, actor=actor)
            job_ids = self._tell(session, row, f"Your privacy request {row.id[:8]} is done", text)
        self.jobs.dispatch(job_ids)
        return token

    def remember_addresses(self, request_id: str, addresses: Sequence[str]) -> None:
        """Seal, with the request's details, the addresses a subject held before its erasure."""
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            details = self._details(row)
            details.addresses = sorted(set(addresses))
            row.sealed = seal(self._key(row.id), details.dumps(), _aad(row.id, "details"))

    def progress(self, request_id: str) -> dict[str, Any]:
        """What the work on a request has done so far (kept in its outcome until it closes)."""
        with self.sessions() as session:
            row = session.get(PrivacyRequest, request_id)
            if row is None:
                raise RequestNotFound(request_id)
            return dict(row.outcome or {})

    def save_progress(
        self,
        request_id: str,
        progress: Mapping[str, Any],
        *,
        jobs: Sequence[tuple[str, Mapping[str, Any]]] = (),
        audit: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a step of the work before the next, with the jobs it queues and its audit
        entry, in one transaction: a job run again after a crash picks up from there, and
        queues nothing twice."""
        with self.sessions() as session, session.begin():
            row = self._locked(session, request_id)
            row.outcome = {**(row.outcome or {}), **progress}
            job_ids = [self.jobs.add(session, kind, payload) for kind, payload in jobs]
            if audit is not None:
                record(
                    session,
                    actor=ACTOR,
                    action=str(audit["action"]),
                    subject_id=row.subject_id,
                    purpose=PRIVACY_REQUESTS,
                    details={"request": row.id, **audit.get("details", {})},
                )
        self.jobs.dispatch(job_ids)

    def package_url(self, request_id: str, token: str) -> str:
        """The download link of an access package."""
        return f"{self.request_url(request_id)}/package?token={token}"

    def package(self, request_id: str, *, token: str, email_index: str) -> str:
        """The sealed package's JSON, for the verified requester holding the link; raise
        `RequestNotFound` otherwise (expired, wrong token, someone else's)."""
        with self.sessions() as session, session.begin():
            row = session.get(PrivacyRequest, request_id)
            if (
                row is None
                or row.email_index != email_index
                or row.package_sealed is None
                or row.package_token_sha256 is None
                or row.package_expires_at is None
                or _utc(row.package_expires_at) < _now()
                or not _same(row.package_token_sha256, _sha256(token))
            ):
                raise RequestNotFound(request_id)
            record(
                session,
                actor="privacy center",
                action="request.package_downloaded",
                subject_id=row.subject_id,
                purpose=PRIVACY_REQUESTS,
                details={"request": row.id},
            )
            return unseal(self._key(row.id), row.package_sealed, _aad(row.id, "package"))

    def package_for_staff(self, request_id: str, *, actor: str) -> str:
        """The sealed package's JSON for a staff member, to send by post a package whose
        requester gave no e-mail address; audited. Raise `RequestNotFound` when there is none
        (not an access request, not done yet, or its details were destroyed)."""
        with self.sessions() as session, session.begin():
            row = session.get(PrivacyRequest, request_id)
            if row is None or row.package_sealed is None:
                raise RequestNotFound(request_id)
            record(
                session,
                actor=actor,
                action="request.package_viewed",
                subject_id=row.subject_id,
                purpose=PRIVACY_REQUESTS,
                details={"request": row.id},
            )
            return unseal(self._key(row.id), row.package_sealed, _aad(row.id, "package"))

    def email_index_of(self, request_id: str) -> str | None:
        """The blind index of the address a request was made under (None: none given)."""
        with self.sessions() as session:
            row = session.get(PrivacyRequest, request_id)
            if row is None:
                raise RequestNotFound(request_id)
            return row.email_index

    def send_notice(self, *, to: str, subject_line: str, text: str) -> None:
        """Send a transactional message (to a recipient, about a request) now, as a job."""
        with self.sessions() as session, session.begin():
            job_id = self.mailer.queue_transactional(
                session, to=to, subject_line=subject_line, text=text
            )
        self.jobs.dispatch([job_id])

    def reveal(self, request_id: str, *, actor: str) -> Details:
        """A request's sealed details, shown to a staff member working it: the view is audited
        with its purpose, in the same transaction as the read."""
        with self.sessions() as session, session.begin():
            row = session.get(PrivacyRequest, request_id)
            if row is None:
                raise RequestNotFound(request_id)
            details = self._details(row)
            record(
                session,
                actor=actor,
                action="request.details_viewed",
                subject_id=row.subject_id,
                purpose=PRIVACY_REQUESTS,
                details={"request": row.id},
            )
        return details

    def details(self, request_id: str) -> Details:
        """A request's sealed details; for fulfilment and for staff working the request."""
        with self.sessions() as session:
            row = session.get(PrivacyRequest, request_id)
            if row is None:
                raise RequestNotFound(request_id)
            return self._details(row)

    # --- Reading --------------------------------------------------------------------------------

    def get(self, request_id: str) -> RequestView:
        """One request; raise `RequestNotFound`."""
        with reading(self.sessions) as session:
            row = session.get(PrivacyRequest, request_id)
            if row is None:
                raise RequestNotFound(request_id)
            return _view(row)

    def record_of(self, request_id: str) -> RequestRecord:
        """A request, every move of its status and the day it is read on, in one read-only
        transaction (one snapshot on SQLite): what a status page or `GET /v1/requests/{id}`
        shows; raise `RequestNotFound`."""
        with reading(self.sessions) as session:
            row = session.get(PrivacyRequest, request_id)
            if row is None:
                raise RequestNotFound(request_id)
            moves = session.scalars(_TRANSITIONS_OF, {"request_id": request_id}).all()
            return RequestRecord(
                _view(row), [_transition(move) for move in moves], self._today(_policy_of(session))
            )

    def of_requester(self, request_id: str, email_index: str) -> RequestView:
        """A request, for the person who proved its address only."""
        view_row = self.get(request_id)
        with self.sessions() as session:
            row = session.get(PrivacyRequest, request_id)
            if row is None or row.email_index != email_index:
                raise RequestNotFound(request_id)
        return view_row

    def requests_of(self, email_index: str) -> list[RequestView]:
        """Every request made under a proven address, newest first."""
        with self.sessions() as session:
            rows = session.scalars(
                select(PrivacyRequest)
                .where(PrivacyRequest.email_index == email_index)
                .order_by(PrivacyRequest.received_at.desc())
            ).all()
            return [_view(row) for row in rows]

    def queue(
        self,
        *,
        status: Status | None = None,
        open_only: bool = False,
        overdue_on: dt.date | None = None,
        limit: int = 500,
    ) -> list[RequestView]:
        """Requests sorted by their due date, soonest first."""
        with self.sessions() as session:
            query = select(PrivacyRequest)
            if status is not None:
                query = query.where(PrivacyRequest.status == status.value)
            if open_only or overdue_on is not None:
                query = query.where(PrivacyRequest.status.in_([s.value for s in OPEN_STATUSES]))
            rows = session.scalars(query.order_by(PrivacyRequest.received_at)).all()
            views = [_view(row) for row in rows]
        if overdue_on is not None:
            views = [v for v in views if v.overdue(overdue_on)]
        return sorted(views, key=lambda v: (v.due, v.received_at))[:limit]

    def transitions(self, request_id: str) -> list[TransitionView]:
        """Every move of a request's status, oldest first."""
        with reading(self.sessions) as session:
            if session.get(PrivacyRequest, request_id) is None:
                raise RequestNotFound(request_id)
            rows = session.scalars(_TRANSITIONS_OF, {"request_id": request_id}).all()
            return [_transition(row) for row in rows]

    def export_csv(self, *, since: dt.date | None = None) -> Iterator[str]:
        """The request records as CSV lines (no personal data): what the law asks to be kept.

        Rows are read a page at a time, each page in a short transaction of its own: a slow
        download never holds the database (on SQLite, its write lock) while it streams."""
        zone = zoneinfo.ZoneInfo(self._policy().requests.timezone)
        buffer = io.StringIO()
        writer = csv.writer(buffer)

        def flush() -> str:
            text = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            return text

        writer.writerow(CSV_COLUMNS)
        yield flush()
        after: tuple[dt.datetime, str] | None = None
        while True:
            query = (
                select(PrivacyRequest)
                .order_by(PrivacyRequest.received_at, PrivacyRequest.id)
                .limit(CSV_PAGE)
            )
            if since is not None:
                query = query.where(PrivacyRequest.received_on >= since)
            if after is not None:
                query = query.where(
                    tuple_(PrivacyRequest.received_at, PrivacyRequest.id) > tuple_(*after)
                )
            with self.sessions() as session:
                rows = session.scalars(query).all()
                page = [_view(row) for row in rows]
                if rows:
                    after = (rows[-1].received_at, rows[-1].id)
            for view in page:
                writer.writerow(_csv_row(view, zone))
            if page:
                yield flush()
            if len(page) < CSV_PAGE:
                return

    # --- Chores ---------------------------------------------------------------------------------

    def remind_staff(self, today: dt.date | None = None) -> int:
        """Mail the privacy contact a list of open requests due within a week, overdue, or not
        acknowledged in time; once a day at most per request. Returns how many were listed."""
        document = self._policy()
        today = today or self._today(document)
        lines = []
        with self.sessions() as session, session.begin():
            rows = session.scalars(
                select(PrivacyRequest)
                .where(
                    PrivacyRequest.status.in_([s.value for s in OPEN_STATUSES]),
                    or_(PrivacyRequest.reminded_on.is_(None), PrivacyRequest.reminded_on < today),
                )
                .order_by(PrivacyRequest.answer_by)
                .with_for_update()
            ).all()
            for row in rows:
                view = _view(row)
                if view.overdue(today):
                    state = f"OVERDUE since {view.due.isoformat()}"
                elif view.acknowledgement_overdue(today):
                    state = f"not acknowledged; was due {view.acknowledge_by}"
                elif view.due - today <= dt.timedelta(days=REMIND_WITHIN.days):
                    state = f"due {view.due.isoformat()}"
                else:
                    continue
                lines.append(f"- {view.id} {view.kind.value} ({view.status.value}): {state}")
                row.reminded_on = today
            if not lines:
                return 0
            job_id = self.mailer.queue_transactional(
                session,
                to=document.organization.privacy_email,
                subject_line=f"Privacy requests needing attention: {len(lines)}",
                text="These privacy requests need attention:\n\n" + "\n".join(lines),
            )
            record(
                session,
                actor=ACTOR,
                action="request.staff_reminded",
                purpose=PRIVACY_REQUESTS,
                details={"requests": len(lines)},
            )
        self.jobs.dispatch([job_id])
        return len(lines)

    def forget_expired(self, now: dt.datetime | None = None) -> int:
        """Destroy the sealed details, package and key of requests closed longer ago than the
        policy keeps records; the anonymous record (dates, kind, outcome) stays."""
        now = now or _now()
        with self.sessions() as session, session.begin():
            ids = session.scalars(
                select(PrivacyRequest.id).where(
                    PrivacyRequest.forget_after.is_not(None),
                    PrivacyRequest.forget_after <= now,
                    PrivacyRequest.sealed.is_not(None),
                )
            ).all()
            if not ids:
                return 0
            self.keyring.destroy_data_keys(list(ids))
            session.execute(
                update(PrivacyRequest)
                .where(PrivacyRequest.id.in_(ids))
                .values(
                    sealed=None,
                    package_sealed=None,
                    package_token_sha256=None,
                    email_index=None,
                    subject_id=None,
                )
            )
            record(
                session,
                actor=ACTOR,
                action="request.records_forgotten",
                purpose=PRIVACY_REQUESTS,
                details={"requests": len(ids)},
            )
        return len(ids)

    # --- Shared ---------------------------------------------------------------------------------

    def _move(
        self,
        session: Session,
        row: PrivacyRequest,
        current: Status | None,
        wanted: Status,
        *,
        actor: str,
        note: str | None = None,
    ) -> None:
        if current is not None:
            check_transition(current, wanted)
        row.status = wanted.value
        details = {"request": row.id, "from": None if current is None else current.value}
        self._history(
            session,
            row,
            current,
            wanted,
            actor=actor,
            note=note,
            action="request.status",
            details={**details, "to": wanted.value},
        )

    def _note(
        self, session: Session, row: PrivacyRequest, status: Status, *, actor: str, note: str
    ) -> None:
        """A step in a request's history that leaves its status as it is (an extension while
        it waits for the person's proof); audited like a move."""
        details = {"request": row.id, "status": status.value}
        self._history(
            session,
            row,
            status,
            status,
            actor=actor,
            note=note,
            action="request.extended",
            details=details,
        )

    @staticmethod
    def _history(
        session: Session,
        row: PrivacyRequest,
        current: Status | None,
        wanted: Status,
        *,
        actor: str,
        note: str | None,
        action: str,
        details: Mapping[str, str | None],
    ) -> None:
        """One line of the request's history (`request_transitions`) and its audit entry."""
        now = _now()
        session.add(
            RequestTransition(
                request_id=row.id,
                from_status=None if current is None else current.value,
                to_status=wanted.value,
                actor=actor,
                at=now,
                note=note,
            )
        )
        record(
            session,
            actor=actor,
            action=action,
            subject_id=row.subject_id,
            purpose=PRIVACY_REQUESTS,
            details=details,
            now=now,
        )

    def _close(
        self,
        session: Session,
        row: PrivacyRequest,
        final: Status,
        document: PolicyDocument,
        *,
        actor: str,
        note: str | None = None,
    ) -> None:
        now = _now()
        self._move(session, row, Status(row.status), final, actor=actor, note=note)
        row.closed_at = now
        kept = document.requests.records_kept
        row.forget_after = moment_after(now, kept.amount, kept.unit.value)

    def _tell(
        self, session: Session, row: PrivacyRequest, subject_line: str, text: str
    ) -> list[str]:
        details = self._details(row)
        if details.email is None:
            return []
        return [
            self.mailer.queue_transactional(
                session, to=details.email, subject_line=subject_line, text=text
            )
        ]

    def _details(self, row: PrivacyRequest) -> Details:
        if row.sealed is None:
            raise RequestNotFound(row.id)
        return Details.loads(unseal(self._key(row.id), row.sealed, _aad(row.id, "details")))

    def _key(self, request_id: str) -> bytes:
        try:
            return self.keyring.data_key(request_id)
        except SubjectKeyDestroyed:
            raise RequestNotFound(request_id) from None

    def _locked(self, session: Session, request_id: str) -> PrivacyRequest:
        row = session.get(PrivacyRequest, request_id, with_for_update=True)
        if row is None:
            raise RequestNotFound(request_id)
        return row

    def _email_index(self, email: str) -> str:
        return self.keyring.blind_index(
            IdentityKind.EMAIL.value, normalize_identity(IdentityKind.EMAIL, email)
        )

    def _policy(self) -> PolicyDocument:
        with reading(self.sessions) as session:
            return _policy_of(session)

    def policy(self) -> PolicyDocument:
        """The policy in force; raise `IntakeRefused` if none is."""
        return self._policy()

    def attempts_allowed(self) -> int:
        """Wrong sets of data points a request allows before it is denied."""
        return self._policy().requests.attempts

    def today(self) -> dt.date:
        """Today in the business's time zone: the day deadlines are counted in."""
        return self._today(self._policy())

    def _today(self, document: PolicyDocument) -> dt.date:
        return _now().astimezone(zoneinfo.ZoneInfo(document.requests.timezone)).date()


ACTOR = "pledge requests"

_ASKED = {
    RequestKind.ACCESS: "see the personal information we hold about you",
    RequestKind.PORTABILITY: "receive your personal information in a portable form",
    RequestKind.CORRECTION: "correct personal information we hold about you",
    RequestKind.DELETION: "delete the personal information we hold about you",
    RequestKind.OPT_OUT_SALE_SHARING: "opt out of the sale and sharing of your information",
    RequestKind.LIMIT_SENSITIVE: "limit the use of your sensitive personal information",
    RequestKind.UNSUBSCRIBE: "stop all marketing messages to you",
}

CSV_PAGE = 500

CSV_COLUMNS = (
    "id",
    "kind",
    "channel",
    "regime",
    "status",
    "by_agent",
    "received_on",
    "acknowledge_by",
    "acknowledged_at",
    "answer_by",
    "extended",
    "due",
    "verified_at",
    "closed_at",
    "days_to_close",
    "on_time",
    "denial_reason",
)


def _csv_row(view: RequestView, zone: zoneinfo.ZoneInfo) -> list[str]:
    # Days count in the business's time zone, as the deadlines do.
    closed_on = view.closed_at.astimezone(zone).date() if view.closed_at else None
    return [
        view.id,
        view.kind.value,
        view.channel.value,
        view.regime.value,
        view.status.value,
        "yes" if view.by_agent else "no",
        view.received_on.isoformat(),
        view.acknowledge_by.isoformat() if view.acknowledge_by else "",
        view.acknowledged_at.isoformat() if view.acknowledged_at else "",
        view.answer_by.isoformat(),
        "yes" if view.extended else "no",
        view.due.isoformat(),
        view.verified_at.isoformat() if view.verified_at else "",
        view.closed_at.isoformat() if view.closed_at else "",
        str((closed_on - view.received_on).days + 1) if closed_on else "",
        ("yes" if closed_on <= view.due else "no") if closed_on else "",
        csv_cell(view.denial_reason or ""),
    ]


def _intake_problem(intake: Intake, document: PolicyDocument) -> str | None:
    return next((problem for problem in _intake_problems(intake, document) if problem), None)


def _intake_problems(intake: Intake, document: PolicyDocument) -> Iterator[str | None]:
    if intake.email is None and intake.channel not in {Channel.PHONE, Channel.POST}:
        yield "an e-mail address is needed to answer a request made this way"
    if intake.email is not None:
        try:
            normalize_identity(IdentityKind.EMAIL, intake.email)
        except IdentityInvalid as invalid:
            yield str(invalid)
    if (intake.channel in STAFF_CHANNELS) != (intake.entered_by is not None):
        yield "requests received by e-mail, phone or post are entered by a named staff member"
    if intake.corrections and intake.kind is not RequestKind.CORRECTION:
        yield "only a correction request carries corrections"
    if intake.kind is RequestKind.CORRECTION and not intake.corrections:
        yield "a correction request says what is wrong and what is right"
    for correction in intake.corrections:
        spec = document.data_categories.get(correction.category)
        if spec is None or not spec.linkable or not spec.shown_in_access_requests:
            # Secrets (passwords, card numbers) are changed by their own means, never here.
            yield f"'{correction.category}' is not a category of personal information we hold"
            continue
        kind = IDENTITY_CATEGORIES.get(correction.category)
        if kind is not None:
            try:
                normalize_identity(kind, correction.value)
            except IdentityInvalid as invalid:
                yield f"the correct value is not valid: {invalid}"
    if intake.agent is not None and intake.kind in OPT_OUT_KINDS and intake.email is None:
        yield "an agent's opt-out request needs the person's e-mail address"


def _policy_of(session: Session) -> PolicyDocument:
    """The policy in force, read in `session`'s transaction; raise `IntakeRefused` if none is."""
    loaded = policy_in_force(session)
    if loaded is None:
        raise IntakeRefused("no policy version is in force: publish one first")
    return loaded.document


_TRANSITIONS_OF = (
    select(RequestTransition)
    .where(RequestTransition.request_id == bindparam("request_id"))
    .order_by(RequestTransition.id)
)


def _transition(row: RequestTransition) -> TransitionView:
    return TransitionView(
        None if row.from_status is None else Status(row.from_status),
        Status(row.to_status),
        row.actor,
        _utc(row.at),
        row.note,
    )


def _view(row: PrivacyRequest) -> RequestView:
    return RequestView(
        id=row.id,
        kind=RequestKind(row.kind),
        channel=Channel(row.channel),
        status=Status(row.status),
        regime=Regime(row.regime),
        tier=VerificationTier(row.tier),
        by_agent=row.by_agent,
        entered_by=row.entered_by,
        subject_id=row.subject_id,
        attempts=row.attempts,
        staff_check=row.staff_check,
        received_at=_utc(row.received_at),
        received_on=row.received_on,
        acknowledge_by=row.acknowledge_by,
        acknowledged_at=None if row.acknowledged_at is None else _utc(row.acknowledged_at),
        answer_by=row.answer_by,
        extended=row.extended,
        due=row.extended_answer_by if row.extended else row.answer_by,
        verified_at=None if row.verified_at is None else _utc(row.verified_at),
        work_started_at=None if row.work_started_at is None else _utc(row.work_started_at),
        closed_at=None if row.closed_at is None else _utc(row.closed_at),
        denial_reason=row.denial_reason,
        outcome=row.outcome,
        package_ready=row.package_sealed is not None
        and row.package_expires_at is not None
        and _utc(row.package_expires_at) > _now(),
    )


def _aad(request_id: str, part: str) -> bytes:
    return f"request:{request_id}:{part}".encode()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
