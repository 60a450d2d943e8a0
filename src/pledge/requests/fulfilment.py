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
from pledge.requests.service import (
    ACTOR,
    FULFIL,
    PRIVACY_REQUESTS,
    Details,
    RequestDesk,
    RequestView,
)
from pledge.vault import IdentityKind, Source, SubjectErased, SubjectNotFound, Vault

log = logging.getLogger(__name__)

NOTIFY_RECIPIENT = "requests.notify_recipient"
WEBHOOK_TIMEOUT_SECONDS = 10
REQUEST_NOTICE = "Your privacy request asked us to {what}."
EMAIL_CATEGORY = "user.contact.email"

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

    def _read_vault(self, view: RequestView) -> tuple[list[HeldValue], set[str], bool]:
        """The subject's values (every category the privacy-requests purpose may read), the
        categories it holds values in, and whether the subject was found."""
        if view.subject_id is None:
            return [], set(), False
        try:
            data = self.vault.read(view.subject_id, PRIVACY_REQUESTS, actor=ACTOR)
            categories = set(self.vault.categories_held(view.subject_id))
        except (SubjectErased, SubjectNotFound):
            return [], set(), False
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
        return held, categories, True

    def _access(self, view: RequestView, document: PolicyDocument, version: str) -> None:
        details = self.desk.details(view.id)
        held, categories, subject_found = self._read_vault(view)
        consent: list[ConsentEntry] = []
        if subject_found and view.subject_id is not None:
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
        found_connected = self._connected_values(view, _connected_identities(details, held))
        shown = [v for v in held if _shown(document, v.category)]
        connected = [c for c in found_connected if _shown(document, c.category)]
        readable = {v.category for v in held}
        # Named, never shown: secrets (passwords, cards), and anything held that the purpose of
        # answering requests may not read; the person learns that it is held.
        withheld = sorted(
            {c for c in categories if not _shown(document, c) or c not in readable}
            | {c.category for c in found_connected if not _shown(document, c.category)}
        )
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
            held=shown,
            withheld_categories=withheld,
            connected=connected,
            consent=consent,
            requests=past,
        )
        found = subject_found or bool(found_connected)
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

    def _connected_values(
        self, view: RequestView, identities: dict[str, list[str]]
    ) -> list[ConnectedValue]:
        if self.connected is None or not identities:
            return []
        found = []
        records = self.connected.access(identities)
        for record in records:
            for column, item in record.values.items():
                found.append(
                    ConnectedValue(
                        record.dataset, record.table, record.key, column, item.category, item.value
                    )
                )
        self.desk.save_progress(
            view.id,
            {},
            audit={
                "action": "request.connected_read",
                "details": {"records": len(records), "values": len(found)},
            },
        )
        return found

    # --- correction ---------------------------------------------------------------------------

    def _correct(self, view: RequestView, document: PolicyDocument, version: str) -> None:
        details = self.desk.details(view.id)
        progress = self.desk.progress(view.id)
        changed: dict[str, int] = dict(progress.get("corrected", {}))
        source = _source_of(view.channel)
        held, _categories, found = self._read_vault(view)
        if found and view.subject_id is not None and "corrected" not in progress:
            try:
                current = self.vault.read(view.subject_id, PRIVACY_REQUESTS, actor=ACTOR).values
            except (SubjectErased, SubjectNotFound):
                current = []
            for correction in details.corrections:
                for value in current:
                    if value.category != correction.category or value.value == correction.value:
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
            self.desk.save_progress(view.id, {"corrected": changed})
        connected_changed = int(progress.get("connected_values", 0))
        unchanged_records: dict[str, str] = dict(progress.get("unchanged_records", {}))
        identities = _connected_identities(details, held)
        if self.connected is not None and identities and "connected_values" not in progress:
            for correction in details.corrections:
                if self.connected.declares(correction.category):
                    report = self.connected.correct(
                        identities, correction.category, correction.value
                    )
                    connected_changed += report.changed
                    for kept in report.unchanged_records:
                        unchanged_records[f"{kept.dataset}.{kept.table}"] = kept.reason
            self.desk.save_progress(
                view.id,
                {"connected_values": connected_changed, "unchanged_records": unchanged_records},
                audit={
                    "action": "request.connected_corrected",
                    "details": {
                        "values": connected_changed,
                        "unchanged_records": sorted(unchanged_records),
                    },
                },
            )
        names = ", ".join(document.category_name(c) for c in sorted(changed)) or "nothing"
        answer = _correction_answer(
            names if changed or connected_changed else None, unchanged_records
        )
        self.desk.complete(
            view.id,
            outcome={
                "corrected": changed,
                "connected_values": connected_changed,
                "unchanged_records": unchanged_records,
            },
            answer=answer,
        )

    # --- deletion -----------------------------------------------------------------------------

    def _delete(self, view: RequestView, document: PolicyDocument, version: str) -> None:
        """Each step is recorded before the next: a job run again after a crash goes on from
        the last step done, and neither erases, notifies nor answers twice."""
        details = self.desk.details(view.id)
        progress = self.desk.progress(view.id)
        held, categories, _found = self._read_vault(view)
        identities = _connected_identities(details, held)
        if details.email is None and identities and not details.addresses:
            self.desk.remember_addresses(view.id, identities[IdentityKind.EMAIL.value])
        if "connected" not in progress:
            step: dict[str, Any] = {"connected": {}, "retained": [], "connected_categories": []}
            if self.connected is not None and identities:
                report = self.connected.erase(identities)
                step = {
                    "connected": report.counts(),
                    "retained": [
                        {
                            "where": f"{kept.dataset}.{kept.table}",
                            "rows": kept.rows,
                            "reason": kept.reason,
                        }
                        for kept in report.retained
                    ],
                    "connected_categories": sorted(report.categories()),
                }
            self.desk.save_progress(
                view.id,
                step,
                audit={
                    "action": "request.connected_erased",
                    "details": {"tables": len(step["connected"]), "kept": len(step["retained"])},
                },
            )
            progress.update(step)
        if "recipients_notified" not in progress:
            affected = categories | set(progress.get("connected_categories", []))
            recipients = [
                key
                for key, recipient in document.recipients.items()
                if recipient.deletion_notice is not None and affected & set(recipient.categories)
            ]
            self.desk.save_progress(
                view.id,
                {"recipients_notified": recipients},
                jobs=[
                    (NOTIFY_RECIPIENT, {"request_id": view.id, "recipient": key})
                    for key in recipients
                ],
            )
            progress["recipients_notified"] = recipients
        if "vault_erased" not in progress:
            erased, kept = False, []
            if view.subject_id is not None:
                try:
                    erasure = self.vault.erase(
                        view.subject_id, actor=ACTOR, reason=f"deletion request {view.id}"
                    )
                    erased = erasure.erased
                    kept = [
                        {
                            "where": document.category_name(item.category),
                            "rows": item.values,
                            "reason": item.reason,
                            "until": item.until.date().isoformat(),
                        }
                        for item in erasure.retained
                    ]
                except SubjectNotFound:
                    erased = False
            self.desk.save_progress(view.id, {"vault_erased": erased, "vault_retained": kept})
            progress["vault_erased"] = erased
            progress["vault_retained"] = kept
        outcome = {
            "vault_erased": progress["vault_erased"],
            "connected": progress["connected"],
            "retained": [*progress.get("vault_retained", []), *progress["retained"]],
            "recipients_notified": progress["recipients_notified"],
        }
        self.desk.complete(view.id, outcome=outcome, answer=_deletion_answer(outcome, document))

    def _notify_recipient(self, payload: Mapping[str, Any]) -> None:
        request_id, key = str(payload["request_id"]), str(payload["recipient"])
        _, policy = self._policy()
        recipient = policy.document.recipients.get(key)
        if recipient is None or recipient.deletion_notice is None:
            log.warning("recipient %s has no deletion notice any more; skipped", key)
            return
        details = self.desk.details(request_id)
        addresses = [details.email] if details.email is not None else details.addresses
        if not addresses:
            log.warning("deletion request %s names no e-mail address to tell %s", request_id, key)
            return
        notice = recipient.deletion_notice
        organization = policy.document.organization.legal_name
        if notice.email is not None:
            self.desk.send_notice(
                to=str(notice.email),
                subject_line=f"Deletion request {request_id[:8]} from {organization}",
                text=(
                    f"{organization} received a verified request to delete the personal "
                    "information of the person with the e-mail address "
                    f"{' or '.join(addresses)} "
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
                "identities": {"email": addresses},
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
        with _NO_REDIRECTS.open(message, timeout=WEBHOOK_TIMEOUT_SECONDS) as answer:
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


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that answers with a redirect has not received the notice: urllib would follow
    it as a GET without the body and count the 200 at its end as delivered."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects())


def _shown(document: PolicyDocument, category: str) -> bool:
    spec = document.data_categories.get(category)
    return spec is None or spec.shown_in_access_requests


def _source_of(channel: Channel) -> Source:
    if channel is Channel.PRIVACY_CENTER:
        return Source.WEB_FORM
    if channel is Channel.API:
        return Source.API
    return Source.STAFF_ENTRY


def _connected_identities(details: Details, held: list[HeldValue]) -> dict[str, list[str]]:
    """Whom to look for in the connected databases: the address the person proved, or, for a
    request staff verified without one, the e-mail addresses of the verified subject's own
    record (or those it held when it was erased). Never a phone number or another value
    someone typed into a form: it could be another person's."""
    if details.email is not None:
        return {IdentityKind.EMAIL.value: [details.email]}
    addresses = sorted(
        {v.value for v in held if v.category == EMAIL_CATEGORY} | set(details.addresses)
    )
    return {IdentityKind.EMAIL.value: addresses} if addresses else {}


def _deletion_answer(outcome: Mapping[str, Any], document: PolicyDocument) -> str:
    erased = outcome["vault_erased"] or any(
        counts.get("rows_found") for counts in outcome["connected"].values()
    )
    if not erased:
        answer = "We found no personal information under your e-mail address to delete."
    else:
        answer = "We deleted the personal information we held about you."
        if outcome["recipients_notified"]:
            names = ", ".join(
                document.recipients[key].name for key in outcome["recipients_notified"]
            )
            answer += f" We told those who received it from us to delete it too: {names}."
    kept = [
        f"- {r['where']}: {r['reason']} ({r['rows']} records"
        + (f", kept until {r['until']})" if r.get("until") else ")")
        for r in outcome["retained"]
    ]
    if kept:
        answer += (
            "\n\nThe law requires us to keep these records; the personal details in them "
            "that the law does not require were erased:\n" + "\n".join(kept)
        )
    months = document.requests.records_kept
    return answer + (
        f"\n\nWe keep a record of this request itself, without its details, for "
        f"{months.amount} {months.unit.value}{'s' if months.amount > 1 else ''}, as the law "
        "requires."
    )


def _correction_answer(corrected: str | None, unchanged_records: dict[str, str]) -> str:
    """What a correction request is answered: what was corrected (None: nothing), and the
    records kept by law that a correction does not rewrite, with their reasons."""
    reasons = " ".join(dict.fromkeys(unchanged_records.values()))
    if corrected is not None:
        answer = f"We corrected what you asked: {corrected}."
        if unchanged_records:
            answer += (
                " Records the law requires us to keep as they were are not rewritten by a "
                f"correction: {reasons}"
            )
        return answer
    if unchanged_records:
        return (
            "We changed nothing: what you asked to correct is held only in records the law "
            f"requires us to keep as they were, which are not rewritten by a correction: {reasons}"
        )
    return (
        "We found nothing to correct: what we hold already matches what you gave us, or we hold "
        "nothing under your e-mail address."
    )
