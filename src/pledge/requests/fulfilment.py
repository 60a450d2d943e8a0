"""Doing what a verified request asks: a job, so it survives a restart and retries on failure.

- access and portability: the access package (JSON, schema in docs/), sealed under the
  request's key, downloadable by the verified requester for the policy's `package_link`;
- correction: new versions in the vault, the same values written in connected databases;
- deletion: connected databases erased (records the law keeps are listed with their reason),
  recipients told by their own job (e-mail or webhook), then the vault crypto-shredded;
- opt-outs and unsubscribe: withdrawals in the consent ledger; unsubscribe also suppresses
  the address for every marketing message.

Each step is safe to run again: a job that died half-way is run again from the start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import urllib.request
from collections.abc import Mapping
from typing import Any

from pledge.consent import Action, ChoiceToRecord, ConsentLedger, Method
from pledge.datasets import ConnectedDatabases
from pledge.jobs import JobQueue
from pledge.mail import Mailer
from pledge.mail.rules import notice_sha256
from pledge.policy import current_version
from pledge.policy.document import PolicyDocument, RequestKind
from pledge.requests.package import (
    ConnectedValue,
    ConsentEntry,
    HeldValue,
    PastRequest,
    build_package,
)
from pledge.requests.rules import Channel
from pledge.requests.service import ACTOR, FULFIL, PRIVACY_REQUESTS, RequestDesk, RequestView
from pledge.vault import IdentityKind, Source, SubjectErased, SubjectNotFound, Vault

log = logging.getLogger(__name__)

NOTIFY_RECIPIENT = "requests.notify_recipient"
WEBHOOK_TIMEOUT_SECONDS = 10
REQUEST_NOTICE = "Your privacy request asked us to {what}."

_OPT_OUT_NOTICES = {
    RequestKind.OPT_OUT_SALE_SHARING: "Do not sell or share my personal information.",
    RequestKind.LIMIT_SENSITIVE: "Limit the use of my sensitive personal information.",
    RequestKind.UNSUBSCRIBE: "Send me no more marketing messages.",
}


class Fulfilment:
    """The job handlers that carry out verified requests."""

    def __init__(
        self,
        *,
        desk: RequestDesk,
        vault: Vault,
        ledger: ConsentLedger,
        mailer: Mailer,
        jobs: JobQueue,
        connected: ConnectedDatabases | None,
        webhook_secret: bytes,
    ) -> None:
        self.desk = desk
        self.vault = vault
        self.ledger = ledger
        self.mailer = mailer
        self.jobs = jobs
        self.connected = connected
        self.webhook_secret = webhook_secret
        jobs.handle(FULFIL, self._run)
        jobs.handle(NOTIFY_RECIPIENT, self._notify_recipient)

    def _run(self, payload: Mapping[str, Any]) -> None:
        self.fulfil(str(payload["request_id"]))

    def fulfil(self, request_id: str) -> None:
        """Carry out a request that is in progress (or extended after approval)."""
        view = self.desk.get(request_id)
        if view.closed_at is not None:
            return
        version, policy = self._policy()
        document = policy.document
        handlers = {
            RequestKind.ACCESS: self._access,
            RequestKind.PORTABILITY: self._access,
            RequestKind.CORRECTION: self._correct,
            RequestKind.DELETION: self._delete,
            RequestKind.OPT_OUT_SALE_SHARING: self._opt_out,
            RequestKind.LIMIT_SENSITIVE: self._opt_out,
            RequestKind.UNSUBSCRIBE: self._opt_out,
        }
        handlers[view.kind](view, document, version)

    # --- access -----------------------------------------------------------------------------

    def _access(self, view: RequestView, document: PolicyDocument, version: str) -> None:
        details = self.desk.details(view.id)
        held: list[HeldValue] = []
        withheld: list[str] = []
        consent: list[ConsentEntry] = []
        subject_found = False
        if view.subject_id is not None:
            try:
                data = self.vault.read(view.subject_id, PRIVACY_REQUESTS, actor=ACTOR)
                subject_found = True
                held = [
                    HeldValue(
                        v.category,
                        v.field,
                        v.collection_point,
                        v.value,
                        v.source,
                        v.collected_at,
                        v.version,
                    )
                    for v in data.values
                    if _shown(document, v.category)
                ]
                withheld = [
                    category
                    for category in self.vault.categories_held(view.subject_id)
                    if not _shown(document, category)
                ]
                consent = [
                    ConsentEntry(
                        e.purpose,
                        e.action.value,
                        e.method.value,
                        e.source,
                        e.policy_version,
                        e.at,
                        e.expires_at,
                    )
                    for e in self.ledger.history(view.subject_id)
                ]
            except (SubjectErased, SubjectNotFound):
                subject_found = False
        connected = [
            item
            for item in self._connected_values(details.email, held)
            if _shown(document, item.category)
        ]
        past = []
        with_index = self.desk.email_index_of(view.id)
        if with_index is not None:
            past = [
                PastRequest(r.id, r.kind.value, r.status.value, r.received_on, r.closed_at)
                for r in self.desk.requests_of(with_index)
            ]
        package = build_package(
            document=document,
            policy_version=version,
            request_id=view.id,
            kind=view.kind.value,
            received_on=view.received_on,
            created_at=dt.datetime.now(dt.UTC),
            held=held,
            withheld_categories=withheld,
            connected=connected,
            consent=consent,
            requests=past,
        )
        found = subject_found or bool(connected)
        values = sum(len(c["values"]) for c in package["categories"])
        answer = (
            f"Your copy of the personal information we hold about you is ready: {values} "
            f"values in {len(package['categories'])} categories, with where each came from, "
            "why we use it, who may receive it and how long we keep it."
            if found
            else "We looked for personal information under your e-mail address and found "
            "none. The package lists your past requests only."
        )
        self.desk.complete(
            view.id,
            outcome={
                "found": found,
                "categories": len(package["categories"]),
                "values": values,
                "withheld_categories": len(package["withheld_categories"]),
                "connected_values": len(connected),
            },
            answer=answer,
            package=json.dumps(package, ensure_ascii=False),
        )

    def _connected_values(self, email: str | None, held: list[HeldValue]) -> list[ConnectedValue]:
        if self.connected is None or email is None:
            return []
        found = []
        for record in self.connected.access(_identities(email, held)):
            for column, item in record.values.items():
                found.append(
                    ConnectedValue(
                        record.dataset, record.table, record.key, column, item.category, item.value
                    )
                )
        return found

    # --- correction ---------------------------------------------------------------------------

    def _correct(self, view: RequestView, document: PolicyDocument, version: str) -> None:
        details = self.desk.details(view.id)
        changed: dict[str, int] = {}
        connected_changed = 0
        source = _source_of(view.channel)
        held: list[HeldValue] = []
        if view.subject_id is not None:
            try:
                data = self.vault.read(view.subject_id, PRIVACY_REQUESTS, actor=ACTOR)
                held = [
                    HeldValue(
                        v.category,
                        v.field,
                        v.collection_point,
                        v.value,
                        v.source,
                        v.collected_at,
                        v.version,
                    )
                    for v in data.values
                ]
                identities = _identities(details.email, held)
                for correction in details.corrections:
                    for value in data.values:
                        if value.category != correction.category:
                            continue
                        if value.value == correction.value:
                            continue
                        self.vault.correct(
                            view.subject_id,
                            value.id,
                            correction.value,
                            actor=ACTOR,
                            source=source,
                            entered_by=view.entered_by,
                        )
                        changed[correction.category] = changed.get(correction.category, 0) + 1
                if self.connected is not None and details.email is not None:
                    for correction in details.corrections:
                        connected_changed += self.connected.correct(
                            identities, correction.category, correction.value
                        )
            except (SubjectErased, SubjectNotFound):
                pass
        names = ", ".join(document.category_name(c) for c in sorted(changed)) or "nothing"
        self.desk.complete(
            view.id,
            outcome={"corrected": changed, "connected_values": connected_changed},
            answer=(
                f"We corrected what you asked: {names}."
                if changed or connected_changed
                else "We found nothing to correct: what we hold already matches what you "
                "gave us, or we hold nothing under your e-mail address."
            ),
        )

    # --- deletion -----------------------------------------------------------------------------

    def _delete(self, view: RequestView, document: PolicyDocument, version: str) -> None:
        details = self.desk.details(view.id)
        held: list[HeldValue] = []
        categories: set[str] = set()
        if view.subject_id is not None:
            try:
                data = self.vault.read(view.subject_id, PRIVACY_REQUESTS, actor=ACTOR)
                held = [
                    HeldValue(
                        v.category,
                        v.field,
                        v.collection_point,
                        v.value,
                        v.source,
                        v.collected_at,
                        v.version,
                    )
                    for v in data.values
                ]
                categories = set(self.vault.categories_held(view.subject_id))
            except (SubjectErased, SubjectNotFound):
                pass
        outcome: dict[str, Any] = {"vault_erased": False, "connected": {}, "retained": []}
        if self.connected is not None and details.email is not None:
            report = self.connected.erase(_identities(details.email, held))
            outcome["connected"] = report.counts()
            outcome["retained"] = [
                {"where": f"{kept.dataset}.{kept.table}", "rows": kept.rows, "reason": kept.reason}
                for kept in report.retained
            ]
            categories |= report.categories()
        notified = self._queue_recipient_notices(view, document, categories)
        outcome["recipients_notified"] = notified
        if view.subject_id is not None:
            try:
                outcome["vault_erased"] = self.vault.shred(
                    view.subject_id, actor=ACTOR, reason=f"deletion request {view.id}"
                )
            except SubjectNotFound:
                outcome["vault_erased"] = False
        kept_lines = [f"- {r['reason']} ({r['rows']} records)" for r in outcome["retained"]]
        answer = (
            "We deleted the personal information we held about you, and told the companies "
            "that received it to delete it too."
            if outcome["vault_erased"] or outcome["connected"]
            else "We found no personal information under your e-mail address to delete."
        )
        if kept_lines:
            answer += (
                "\n\nThe law requires us to keep these records; the personal details in them "
                "that the law does not require were erased:\n" + "\n".join(kept_lines)
            )
        answer += (
            "\n\nWe keep a record of this request itself, without its details, for 24 months, "
            "as the law requires."
        )
        self.desk.complete(view.id, outcome=outcome, answer=answer)

    def _queue_recipient_notices(
        self, view: RequestView, document: PolicyDocument, categories: set[str]
    ) -> list[str]:
        recipients = [
            key
            for key, recipient in document.recipients.items()
            if recipient.deletion_notice is not None and categories & set(recipient.categories)
        ]
        for key in recipients:
            self.jobs.submit(NOTIFY_RECIPIENT, {"request_id": view.id, "recipient": key})
        return recipients

    def _notify_recipient(self, payload: Mapping[str, Any]) -> None:
        request_id, key = str(payload["request_id"]), str(payload["recipient"])
        _, policy = self._policy()
        recipient = policy.document.recipients.get(key)
        if recipient is None or recipient.deletion_notice is None:
            log.warning("recipient %s has no deletion notice any more; skipped", key)
            return
        details = self.desk.details(request_id)
        if details.email is None:
            return
        notice = recipient.deletion_notice
        organization = policy.document.organization.legal_name
        if notice.email is not None:
            self.desk.send_notice(
                to=str(notice.email),
                subject_line=f"Deletion request {request_id[:8]} from {organization}",
                text=(
                    f"{organization} received a verified request to delete the personal "
                    f"information of the person with the e-mail address {details.email} "
                    f"(reference {request_id}). Under our agreement, please delete the "
                    "personal information we disclosed to you about this person, and tell "
                    f"{policy.document.organization.privacy_email} when it is done."
                ),
            )
            return
        if notice.webhook is None:
            return
        body = json.dumps(
            {
                "type": "deletion_request",
                "request_id": request_id,
                "organization": organization,
                "identities": {"email": details.email},
                "sent_at": dt.datetime.now(dt.UTC).isoformat(),
            }
        ).encode()
        signature = hmac.new(self.webhook_secret, body, hashlib.sha256).hexdigest()
        # The policy accepts only http(s) webhook URLs (document.DeletionNotice).
        message = urllib.request.Request(  # noqa: S310
            notice.webhook,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Pledge-Signature": f"sha256={signature}",
            },
        )
        with urllib.request.urlopen(message, timeout=WEBHOOK_TIMEOUT_SECONDS) as answer:  # noqa: S310
            if not 200 <= answer.status < 300:
                raise RuntimeError(f"webhook answered {answer.status}")

    # --- opt-outs -----------------------------------------------------------------------------

    def _opt_out(self, view: RequestView, document: PolicyDocument, version: str) -> None:
        kind = view.kind
        purposes = [
            key
            for key, purpose in document.purposes.items()
            if (kind is RequestKind.OPT_OUT_SALE_SHARING and (purpose.sale or purpose.sharing))
            or (kind is RequestKind.LIMIT_SENSITIVE and purpose.sensitive_data)
            or (kind is RequestKind.UNSUBSCRIBE and purpose.direct_marketing.value != "none")
        ]
        withdrawn: list[str] = []
        email = self.desk.details(view.id).email
        # The law asks no proof for an opt-out: it applies to whoever the address belongs to,
        # looked up here, in the job, so that receiving it does the same work for any address.
        subject_id = view.subject_id
        if subject_id is None and email is not None:
            subject_id = self.vault.subject_for_digest(
                IdentityKind.EMAIL, self.desk.email_index_of(view.id) or ""
            )
        if subject_id is not None:
            try:
                current = self.ledger.choices(subject_id)
                to_withdraw = [p for p in purposes if p not in current or current[p].granted]
                self.ledger.record(
                    [
                        ChoiceToRecord(
                            subject_id,
                            purpose,
                            Action.WITHDRAW,
                            Method.PRIVACY_REQUEST,
                            f"privacy request {view.id}",
                            notice_sha256=notice_sha256(_OPT_OUT_NOTICES[kind]),
                        )
                        for purpose in to_withdraw
                    ],
                    actor=ACTOR,
                )
                withdrawn = to_withdraw
            except (SubjectErased, SubjectNotFound):
                withdrawn = []
        suppressed = False
        if kind is RequestKind.UNSUBSCRIBE and email is not None:
            self.mailer.suppress(email, source=f"privacy request {view.id}")
            suppressed = True
        self.desk.complete(
            view.id,
            outcome={"withdrawn": withdrawn, "suppressed": suppressed},
            answer=(
                "Done: "
                + {
                    RequestKind.OPT_OUT_SALE_SHARING: "we do not sell or share your personal "
                    "information.",
                    RequestKind.LIMIT_SENSITIVE: "we use your sensitive personal information "
                    "only to provide what you ask of us.",
                    RequestKind.UNSUBSCRIBE: "we send you no more marketing messages.",
                }[kind]
            ),
        )

    def _policy(self) -> tuple[str, Any]:
        found = current_version(self.desk.sessions)
        if found is None:
            raise RuntimeError("no policy version is in force")
        return found[0].version, found[1]


def _shown(document: PolicyDocument, category: str) -> bool:
    spec = document.data_categories.get(category)
    return spec is None or spec.shown_in_access_requests


def _identities(email: str | None, held: list[HeldValue]) -> dict[str, list[str]]:
    identities: dict[str, list[str]] = {}
    if email is not None:
        identities[IdentityKind.EMAIL.value] = [email]
    phones = [v.value for v in held if v.category == "user.contact.phone_number"]
    if phones:
        identities[IdentityKind.PHONE.value] = phones
    return identities


def _source_of(channel: Channel) -> Source:
    if channel is Channel.PRIVACY_CENTER:
        return Source.WEB_FORM
    if channel is Channel.API:
        return Source.API
    return Source.STAFF_ENTRY
