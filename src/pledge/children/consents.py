"""Parents' consents: asked for when a child signs up or is found among the subjects, given by
a method the policy accepts, recorded in the consent ledger, and forgotten, or the child's data
erased, when no consent comes within the policy's window.

- A child signing up: only the parent's e-mail is kept (sealed) and the parent gets a direct
  notice with a link; once the parent consents, the child finishes signing up with a parental
  pass, and the account's consent goes into the ledger (method `parent`).
- A child found later: frozen at once (no reads but for what the law requires, no marketing,
  no disclosure), then erased when the window ends unless a parent consented.
- Disclosure to third parties is a separate consent, off unless the parent gives it; "e-mail
  plus" is refused when it is asked for.
- A parent who proves their address in the privacy center sees, exports and deletes the
  child's data and can revoke the consent (which erases it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import record
from pledge.children.rules import method_problem
from pledge.children.tables import ParentalConsent
from pledge.consent import Action, ChoiceToRecord, ConsentLedger, Method
from pledge.datasets import ConnectedDatabases
from pledge.jobs import JobQueue
from pledge.keyring import Keyring
from pledge.mail import Mailer
from pledge.mail.rules import notice_sha256
from pledge.policy import current_version
from pledge.policy.document import ParentalConsentMethod, PolicyDocument
from pledge.requests import PRIVACY_REQUESTS
from pledge.vault import IdentityKind, SubjectErased, SubjectNotFound, Vault
from pledge.vault.rules import normalize_identity
from pledge.vault.sealing import seal, unseal

log = logging.getLogger(__name__)

ACTOR = "pledge children"
CHILD_ACCOUNT = "essential.service.child_account"
"""The purpose a parent's consent to a child's account is recorded under in the ledger."""
EVIDENCE_MAX_BYTES = 5 * 1024 * 1024
EVIDENCE_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png"})
OPEN = ("pending", "in_review")
ASKS_PER_DAY = 3
"""Requests for consent one parent's address gets in a day: the form cannot flood a mailbox."""
VERIFIED_ELSEWHERE = frozenset(
    {ParentalConsentMethod.PAYMENT_CARD, ParentalConsentMethod.KNOWLEDGE_BASED}
)
"""Methods an adapter carries out (a payment service, an identity service) and reports."""


class ConsentNotFound(LookupError):
    """No consent has this ID and token (or it is closed)."""


class TooManyAsks(ValueError):
    """This parent was asked too often today: nothing more is sent to them."""


class ConsentRefusedHere(ValueError):
    """The method cannot stand for what is asked, or the consent is not in a state to change."""


@dataclass(frozen=True)
class ConsentView:
    """A parental consent as the parent's page and staff see it (never the parent's address)."""

    id: str
    reason: str
    collection_point: str
    status: str
    child_subject_id: str | None
    third_party_asked: bool
    third_party_consented: bool
    method: str | None
    evidence_reference: str | None
    evidence_waiting: bool
    created_at: dt.datetime
    expires_at: dt.datetime
    decided_at: dt.datetime | None


