"""The privacy center's logic: prove an address with a one-time code, then see and change choices.

Asking for a code does the same work whether or not the address is known to Pledge: a
challenge row, a sealed message and a job, always. Which person the address belongs to is
looked up only once the code is proven."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import record
from pledge.consent import Action, ChoiceToRecord, ConsentLedger, Method
from pledge.keyring import Keyring
from pledge.mail import Mailer
from pledge.mail.rules import notice_sha256
from pledge.privacy_center.rules import (
    CODE_LIFETIME,
    MAX_ATTEMPTS,
    MAX_CODES_PER_HOUR,
    MAX_TRIES_PER_HOUR,
    SESSION_LIFETIME,
    ChoiceItem,
    choice_items,
    code_digest,
    codes_match,
    new_code,
    new_session_token,
    notice_text,
    session_digest,
)
from pledge.privacy_center.tables import CenterSession, EmailChallenge
from pledge.vault import IdentityKind, Vault
from pledge.vault.rules import normalize_identity

log = logging.getLogger(__name__)

SOURCE = "privacy center"


@dataclass(frozen=True)
class ShownChoice:
    """A choice as the page shows it."""

    item: ChoiceItem
    on: bool
    method: str | None
    """How the current state was expressed (None: the default, nothing recorded)."""


@dataclass(frozen=True)
class Visitor:
    """Who a valid session cookie belongs to."""

    email_index: str
    subject_id: str | None
    """None when Pledge holds nothing under this address."""


class PreferenceCenter:
    """One-time codes, sessions and choices for people who proved their e-mail address."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        keyring: Keyring,
        vault: Vault,
        ledger: ConsentLedger,
        mailer: Mailer,
        secret: bytes,
    ) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.vault = vault
        self.ledger = ledger
        self.mailer = mailer
        self.secret = secret
        mailer.jobs.every(15, "pledge.privacy_center.forget_expired", self.forget_expired)

    # --- Proving an address -------------------------------------------------------------------

    def request_code(self, email: str) -> str:
        """Send a code to `email` and return the challenge's ID; raise `IdentityInvalid` for a
        malformed address. Known or unknown address: the same work, the same answer."""
        index = self._email_index(email)
        now = _now()
        challenge_id = str(uuid.uuid4())
        code = new_code()
        with self.sessions() as session, session.begin():
            recent = session.scalar(
                select(func.count())
                .select_from(EmailChallenge)
                .where(
                    EmailChallenge.email_index == index,
                    EmailChallenge.created_at > now - dt.timedelta(hours=1),
                )
            )
            mailed = (recent or 0) < MAX_CODES_PER_HOUR
            # Over the limit the answer is the same, but no mail goes and the challenge can
            # never be proven: asking again is no way around the limit on attempts.
            digest = code_digest(self.secret, challenge_id, code) if mailed else "-" * 64
            session.add(
                EmailChallenge(
                    id=challenge_id,
                    email_index=index,
                    code_digest=digest,
                    attempts=0,
                    created_at=now,
                    expires_at=now + CODE_LIFETIME,
                    verified_at=None,
                )
            )
            job_id = None
            if mailed:
                job_id = self.mailer.queue_transactional(
                    session,
                    to=email.strip(),
                    subject_line="Your privacy center code",
                    text=(
                        f"Your code is {code}. It works for 10 minutes.\n\n"
                        "Someone (we hope you) asked to see the privacy choices held for this "
                        "address. If it was not you, ignore this message: nothing changes."
                    ),
                )
            record(session, actor="privacy center", action="center.code_requested", now=now)
        if job_id is not None:
            self.mailer.jobs.dispatch([job_id])
        return challenge_id

    def verify(self, challenge_id: str, code: str) -> str | None:
        """A new session token if `code` is the challenge's, still fresh and within its
        attempts; None otherwise. Every try counts, right or wrong."""
        now = _now()
        with self.sessions() as session, session.begin():
            challenge = session.get(EmailChallenge, challenge_id, with_for_update=True)
            if challenge is None:
                return None
            challenge.attempts += 1
            tries = session.scalar(
                select(func.coalesce(func.sum(EmailChallenge.attempts), 0)).where(
                    EmailChallenge.email_index == challenge.email_index,
                    EmailChallenge.created_at > now - dt.timedelta(hours=1),
                )
            )
            usable = (
                int(tries or 0) <= MAX_TRIES_PER_HOUR
                and challenge.verified_at is None
                and challenge.attempts <= MAX_ATTEMPTS
                and _utc(challenge.expires_at) > now
            )
            if not usable or not codes_match(
                self.secret, challenge_id, code, challenge.code_digest
            ):
                return None
            challenge.verified_at = now
            token, digest = new_session_token()
            session.add(
                CenterSession(
                    token_sha256=digest,
                    email_index=challenge.email_index,
                    created_at=now,
                    expires_at=now + SESSION_LIFETIME,
                )
            )
            record(session, actor="privacy center", action="center.signed_in", now=now)
        return token

    def visitor(self, token: str | None) -> Visitor | None:
        """Who holds this session token, or None if it is unknown or expired."""
        if not token:
            return None
        with self.sessions() as session:
            row = session.get(CenterSession, session_digest(token))
        if row is None or _utc(row.expires_at) <= _now():
            return None
        subject_id = self.vault.subject_for_digest(IdentityKind.EMAIL, row.email_index)
        return Visitor(email_index=row.email_index, subject_id=subject_id)

    def sign_out(self, token: str) -> None:
        """End the session at once."""
        with self.sessions() as session, session.begin():
            session.execute(
                delete(CenterSession).where(CenterSession.token_sha256 == session_digest(token))
            )

    def forget_expired(self, now: dt.datetime | None = None) -> int:
        """Delete challenges and sessions past their time (a sweep); how many rows went."""
        now = now or _now()
        with self.sessions() as session, session.begin():
            gone = session.execute(
                delete(EmailChallenge).where(EmailChallenge.expires_at < now)
            ).rowcount  # type: ignore[attr-defined]
            gone += session.execute(
                delete(CenterSession).where(CenterSession.expires_at < now)
            ).rowcount  # type: ignore[attr-defined]
        return int(gone)

    # --- Choices ------------------------------------------------------------------------------

    def choices(self, subject_id: str) -> list[ShownChoice]:
        """Each choice the page offers, with its current state (audited as a consent read)."""
        items = choice_items(self.ledger.policy_in_force().document)
        current, _history = self.ledger.consent_record(subject_id, actor="privacy center")
        now = _now()
        shown = []
        for item in items:
            choice = current.get(item.purpose)
            live = choice is not None and (choice.expires_at is None or choice.expires_at > now)
            on = choice.granted if live and choice is not None else item.opt_out
            method = choice.method.value if live and choice is not None else None
            shown.append(ShownChoice(item=item, on=on, method=method))
        return shown

    def save(self, subject_id: str, wanted: Mapping[str, bool]) -> int:
        """Record the choices that changed (method `preferences_page`); how many changed."""
        changes = [
            ChoiceToRecord(
                subject_id,
                shown.item.purpose,
                Action.GRANT if wanted[shown.item.purpose] else Action.WITHDRAW,
                Method.PREFERENCES_PAGE,
                SOURCE,
                notice_sha256=notice_sha256(notice_text(shown.item)),
            )
            for shown in self.choices(subject_id)
            if shown.item.purpose in wanted and wanted[shown.item.purpose] != shown.on
        ]
        self.ledger.record(changes, actor="privacy center")
        return len(changes)

    def honor_gpc(self, subject_id: str) -> bool:
        """Record the browser's Global Privacy Control signal for the person, if the policy
        honors it; whether it does."""
        if not self.ledger.gpc_is_honored():
            return False
        self.ledger.honor_gpc(subject_id, source="Sec-GPC header, privacy center", actor=SOURCE)
        return True

    def _email_index(self, email: str) -> str:
        return self.keyring.blind_index(
            IdentityKind.EMAIL.value, normalize_identity(IdentityKind.EMAIL, email)
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
