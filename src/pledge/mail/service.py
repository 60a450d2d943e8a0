"""The mail path: queue messages as jobs, decide again right before sending, honor unsubscribes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import Act, record, record_many
from pledge.config import Settings
from pledge.consent import ConsentLedger, Method
from pledge.jobs import JobQueue
from pledge.keyring import Keyring, SubjectKeyDestroyed
from pledge.mail.rules import (
    MARKETING_EMAIL,
    UNSUBSCRIBE_NOTICE,
    MessageKind,
    MessageStatus,
    marketing_message,
    new_token,
    notice_sha256,
    suppression_lifted,
    token_digest,
    transactional_message,
)
from pledge.mail.smtp import SmtpRelay
from pledge.mail.tables import MailMessage, Suppression, UnsubscribeLink
from pledge.vault import IdentityKind, SubjectErased, SubjectNotFound, Vault
from pledge.vault.rules import normalize_identity
from pledge.vault.sealing import seal, unseal

log = logging.getLogger(__name__)

DELIVER = "mail.deliver"
"""The job kind that sends one message."""

ACTOR = "pledge mail"
TRANSACTIONAL_KEPT = dt.timedelta(days=2)
"""How long an unsent transactional message (sealed) waits for its job before it is shredded."""
EMAIL_CATEGORY = "user.contact.email"


class MessageNotFound(LookupError):
    """No message has this ID."""


class MessageInFlight(RuntimeError):
    """Another attempt claimed the message (status `sending`) and has not recorded what became
    of it: this attempt sends nothing. The job tries again later, when the other attempt has
    finished (the message is then `sent` or `withheld`, and there is nothing left to do)."""


@dataclass(frozen=True)
class MessageView:
    """A message as the API shows it: never its address."""

    id: str
    kind: MessageKind
    subject_id: str | None
    campaign: str | None
    status: MessageStatus
    reasons: tuple[str, ...]
    job_id: str
    """The job that sends it: `GET /v1/jobs/{job_id}` shows its attempts and last error."""
    created_at: dt.datetime
    sent_at: dt.datetime | None


class LinkState:
    """What an unsubscribe link is worth now."""

    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class Mailer:
    """Sends Pledge's mail through jobs; marketing mail only when the person still allows it."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        keyring: Keyring,
        vault: Vault,
        ledger: ConsentLedger,
        jobs: JobQueue,
        relay: SmtpRelay | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.keyring = keyring
        self.vault = vault
        self.ledger = ledger
        self.jobs = jobs
        self.relay = relay or SmtpRelay(settings)
        jobs.handle(DELIVER, self.deliver)
        jobs.every(60, "pledge.mail.forget_expired", self.forget_expired)

    # --- Queueing -----------------------------------------------------------------------------

    def queue_marketing(
        self,
        subject_ids: Sequence[str],
        *,
        campaign: str,
        subject_line: str,
        text: str,
        actor: str,
    ) -> list[str]:
        """One message per person, each a job; whether it may go is decided when it is sent."""
        now = _now()
        message_ids, job_ids, acts = [], [], []
        with self.sessions() as session, session.begin():
            for subject_id in dict.fromkeys(subject_ids):
                message_id, job_id = self._queue(
                    session,
                    MessageKind.MARKETING,
                    subject_line,
                    subject_id=subject_id,
                    campaign=campaign,
                    text=text,
                )
                message_ids.append(message_id)
                job_ids.append(job_id)
                details = {"message": message_id, "campaign": campaign}
                acts.append(Act(actor, "mail.queued", subject_id, MARKETING_EMAIL, details))
            record_many(session, acts, now=now)
        self.jobs.dispatch(job_ids)
        return message_ids

    def queue_transactional(
        self, session: Session, *, to: str, subject_line: str, text: str
    ) -> str:
        """Add a transactional message to the caller's transaction; the job ID to dispatch after
        commit. Address and text are sealed under a key made for this message alone."""
        message_id = str(uuid.uuid4())
        key = self.keyring.create_data_key(message_id)
        sealed = seal(key, json.dumps({"to": to, "text": text}), message_id.encode())
        _, job_id = self._queue(
            session, MessageKind.TRANSACTIONAL, subject_line, message_id=message_id, sealed=sealed
        )
        return job_id

    def _queue(
        self,
        session: Session,
        kind: MessageKind,
        subject_line: str,
        *,
        message_id: str | None = None,
        subject_id: str | None = None,
        campaign: str | None = None,
        text: str | None = None,
        sealed: bytes | None = None,
    ) -> tuple[str, str]:
        """A queued message and its job in the caller's transaction: (message ID, job ID)."""
        message_id = message_id or str(uuid.uuid4())
        job_id = self.jobs.add(session, DELIVER, {"message_id": message_id})
        session.add(
            MailMessage(
                id=message_id,
                kind=kind.value,
                subject_id=subject_id,
                campaign=campaign,
                subject_line=subject_line,
                text=text,
                sealed=sealed,
                status=MessageStatus.QUEUED.value,
                reasons=[],
                job_id=job_id,
                created_at=_now(),
                sent_at=None,
            )
        )
        return message_id, job_id

    def message(self, message_id: str) -> MessageView:
        """A message and what became of it; raise `MessageNotFound`."""
        with self.sessions() as session:
            row = session.get(MailMessage, message_id)
            if row is None:
                raise MessageNotFound(message_id)
            return MessageView(
                id=row.id,
                kind=MessageKind(row.kind),
                subject_id=row.subject_id,
                campaign=row.campaign,
                status=MessageStatus(row.status),
                reasons=tuple(row.reasons),
                job_id=row.job_id,
                created_at=_utc(row.created_at),
                sent_at=None if row.sent_at is None else _utc(row.sent_at),
            )

    # --- Sending (a job) ----------------------------------------------------------------------

    def deliver(self, payload: Mapping[str, Any]) -> None:
        """Send one queued message. Raising fails this attempt, and the job retries.

        The message is claimed first (`queued` to `sending`, by an update that only a queued
        message passes), so of two workers running its job at once (a lease that passed while
        the first was still sending) only one sends; the other raises `MessageInFlight`. Every
        later change of status names the status it expects, too. A failure before the SMTP
        server accepted the message puts it back to `queued` for the next attempt; once
        accepted, it is never sent again."""
        message_id = str(payload["message_id"])
        message = self._claim(message_id)
        if message is None:
            with self.sessions() as session:
                current = session.get(MailMessage, message_id)
            if current is None:
                return
            if current.status == MessageStatus.SENDING.value:
                raise MessageInFlight(message_id)
            if current.kind == MessageKind.TRANSACTIONAL.value:
                # Done before, but the key may have outlived a failure after the send: shred it.
                self.keyring.destroy_data_key(current.id)
            return
        if message.kind == MessageKind.MARKETING.value:
            self._deliver_marketing(message)
        else:
            self._deliver_transactional(message)

    def _claim(self, message_id: str) -> MailMessage | None:
        """Mark a queued message `sending` and return it; None if it is not queued (another
        worker holds it, it is done, or it does not exist)."""
        with self.sessions() as session, session.begin():
            return session.scalars(_CLAIM, {"message_id": message_id}).first()

    def _set_status(
        self,
        session: Session,
        message: MailMessage,
        status: MessageStatus,
        *,
        expected: MessageStatus = MessageStatus.SENDING,
        **values: Any,
    ) -> bool:
        """Change a message's status in `session`'s transaction, if it still has the status
        `expected`; whether it had."""
        changed = session.execute(
            update(MailMessage)
            .where(MailMessage.id == message.id, MailMessage.status == expected.value)
            .values(status=status.value, **values)
        )
        if cast("CursorResult[Any]", changed).rowcount == 1:
            return True
        log.warning("message %s was not %s any more: left as it is", message.id, expected.value)
        return False

    def _release(self, message: MailMessage) -> None:
        """Give a claimed message back to the queue: its attempt failed before the SMTP server
        accepted it, and the job's next attempt sends it."""
        with self.sessions() as session, session.begin():
            self._set_status(session, message, MessageStatus.QUEUED)

    def _deliver_marketing(self, message: MailMessage) -> None:
        subject_id = message.subject_id or ""
        try:
            address, refusals = self._marketing_address(subject_id)
            if address is None:
                self._withhold(message, refusals)
                return
            email_index = self.keyring.blind_index(
                IdentityKind.EMAIL.value, normalize_identity(IdentityKind.EMAIL, address)
            )
            if self._suppressed(subject_id, email_index):
                self._withhold(
                    message, ["suppressed: this address unsubscribed from marketing e-mail"]
                )
                return
            token, digest = new_token()
            now = _now()
            with self.sessions() as session, session.begin():
                session.add(
                    UnsubscribeLink(
                        token_sha256=digest,
                        message_id=message.id,
                        subject_id=subject_id,
                        purpose=MARKETING_EMAIL,
                        email_index=email_index,
                        created_at=now,
                        expires_at=now + dt.timedelta(days=self.settings.unsubscribe_link_days),
                        used_at=None,
                    )
                )
            organization = self.ledger.policy_in_force().document.organization
            self.relay.send(
                marketing_message(
                    sender=self.settings.mail_from,
                    to=address,
                    subject_line=message.subject_line,
                    text=message.text or "",
                    unsubscribe_url=self.unsubscribe_url(token),
                    organization=organization,
                )
            )
        except BaseException:
            self._release(message)
            raise
        self._mark_sent(message, subject_id)

    def _marketing_address(self, subject_id: str) -> tuple[str | None, list[str]]:
        """The address to send to now, or why there is none: the decision for marketing e-mail
        (consent, opt-outs, erasure) and the vault's read for that purpose, both audited."""
        try:
            decision = self.ledger.decide(
                subject_id, MARKETING_EMAIL, [EMAIL_CATEGORY], actor=ACTOR
            )
            if not decision.allowed:
                return None, list(decision.reasons)
            data = self.vault.read(subject_id, MARKETING_EMAIL, actor=ACTOR)
        except SubjectErased:
            return None, ["the person was erased"]
        except SubjectNotFound:
            return None, ["no such person"]
        emails = [v for v in data.values if v.category == EMAIL_CATEGORY]
        if not emails:
            return None, ["no e-mail address is held for marketing e-mail"]
        return max(emails, key=lambda v: (v.collected_at, v.id)).value, []

    def _suppressed(self, subject_id: str, email_index: str) -> bool:
        """Whether the address is on the suppression list. Only a fresh, affirmative opt-in the
        person gave after their address was suppressed (a new double opt-in, a ticked box, a
        choice in the privacy center: `suppression_lifted`) lifts the suppression; a grant by
        any other method (the cookie banner, say) does not."""
        # Read before this transaction: on SQLite a second one would wait for this one's lock.
        history = self.ledger.history(subject_id)
        with self.sessions() as session, session.begin():
            suppression = session.get(Suppression, email_index, with_for_update=True)
            if suppression is None:
                return False
            if not suppression_lifted(history, _utc(suppression.created_at)):
                return True
            session.delete(suppression)
            record(
                session,
                actor=ACTOR,
                action="mail.suppression_lifted",
                subject_id=subject_id,
                purpose=MARKETING_EMAIL,
                details={"reason": "opted in again after the suppression"},
            )
            return False

    def _deliver_transactional(self, message: MailMessage) -> None:
        try:
            try:
                key = self.keyring.data_key(message.id)
            except SubjectKeyDestroyed:
                self._withhold(message, ["the message's sealed text was destroyed"])
                return
            sealed = json.loads(unseal(key, message.sealed or b"", message.id.encode()))
            self.relay.send(
                transactional_message(
                    sender=self.settings.mail_from,
                    to=sealed["to"],
                    subject_line=message.subject_line,
                    text=sealed["text"],
                )
            )
        except BaseException:
            self._release(message)
            raise
        self._mark_sent(message, None)
        # Sent: the address and text are needed no more. Destroying the key shreds them.
        self.keyring.destroy_data_key(message.id)

    def _mark_sent(self, message: MailMessage, subject_id: str | None) -> None:
        now = _now()
        with self.sessions() as session, session.begin():
            self._set_status(session, message, MessageStatus.SENT, sent_at=now, sealed=None)
            record(
                session,
                actor=ACTOR,
                action="mail.sent",
                subject_id=subject_id,
                purpose=MARKETING_EMAIL if subject_id else None,
                details={"message": message.id, "kind": message.kind},
                now=now,
            )

    def _withhold(self, message: MailMessage, reasons: list[str]) -> None:
        if message.kind == MessageKind.TRANSACTIONAL.value:
            self.keyring.destroy_data_key(message.id)
        with self.sessions() as session, session.begin():
            if not self._set_status(
                session, message, MessageStatus.WITHHELD, reasons=reasons, sealed=None
            ):
                return
            record(
                session,
                actor=ACTOR,
                action="mail.withheld",
                subject_id=message.subject_id,
                purpose=MARKETING_EMAIL if message.subject_id else None,
                details={"message": message.id, "reasons": reasons},
            )
        log.info("message %s withheld", message.id)

    # --- Housekeeping -------------------------------------------------------------------------

    def forget_expired(self, now: dt.datetime | None = None) -> int:
        """Delete expired unsubscribe links, and shred transactional messages still unsent
        after `TRANSACTIONAL_KEPT` (a code nobody can use any more); how many went."""
        now = now or _now()
        with self.sessions() as session, session.begin():
            links = session.execute(delete(UnsubscribeLink).where(UnsubscribeLink.expires_at < now))
            stale = session.scalars(
                update(MailMessage)
                .where(
                    MailMessage.kind == MessageKind.TRANSACTIONAL.value,
                    MailMessage.status == MessageStatus.QUEUED.value,
                    MailMessage.created_at < now - TRANSACTIONAL_KEPT,
                )
                .values(
                    status=MessageStatus.WITHHELD.value,
                    sealed=None,
                    reasons=["not sent in time: its text was shredded"],
                )
                .returning(MailMessage.id)
            ).all()
        self.keyring.destroy_data_keys(list(stale))
        return int(cast("CursorResult[Any]", links).rowcount) + len(stale)

    # --- Unsubscribing ------------------------------------------------------------------------

    def unsubscribe_url(self, token: str) -> str:
        """The HTTPS link a message carries (HTTP only in development)."""
        return f"{self.settings.public_url.rstrip('/')}/mail/unsubscribe/{token}"

    def link_state(self, token: str) -> str:
        """Whether a link still works; changes nothing (a GET, or a mail scanner, may ask)."""
        with self.sessions() as session:
            link = session.get(UnsubscribeLink, token_digest(token))
        if link is None:
            return LinkState.UNKNOWN
        return LinkState.VALID if _utc(link.expires_at) > _now() else LinkState.EXPIRED

    def unsubscribe(self, token: str, *, source: str) -> bool:
        """Withdraw marketing consent for the link's person and suppress the address the message
        went to; false if the link is unknown or expired. Saying it twice changes nothing more."""
        now = _now()
        with self.sessions() as session, session.begin():
            link = session.get(UnsubscribeLink, token_digest(token), with_for_update=True)
            if link is None or _utc(link.expires_at) <= now:
                return False
            subject_id, purpose = link.subject_id, link.purpose
            first = link.used_at is None
            if first:
                link.used_at = now
            _suppress(session, link.email_index, now)
            if first:
                record(
                    session,
                    actor="one-click unsubscribe",
                    action="mail.unsubscribed",
                    subject_id=subject_id,
                    purpose=purpose,
                    details={"message": link.message_id, "source": source},
                    now=now,
                )
        self._withdraw(subject_id, purpose, source)
        return True

    def _withdraw(self, subject_id: str, purpose: str, source: str) -> None:
        try:
            self.ledger.withdraw(
                subject_id,
                [purpose],
                method=Method.ONE_CLICK_UNSUBSCRIBE,
                source=source,
                notice_sha256=notice_sha256(UNSUBSCRIBE_NOTICE),
                actor="one-click unsubscribe",
            )
        except (SubjectErased, SubjectNotFound):
            return  # nothing left to withdraw; the suppression still stops every send

    def suppress(self, address: str, *, source: str) -> None:
        """Put `address` on the suppression list: no marketing message goes to it again (a
        request to stop all marketing). Saying it twice changes nothing more."""
        digest = self.keyring.blind_index(
            IdentityKind.EMAIL.value, normalize_identity(IdentityKind.EMAIL, address)
        )
        now = _now()
        with self.sessions() as session, session.begin():
            _suppress(session, digest, now)
            record(
                session,
                actor=ACTOR,
                action="mail.suppressed",
                purpose=MARKETING_EMAIL,
                details={"source": source},
                now=now,
            )

    def suppressed(self, address: str) -> bool:
        """Whether marketing mail to `address` is suppressed."""
        digest = self.keyring.blind_index(
            IdentityKind.EMAIL.value, normalize_identity(IdentityKind.EMAIL, address)
        )
        with self.sessions() as session:
            return (
                session.scalar(
                    select(Suppression.email_index).where(Suppression.email_index == digest)
                )
                is not None
            )


_SUPPRESSIONS = cast("Table", Suppression.__table__)
_CLAIM = (
    update(MailMessage)
    .where(
        MailMessage.id == bindparam("message_id"),
        MailMessage.status == MessageStatus.QUEUED.value,
    )
    .values(status=MessageStatus.SENDING.value)
    .returning(MailMessage)
)
"""Mark a queued message `sending` and hand back its row: one statement, built once."""


def _suppress(session: Session, email_index: str, now: dt.datetime) -> None:
    """Put an address on the suppression list, in `session`'s transaction; an address already
    on it stays as it was. One statement, which a concurrent unsubscribe of the same address
    (another message's link, or the same link twice) cannot make fail: the second insert waits
    for the first and then does nothing."""
    row = {"email_index": email_index, "reason": "unsubscribed", "created_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(_SUPPRESSIONS).values(row).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(_SUPPRESSIONS).values(row).on_conflict_do_nothing())
    elif session.get(Suppression, email_index) is None:
        session.execute(insert(_SUPPRESSIONS).values(row))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