class ParentalConsents:
    """Asking parents, recording their answer, and what follows from it."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        keyring: Keyring,
        vault: Vault,
        ledger: ConsentLedger,
        mailer: Mailer,
        jobs: JobQueue,
        connected: ConnectedDatabases | None,
        public_url: str,
    ) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.vault = vault
        self.ledger = ledger
        self.mailer = mailer
        self.jobs = jobs
        self.connected = connected
        self.public_url = public_url.rstrip("/")
        jobs.every(60, "pledge.children.close_expired", self.close_expired)

    # --- Asking -------------------------------------------------------------------------------

    def ask(
        self,
        collection_point: str,
        parent_email: str,
        *,
        third_party: bool = False,
        actor: str,
        child_subject_id: str | None = None,
    ) -> tuple[str, str]:
        """Ask a parent for consent: keep their address (only), mail them a direct notice with
        a link. Returns the consent's ID and the link's token. Raises `IdentityInvalid`."""
        document = self._policy()
        normalized = normalize_identity(IdentityKind.EMAIL, parent_email)
        parent_index = self.keyring.blind_index(IdentityKind.EMAIL.value, normalized)
        consent_id = str(uuid.uuid4())
        token = secrets.token_urlsafe(32)
        now = _now()
        window = document.children.parental_consent_window
        with self.sessions() as session:
            asked_today = session.scalar(
                select(func.count())
                .select_from(ParentalConsent)
                .where(
                    ParentalConsent.parent_index == parent_index,
                    ParentalConsent.created_at > now - dt.timedelta(days=1),
                )
            )
        if (asked_today or 0) >= ASKS_PER_DAY:
            raise TooManyAsks(consent_id)
        key = self.keyring.create_data_key(consent_id)
        with self.sessions() as session, session.begin():
            row = ParentalConsent(
                id=consent_id,
                reason="discovered" if child_subject_id else "sign_up",
                collection_point=collection_point,
                status="pending",
                parent_sealed=seal(key, parent_email.strip(), _aad(consent_id, "parent")),
                parent_index=parent_index,
                token_sha256=_sha256(token),
                child_subject_id=child_subject_id,
                third_party_asked=third_party,
                third_party_consented=False,
                method=None,
                evidence_reference=None,
                evidence_sealed=None,
                evidence_key_id=None,
                evidence_type=None,
                created_at=now,
                expires_at=now + dt.timedelta(days=window.approximate_days()),
                decided_at=None,
                decided_by=None,
            )
            session.add(row)
            record(
                session,
                actor=actor,
                action="parental_consent.asked",
                subject_id=child_subject_id,
                details={"consent": consent_id, "reason": row.reason, "point": collection_point},
            )
            job_id = self.mailer.queue_transactional(
                session,
                to=parent_email.strip(),
                subject_line=f"Your permission is needed: {document.organization.legal_name}",
                text=self._notice(document, row, token),
            )
        self.jobs.dispatch([job_id])
        return consent_id, token

    def _notice(self, document: PolicyDocument, row: ParentalConsent, token: str) -> str:
        """The direct notice to the parent (16 CFR 312.4(c)): what is collected and why, that
        nothing goes to third parties without a separate consent, how to consent, and that
        the address is deleted if no consent comes."""
        point = document.collection_points.get(row.collection_point)
        fields = (
            ", ".join(document.category_name(spec.category) for spec in point.fields.values())
            if point
            else "the information the form asks for"
        )
        purposes = sorted(
            {
                document.purpose_name(p)
                for spec in (point.fields.values() if point else ())
                for p in spec.purposes
            }
        )
        window = document.children.parental_consent_window
        organization = document.organization
        opening = (
            "Your child wants to sign up"
            if row.reason == "sign_up"
            else "We have learned that a child under 13 uses an account"
        )
        return "\n\n".join(
            [
                (
                    f"{opening} at {organization.trade_name or organization.legal_name}. The law "
                    "asks for your consent first, and we have kept nothing about your child."
                ),
                f"What we would collect: {fields}.",
                f"Why: {'; '.join(purposes) or 'to run the service you ask for'}.",
                (
                    "We disclose a child's information to third parties only if you also agree to "
                    "that, separately; it is off unless you turn it on."
                ),
                f"To give or refuse your consent, open this link:\n\n{self.link(row.id, token)}",
                f"If you do nothing, we delete your address within {window.amount} "
                f"{window.unit.value}{'s' if window.amount > 1 else ''}"
                + (" and erase your child's account." if row.reason == "discovered" else "."),
                (
                    f"Questions: {organization.privacy_email}, or write to "
                    f"{organization.legal_name}, {organization.postal_address.street}, "
                    f"{organization.postal_address.city}, {organization.postal_address.region} "
                    f"{organization.postal_address.postal_code}."
                ),
            ]
        )

    def link(self, consent_id: str, token: str) -> str:
        """The parent's page for one consent."""
        return f"{self.public_url}/parental-consent/{consent_id}?token={token}"

    # --- The parent's answer --------------------------------------------------------------------

    def view(self, consent_id: str, token: str) -> ConsentView:
        """The consent behind a parent's link; raise `ConsentNotFound`."""
        with self.sessions() as session:
            return _view(self._by_token(session, consent_id, token))

    def consent_by_email_plus(
        self, consent_id: str, token: str, *, third_party: bool
    ) -> ConsentView:
        """The parent consents from the link mailed to them, and a confirmation follows by
        e-mail with how to revoke ("e-mail plus", 16 CFR 312.5(b)(2)(vi)); refused when
        disclosure to third parties is asked for."""
        document = self._policy()
        problem = method_problem(
            ParentalConsentMethod.EMAIL_PLUS, document.children, third_party_disclosure=third_party
        )
        if problem is not None:
            raise ConsentRefusedHere(problem.reason)
        with self.sessions() as session, session.begin():
            row = self._by_token(session, consent_id, token, lock=True)
            self._open(row)
            row.third_party_asked = third_party
            parent = self._parent(row)
            job_ids = self._consented(
                session,
                row,
                document,
                method=ParentalConsentMethod.EMAIL_PLUS,
                reference="consent given from the link mailed to the parent; confirmed by e-mail",
                actor="parent",
                third_party=False,
            )
            job_ids.append(
                self.mailer.queue_transactional(
                    session,
                    to=parent,
                    subject_line="You gave your consent",
                    text=(
                        "You consented to your child's account. If that was not you, or you "
                        "change your mind, revoke it here and we erase your child's "
                        f"information:\n\n{self.link(row.id, token)}"
                    ),
                )
            )
        self.jobs.dispatch(job_ids)
        self.after_consent(consent_id)
        return self.view(consent_id, token)

    def verified_elsewhere(
        self,
        consent_id: str,
        *,
        method: ParentalConsentMethod,
        reference: str,
        third_party: bool,
        actor: str,
    ) -> ConsentView:
        """An adapter (the business's payment service for a card transaction, an identity
        service for knowledge-based questions) reports that it verified the parent: the consent
        is recorded with the adapter's reference (a transaction's ID, never a card number)."""
        if method not in {
            ParentalConsentMethod.PAYMENT_CARD,
            ParentalConsentMethod.KNOWLEDGE_BASED,
        }:
            raise ConsentRefusedHere(
                "only a card payment or knowledge-based questions are verified elsewhere"
            )
        if not reference.strip():
            raise ConsentRefusedHere("give the adapter's reference of the verification")
        document = self._policy()
        problem = method_problem(method, document.children, third_party_disclosure=third_party)
        if problem is not None:
            raise ConsentRefusedHere(problem.reason)
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id, with_for_update=True)
            if row is None or row.parent_sealed is None:
                raise ConsentNotFound(consent_id)
            self._open(row)
            row.third_party_asked = third_party
            self._consented(
                session,
                row,
                document,
                method=method,
                reference=f"verified by {actor}: {reference.strip()[:200]}",
                actor=actor,
                third_party=third_party,
            )
            job_id = self.mailer.queue_transactional(
                session,
                to=self._parent(row),
                subject_line="You gave your consent",
                text=(
                    "Your consent to your child's account is recorded. Open the link in our "
                    "first message again"
                    + (" to let your child finish signing up" if row.reason == "sign_up" else "")
                    + "; it also lets you revoke your consent at any time."
                ),
            )
        self.jobs.dispatch([job_id])
        self.after_consent(consent_id)
        return self._view_of(consent_id)

    def submit_evidence(
        self,
        consent_id: str,
        token: str,
        *,
        method: ParentalConsentMethod,
        content: bytes,
        media_type: str,
        third_party: bool,
    ) -> ConsentView:
        """A parent sends a signed consent form or a picture of an ID, for staff to check; it is
        sealed under a key of its own, destroyed once checked."""
        document = self._policy()
        if method not in {ParentalConsentMethod.SIGNED_FORM, ParentalConsentMethod.GOVERNMENT_ID}:
            raise ConsentRefusedHere("only a signed form or an ID is sent this way")
        problem = method_problem(method, document.children, third_party_disclosure=third_party)
        if problem is not None:
            raise ConsentRefusedHere(problem.reason)
        if not content or len(content) > EVIDENCE_MAX_BYTES:
            raise ConsentRefusedHere("send one file of at most 5 MB")
        if media_type not in EVIDENCE_TYPES:
            raise ConsentRefusedHere("send a PDF, JPEG or PNG file")
        with self.sessions() as session:
            self._open(self._by_token(session, consent_id, token))
        evidence_key_id = str(uuid.uuid4())
        key = self.keyring.create_data_key(evidence_key_id)
        with self.sessions() as session, session.begin():
            row = self._by_token(session, consent_id, token, lock=True)
            self._open(row)
            row.status = "in_review"
            row.method = method.value
            row.third_party_asked = third_party
            row.evidence_key_id = evidence_key_id
            row.evidence_type = media_type
            row.evidence_sealed = _seal_bytes(key, content, _aad(row.id, "evidence"))
            record(
                session,
                actor="parent",
                action="parental_consent.evidence_sent",
                subject_id=row.child_subject_id,
                details={"consent": row.id, "method": method.value, "bytes": len(content)},
            )
        return self.view(consent_id, token)

    def evidence(self, consent_id: str, *, actor: str) -> tuple[bytes, str]:
        """The evidence waiting for review, for the staff member checking it; audited."""
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id)
            if row is None or row.evidence_sealed is None or row.evidence_key_id is None:
                raise ConsentNotFound(consent_id)
            record(
                session,
                actor=actor,
                action="parental_consent.evidence_viewed",
                subject_id=row.child_subject_id,
                details={"consent": row.id},
            )
            key = self.keyring.data_key(row.evidence_key_id)
            content = _unseal_bytes(key, row.evidence_sealed, _aad(row.id, "evidence"))
            return content, row.evidence_type or "application/octet-stream"

    def review(self, consent_id: str, *, approve: bool, reference: str, actor: str) -> ConsentView:
        """Staff checked the evidence: consent is recorded, or refused and the parent told. Either
        way the evidence (an ID's image above all) is destroyed now."""
        document = self._policy()
        if not reference.strip():
            raise ConsentRefusedHere("say what was checked (never the ID's number)")
        reference = self._staff_text(reference, "The reference")
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id, with_for_update=True)
            if row is None or row.status != "in_review" or row.method is None:
                raise ConsentNotFound(consent_id)
            evidence_key = row.evidence_key_id
            row.evidence_sealed = None
            row.evidence_key_id = None
            row.evidence_type = None
            reference_text = f"{row.method} checked by {actor} on {_now():%Y-%m-%d}: {reference}"
            if approve:
                job_ids = self._consented(
                    session,
                    row,
                    document,
                    method=ParentalConsentMethod(row.method),
                    reference=reference_text,
                    actor=actor,
                    third_party=row.third_party_asked,
                )
                job_ids.append(
                    self.mailer.queue_transactional(
                        session,
                        to=self._parent(row),
                        subject_line="Your consent is accepted",
                        text=(
                            "We checked and accepted your consent. Open the link in our first "
                            "message again"
                            + (
                                " to let your child finish signing up"
                                if row.reason == "sign_up"
                                else ""
                            )
                            + "; it also lets you revoke your consent at any time."
                        ),
                    )
                )
            else:
                # The parent may try again, by any method, until the window ends.
                row.status = "pending"
                row.method = None
                row.evidence_reference = reference_text
                record(
                    session,
                    actor=actor,
                    action="parental_consent.refused",
                    subject_id=row.child_subject_id,
                    details={"consent": row.id},
                )
                job_ids = [
                    self.mailer.queue_transactional(
                        session,
                        to=self._parent(row),
                        subject_line="We could not accept your consent",
                        text=(
                            "We could not verify the consent you sent. You can try again, by any "
                            "method, from the link in our first message until "
                            f"{_utc(row.expires_at):%Y-%m-%d}, or write to "
                            f"{document.organization.privacy_email}."
                        ),
                    )
                ]
        if evidence_key is not None:
            self.keyring.destroy_data_key(evidence_key)
        self.jobs.dispatch(job_ids)
        self.after_consent(consent_id)
        return self._view_of(consent_id)

    def _consented(
        self,
        session: Session,
        row: ParentalConsent,
        document: PolicyDocument,
        *,
        method: ParentalConsentMethod,
        reference: str,
        actor: str,
        third_party: bool,
    ) -> list[str]:
        row.status = "consented"
        row.method = method.value
        row.evidence_reference = reference
        row.third_party_consented = third_party
        row.decided_at = _now()
        row.decided_by = actor
        record(
            session,
            actor=actor,
            action="parental_consent.given",
            subject_id=row.child_subject_id,
            details={"consent": row.id, "method": method.value, "third_party": third_party},
        )
        return []

    def after_consent(self, consent_id: str) -> None:
        """For a child found earlier, once a parent consented: unfreeze the subject and record
        the consent in the ledger."""
        view = self._view_of(consent_id)
        if view.status == "consented" and view.reason == "discovered" and view.child_subject_id:
            self.vault.thaw(view.child_subject_id, actor=ACTOR, parental_consent_id=consent_id)
            self._record_in_ledger(view.child_subject_id, view)

    def _record_in_ledger(self, subject_id: str, view: ConsentView) -> None:
        document = self._policy()
        source = f"parental consent {view.id} ({view.method}: {view.evidence_reference})"[:300]
        purposes = [CHILD_ACCOUNT] if CHILD_ACCOUNT in document.purposes else []
        if view.third_party_consented:
            purposes += [k for k, p in document.purposes.items() if p.sale or p.sharing]
        self.ledger.record(
            [
                ChoiceToRecord(
                    subject_id,
                    purpose,
                    Action.GRANT,
                    Method.PARENT,
                    source,
                    notice_sha256=notice_sha256(f"parental consent {view.id}"),
                )
                for purpose in purposes
            ],
            actor=ACTOR,
        )

    # --- The child's account ------------------------------------------------------------------

    def child_link(self, consent_id: str, parent_token: str) -> str:
        """The link that lets the child finish signing up, for the parent to hand over once they
        consented. It carries a token of its own (a new one each time: earlier links stop
        working), so the child never holds the parent's link, which can revoke."""
        view = self.view(consent_id, parent_token)
        if view.status != "consented" or view.reason != "sign_up" or view.child_subject_id:
            raise ConsentRefusedHere("this consent does not open an account now")
        child_token = secrets.token_urlsafe(32)
        with self.sessions() as session, session.begin():
            row = self._by_token(session, consent_id, parent_token, lock=True)
            row.child_token_sha256 = _sha256(child_token)
        return f"/sign-up/{view.collection_point}?consent={consent_id}&child={child_token}"

    def account_pass(self, consent_id: str, child_token: str) -> str:
        """The parental pass a child's sign-up carries, from the link the parent handed over."""
        with self.sessions() as session:
            row = session.get(ParentalConsent, consent_id)
            valid = (
                row is not None
                and row.child_token_sha256 is not None
                and hmac.compare_digest(row.child_token_sha256, _sha256(child_token))
            )
            if not valid or row is None:
                raise ConsentNotFound(consent_id)
            view = _view(row)
        if view.status != "consented" or view.reason != "sign_up" or view.child_subject_id:
            raise ConsentRefusedHere("this consent does not open an account now")
        return self.vault.parental_pass(consent_id, view.collection_point)

    def account_opened(self, consent_id: str, subject_id: str) -> None:
        """Link the child's new subject (which the vault opened under this consent's pass) to
        the consent, and record the consent in the ledger. If the consent was revoked (or used)
        meanwhile, the new subject is erased at once and `ConsentNotFound` raised."""
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id, with_for_update=True)
            usable = (
                row is not None
                and row.status == "consented"
                and row.reason == "sign_up"
                and row.child_subject_id is None
            )
            if usable and row is not None:
                row.child_subject_id = subject_id
        if not usable:
            self.erase_child(subject_id, reason=f"opened under an unusable consent {consent_id}")
            raise ConsentNotFound(consent_id)
        self._record_in_ledger(subject_id, self._view_of(consent_id))

    # --- A child found later ------------------------------------------------------------------

    def flag_child(
        self, subject_id: str, *, actor: str, reason: str, parent_email: str | None = None
    ) -> str:
        """A subject turns out to be a child: frozen at once, erased when the window ends
        unless a parent consents. With the parent's address, the parent is asked (without it,
        erasure follows at the window's end). Returns the consent's ID."""
        if parent_email is not None:
            normalize_identity(IdentityKind.EMAIL, parent_email)  # refused before anything
        reason = self._staff_text(reason, "The reason")
        self.vault.state(subject_id)  # raises for an unknown or erased subject
        self.vault.freeze(subject_id, actor=actor, reason=reason)
        self._supersede_open(subject_id, actor=actor)
        document = self._policy()
        if parent_email is not None:
            consent_id, _ = self.ask(
                "discovered", parent_email, actor=actor, child_subject_id=subject_id
            )
            return consent_id
        now = _now()
        window = document.children.parental_consent_window
        consent_id = str(uuid.uuid4())
        with self.sessions() as session, session.begin():
            session.add(
                ParentalConsent(
                    id=consent_id,
                    reason="discovered",
                    collection_point="discovered",
                    status="pending",
                    parent_sealed=None,
                    parent_index=None,
                    token_sha256=None,
                    child_subject_id=subject_id,
                    third_party_asked=False,
                    third_party_consented=False,
                    created_at=now,
                    expires_at=now + dt.timedelta(days=window.approximate_days()),
                )
            )
            record(
                session,
                actor=actor,
                action="parental_consent.asked",
                subject_id=subject_id,
                details={"consent": consent_id, "reason": "discovered", "parent_known": False},
            )
        return consent_id

    def _supersede_open(self, subject_id: str, *, actor: str) -> None:
        """A child flagged again: the consents still open for them give way to the new one."""
        with self.sessions() as session, session.begin():
            rows = session.scalars(
                select(ParentalConsent).where(
                    ParentalConsent.child_subject_id == subject_id,
                    ParentalConsent.status == "pending",
                )
            ).all()
            for row in rows:
                row.status = "superseded"
                row.decided_at = _now()
                row.decided_by = actor
        for row in rows:
            self._forget_contact(row.id, row.evidence_key_id)

    def close_expired(self, now: dt.datetime | None = None) -> int:
        """The window chore: consents not given in time are closed; the parent's address (and
        any evidence) destroyed with their keys, and a child found earlier erased. How many."""
        now = now or _now()
        with self.sessions() as session:
            # Evidence waiting for staff holds the window open: the parent did their part.
            due = session.scalars(
                select(ParentalConsent.id).where(
                    ParentalConsent.status == "pending", ParentalConsent.expires_at <= now
                )
            ).all()
        for consent_id in due:
            self._expire(consent_id)
        self._finish_erasures()
        return len(due)

    def _finish_erasures(self) -> None:
        """Erase the children of closed consents whose erasure did not finish (a crash, a
        connected database out of reach): the chore runs again until it does."""
        with self.sessions() as session:
            rows = session.execute(
                select(ParentalConsent.id, ParentalConsent.child_subject_id).where(
                    ParentalConsent.status.in_(("expired", "revoked")),
                    ParentalConsent.child_subject_id.is_not(None),
                    ParentalConsent.child_erased.is_(False),
                )
            ).all()
        for consent_id, child in rows:
            if child is not None:
                self._erase_for(consent_id, child)

    def _erase_for(self, consent_id: str, child: str) -> None:
        """Erase a consent's child unless another consent for them stands; mark it done."""
        with self.sessions() as session:
            standing = session.scalar(
                select(ParentalConsent.id).where(
                    ParentalConsent.child_subject_id == child,
                    ParentalConsent.status == "consented",
                )
            )
        if standing is None:
            self.erase_child(child, reason=f"no parental consent ({consent_id})")
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id, with_for_update=True)
            if row is not None:
                row.child_erased = True

    def _expire(self, consent_id: str) -> None:
        job_ids: list[str] = []
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id, with_for_update=True)
            if row is None or row.status != "pending":
                return
            child = row.child_subject_id if row.reason == "discovered" else None
            evidence_key = row.evidence_key_id
            if row.parent_sealed is not None:
                job_ids.append(
                    self.mailer.queue_transactional(
                        session,
                        to=self._parent(row),
                        subject_line="We did not receive your consent",
                        text=(
                            "We did not receive your consent in time, so we deleted your "
                            "address" + (" and erased your child's account." if child else ".")
                        ),
                    )
                )
            row.status = "expired"
            row.decided_at = _now()
            row.decided_by = ACTOR
            record(
                session,
                actor=ACTOR,
                action="parental_consent.expired",
                subject_id=child,
                details={"consent": row.id, "child_erased": child is not None},
            )
        self.jobs.dispatch(job_ids)
        # The message holds the address under a key of its own: this consent's goes now.
        self._forget_contact(consent_id, evidence_key)
        if child is not None:
            self._erase_for(consent_id, child)

    def _forget_contact(self, consent_id: str, evidence_key: str | None) -> None:
        """Destroy the parent's address, the link and any evidence, with their keys."""
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id, with_for_update=True)
            if row is not None:
                row.parent_sealed = None
                row.token_sha256 = None
                row.child_token_sha256 = None
                row.evidence_sealed = None
                row.evidence_key_id = None
                row.evidence_type = None
                if row.status in {"expired", "superseded"}:
                    row.parent_index = None
        self.keyring.destroy_data_keys([k for k in (consent_id, evidence_key) if k])

    def _staff_text(self, text: str, what: str) -> str:
        """`text` a staff member wrote, stripped; refused (`ConsentRefusedHere`) when it holds an
        e-mail address, a phone number, a card number or a street address other than the
        business's own: it is kept in clear in the audit log, which holds no personal values."""
        text = text.strip()
        allowed = self._policy().organization.contact_details()
        found = self.vault.scanner.personal_data_in(text, allowed=allowed)
        if found:
            raise ConsentRefusedHere(
                f"{what} is kept in clear in the audit log, so it must not hold personal data; "
                f"it holds {' and '.join(found)}. Say what was done, not the values."
            )
        return text

    def erase_child(self, subject_id: str, *, reason: str) -> None:
        """Erase a child's data: the connected databases (by the addresses the subject held),
        then the vault (crypto-shredding). The audit log keeps the events, never the data."""
        addresses: list[str] = []
        try:
            data = self.vault.read(subject_id, PRIVACY_REQUESTS, actor=ACTOR)
            addresses = sorted({v.value for v in data.values if v.category == "user.contact.email"})
        except (SubjectErased, SubjectNotFound):
            return
        if self.connected is not None and addresses:
            self.connected.erase({IdentityKind.EMAIL.value: addresses})
        self.vault.erase(subject_id, actor=ACTOR, reason=reason)

    # --- Parents' rights ----------------------------------------------------------------------

    def of_parent(self, parent_index: str) -> list[ConsentView]:
        """The consents a parent gave or was asked for (by their proven address)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(ParentalConsent)
                .where(ParentalConsent.parent_index == parent_index)
                .order_by(ParentalConsent.created_at.desc())
            ).all()
            return [_view(row) for row in rows]

    def revoke(self, consent_id: str, *, parent_index: str) -> None:
        """A parent withdraws consent: the child's data is erased and the consent closed."""
        with self.sessions() as session, session.begin():
            row = session.get(ParentalConsent, consent_id, with_for_update=True)
            if row is None or row.parent_index != parent_index:
                raise ConsentNotFound(consent_id)
            child = row.child_subject_id
            evidence_key = row.evidence_key_id
            row.status = "revoked"
            row.decided_at = _now()
            row.decided_by = "parent"
            record(
                session,
                actor="parent",
                action="parental_consent.revoked",
                subject_id=child,
                details={"consent": row.id},
            )
        self._forget_contact(consent_id, evidence_key)
        if child is not None:
            self._erase_for(consent_id, child)

    def revoke_by_token(self, consent_id: str, token: str) -> None:
        """A parent withdraws consent from the link mailed to them."""
        with self.sessions() as session:
            row = self._by_token(session, consent_id, token)
            parent_index = row.parent_index
        if parent_index is None:
            raise ConsentNotFound(consent_id)
        self.revoke(consent_id, parent_index=parent_index)

    def child_of(self, consent_id: str, *, parent_index: str) -> str:
        """The child's subject under a parent's consent, for that parent only."""
        with self.sessions() as session:
            row = session.get(ParentalConsent, consent_id)
            if row is None or row.parent_index != parent_index or row.child_subject_id is None:
                raise ConsentNotFound(consent_id)
            return row.child_subject_id

    # --- Reading for staff --------------------------------------------------------------------

    def waiting(self) -> list[ConsentView]:
        """Open consents, in review first, then by the end of their window."""
        with self.sessions() as session:
            rows = session.scalars(
                select(ParentalConsent)
                .where(
                    or_(
                        ParentalConsent.status.in_(OPEN),
                        ParentalConsent.child_subject_id.is_not(None),
                    )
                )
                .order_by(
                    case((ParentalConsent.status == "in_review", 0), else_=1),
                    ParentalConsent.expires_at,
                )
                .limit(500)
            ).all()
            return [_view(row) for row in rows]

    # --- Shared -------------------------------------------------------------------------------

    def view_for_staff(self, consent_id: str) -> ConsentView:
        """A consent as staff see it (never the parent's address); raise `ConsentNotFound`."""
        return self._view_of(consent_id)

    def _view_of(self, consent_id: str) -> ConsentView:
        with self.sessions() as session:
            row = session.get(ParentalConsent, consent_id)
            if row is None:
                raise ConsentNotFound(consent_id)
            return _view(row)

    def _by_token(
        self, session: Session, consent_id: str, token: str, *, lock: bool = False
    ) -> ParentalConsent:
        row = session.get(ParentalConsent, consent_id, with_for_update=lock)
        if (
            row is None
            or row.token_sha256 is None
            or not hmac.compare_digest(row.token_sha256, _sha256(token))
        ):
            raise ConsentNotFound(consent_id)
        return row

    def _open(self, row: ParentalConsent) -> None:
        if row.status != "pending" or _utc(row.expires_at) <= _now():
            raise ConsentRefusedHere("this consent is no longer open")

    def _parent(self, row: ParentalConsent) -> str:
        if row.parent_sealed is None:
            raise ConsentNotFound(row.id)
        return unseal(self.keyring.data_key(row.id), row.parent_sealed, _aad(row.id, "parent"))

    def _policy(self) -> PolicyDocument:
        found = current_version(self.sessions)
        if found is None:
            raise ConsentRefusedHere("no policy version is in force")
        return found[1].document


def _view(row: ParentalConsent) -> ConsentView:
    return ConsentView(
        id=row.id,
        reason=row.reason,
        collection_point=row.collection_point,
        status=row.status,
        child_subject_id=row.child_subject_id,
        third_party_asked=row.third_party_asked,
        third_party_consented=row.third_party_consented,
        method=row.method,
        evidence_reference=row.evidence_reference,
        evidence_waiting=row.evidence_sealed is not None,
        created_at=_utc(row.created_at),
        expires_at=_utc(row.expires_at),
        decided_at=None if row.decided_at is None else _utc(row.decided_at),
    )


def _seal_bytes(key: bytes, content: bytes, aad: bytes) -> bytes:
    # The sealing functions take text: the file travels as hex, sealed like any value.
    return seal(key, content.hex(), aad)


def _unseal_bytes(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return bytes.fromhex(unseal(key, sealed, aad))


def _aad(consent_id: str, part: str) -> bytes:
    return f"parental-consent:{consent_id}:{part}".encode()


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


__all__: Sequence[str] = [
    "CHILD_ACCOUNT",
    "ConsentNotFound",
    "ConsentRefusedHere",
    "ConsentView",
    "ParentalConsents",
]
