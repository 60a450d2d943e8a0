"""What keeps privacy requests from being abused or contradicted: work started is never
denied nor started twice, staff cannot point a request at someone else, guessing is limited
per address, mailboxes are not flooded, records are kept by the calendar, recipients' webhooks
really receive their notice, and the CSV is safe to open."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
import yaml
from sqlalchemy import select

from pledge.app import Services
from pledge.jobs import JobStatus
from pledge.policy import load_policy_text, publish_policy
from pledge.policy.document import RequestKind
from pledge.requests import (
    NOTIFY_RECIPIENT,
    Agent,
    Channel,
    ExtensionRefused,
    Intake,
    IntakeRefused,
    Status,
    TransitionRefused,
)
from pledge.requests.rules import csv_cell, moment_after
from pledge.runtime import Runtime
from pledge.vault import IdentityKind, Source, SubjectErased, SubjectFrozen, Submission
from pledge.vault.tables import Subject
from tests.conftest import REFERENCE_POLICY, SmtpInbox
from tests.people import ADDRESS, PHONE, email_index, mail_to


def intake(kind: RequestKind, email: str | None = ADDRESS, **extra: Any) -> Intake:
    return Intake(kind=kind, channel=Channel.API, residence="US-CA", email=email, **extra)


def verified_deletion(services: Services) -> str:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.DELETION), actor="tests")
    desk.verify(
        request_id,
        email_index=email_index(services, ADDRESS),
        data_points={"user.contact.phone_number": PHONE},
    )
    return request_id


def test_once_the_work_started_a_request_is_neither_approved_again_nor_denied(
    services: Services, person: str
) -> None:
    desk = services.requests
    request_id = verified_deletion(services)
    desk.approve(request_id, actor="staff:grace")
    desk.extend(request_id, reason="many systems", actor="staff:grace")
    with pytest.raises(TransitionRefused, match="already started"):
        desk.approve(request_id, actor="staff:grace")
    with pytest.raises(TransitionRefused, match="cannot be denied"):
        desk.deny(request_id, reason="changed my mind", actor="staff:grace")
    services.jobs.drain()
    view = desk.get(request_id)
    assert view.status is Status.COMPLETED
    assert view.outcome is not None
    assert view.outcome["vault_erased"] is True


def test_staff_cannot_point_a_request_at_a_subject_that_does_not_hold_its_address(
    services: Services, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(
        intake(RequestKind.ACCESS, email="someone.else@example.com"), actor="tests"
    )
    with pytest.raises(IntakeRefused, match="does not hold the request's e-mail"):
        desk.staff_verify(request_id, actor="staff:grace", note="called", subject_id=person)
    posted = desk.submit(
        Intake(
            kind=RequestKind.ACCESS,
            channel=Channel.POST,
            residence="US-CA",
            email=None,
            entered_by="grace",
        ),
        actor="tests",
    )
    with pytest.raises(IntakeRefused, match="no live subject"):
        desk.staff_verify(
            posted,
            actor="staff:grace",
            note="letter",
            subject_id="00000000-0000-4000-8000-000000000000",
        )
    assert desk.get(request_id).status is Status.AWAITING_VERIFICATION


def test_wrong_guesses_are_limited_per_address_across_new_requests(
    services: Services, person: str
) -> None:
    desk = services.requests
    proven = email_index(services, ADDRESS)
    denied = 0
    for _ in range(3):
        request_id = desk.submit(intake(RequestKind.DELETION), actor="tests")
        for _ in range(2):
            result = desk.verify(
                request_id, email_index=proven, data_points={"user.name": "Not Ada"}
            )
        denied += result.status is Status.DENIED
    # Two wrong sets each on three requests: the fifth wrong set of the day ends it all.
    assert denied >= 1
    fresh = desk.submit(intake(RequestKind.DELETION), actor="tests")
    result = desk.verify(
        fresh, email_index=proven, data_points={"user.contact.phone_number": PHONE}
    )
    assert result.status is Status.DENIED, "even the right answer waits a day"


def test_an_agents_opt_out_takes_effect_and_says_how_to_undo_it(
    services: Services, inbox: SmtpInbox, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(
        intake(RequestKind.OPT_OUT_SALE_SHARING, agent=Agent("Opt-Out Co.", "POA-17")),
        actor="tests",
    )
    services.jobs.drain()
    assert desk.get(request_id).status is Status.COMPLETED
    acknowledgement = mail_to(inbox, ADDRESS)[0]
    assert "Opt-Out Co." in acknowledgement
    assert "Nothing happens unless you confirm" not in acknowledgement
    assert "undo it" in acknowledgement


def test_one_address_gets_at_most_five_acknowledgements_a_day(
    services: Services, inbox: SmtpInbox
) -> None:
    ids = [
        services.requests.submit(
            intake(RequestKind.UNSUBSCRIBE, email="flood@example.com"), actor="t"
        )
        for _ in range(7)
    ]
    services.jobs.drain()
    acknowledgements = [
        text for text in mail_to(inbox, "flood@example.com") if "We received a request" in text
    ]
    assert len(acknowledgements) == 5
    assert len(set(ids)) == 7  # every request is received all the same


def test_records_are_kept_24_calendar_months_never_a_day_less() -> None:
    closed = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)
    assert moment_after(closed, 24, "month") == dt.datetime(2029, 3, 1, 9, 0, tzinfo=dt.UTC)
    leap = dt.datetime(2028, 2, 29, 9, 0, tzinfo=dt.UTC)
    assert moment_after(leap, 12, "month") == dt.datetime(2029, 3, 1, 9, 0, tzinfo=dt.UTC)
    assert moment_after(closed, 7, "day") == closed + dt.timedelta(days=7)


def test_the_csv_counts_days_in_the_business_time_zone_and_defuses_formulas(
    services: Services, runtime: Runtime
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.ACCESS), actor="tests")
    desk.deny(request_id, reason='=HYPERLINK("http://evil.example")', actor="staff:grace")
    row = next(line for line in "".join(desk.export_csv()).splitlines() if request_id in line)
    assert "'=HYPERLINK" in row
    assert csv_cell("-2+3") == "'-2+3"
    assert csv_cell("Denied: no proof") == "Denied: no proof"


def test_a_staff_note_or_reason_holding_personal_data_is_refused_and_changes_nothing(
    services: Services, inbox: SmtpInbox
) -> None:
    # Notes and reasons are kept in clear in the request's record and the audit log.
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.ACCESS), actor="tests")
    services.jobs.drain()  # the acknowledgement
    before = desk.get(request_id)
    sent = len(inbox.messages)
    refusals = {
        "deny": {"reason": "You are not the owner of jane@example.com."},
        "extend": {"reason": "We called you at (415) 555-0132 and got no answer."},
        "acknowledge": {"note": "Letter sent to 12 Elm Street."},
        "staff_verify": {"note": "Caller gave card 4111 1111 1111 1111."},
    }
    for action, text in refusals.items():
        with pytest.raises(IntakeRefused, match="must not hold personal data"):
            getattr(desk, action)(request_id, actor="staff:grace", **text)
    services.jobs.drain()
    after = desk.get(request_id)
    assert (after.status, after.extended, after.acknowledged_at, after.denial_reason) == (
        before.status,
        before.extended,
        before.acknowledged_at,
        None,
    )
    assert len(inbox.messages) == sent
    # The business's own addresses are not the person's: quoting them is fine.
    reason = "No proof arrived. Write to info@auraphoto.com or to 11620 Wilshire Blvd., FL 9."
    denied = desk.deny(request_id, reason=reason, actor="staff:grace")
    assert denied.status is Status.DENIED
    assert denied.denial_reason == reason


class Receiver(BaseHTTPRequestHandler):
    """A recipient's webhook endpoint: records what it is sent, answers `status`."""

    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(Receiver.status)
        if Receiver.status in {301, 302, 307}:
            self.send_header("Location", "/elsewhere")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def webhook(services: Services, runtime: Runtime) -> Iterator[str]:
    """A local HTTP receiver, and a policy version in which the shipping carrier is told of
    deletions by a webhook to it."""
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/deletions"
    raw = yaml.safe_load(REFERENCE_POLICY.read_text())
    raw["version"] = "2026.11-webhook"
    raw["recipients"]["shipping_carrier"]["deletion_notice"] = {"webhook": url}
    publish_policy(
        runtime.sessions,
        load_policy_text(yaml.safe_dump(raw, sort_keys=False), "webhook.yaml"),
        published_by="tests",
    )
    Receiver.received = []
    Receiver.status = 200
    yield url
    server.shutdown()
    server.server_close()


def test_a_recipients_webhook_receives_a_signed_notice_of_the_deletion(
    services: Services, runtime: Runtime, webhook: str, person: str
) -> None:
    request_id = verified_deletion(services)
    services.requests.approve(request_id, actor="staff:grace")
    services.jobs.drain()
    ((headers, body),) = Receiver.received
    notice = json.loads(body)
    assert notice["type"] == "deletion_request"
    assert notice["request_id"] == request_id
    assert notice["identities"] == {"email": [ADDRESS]}
    key = hmac.new(
        runtime.settings.secret_key.get_secret_value().encode(),
        b"pledge deletion-notice webhooks",
        hashlib.sha256,
    ).digest()
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    assert headers["Pledge-Signature"] == f"sha256={expected}"


def test_a_webhook_that_redirects_has_not_received_the_notice(
    services: Services, webhook: str, person: str
) -> None:
    Receiver.status = 302
    request_id = verified_deletion(services)
    services.requests.approve(request_id, actor="staff:grace")
    services.jobs.drain()
    assert Receiver.received, "the webhook was called"
    notices = [job for job in services.jobs.jobs(limit=100) if job.kind == NOTIFY_RECIPIENT]
    failing = [job for job in notices if job.status in {JobStatus.RETRYING, JobStatus.FAILED}]
    assert len(failing) == 1
    assert "HTTPError" in (failing[0].last_error or "")


def test_a_deletion_keeps_the_orders_the_law_requires_and_says_so(
    services: Services, inbox: SmtpInbox
) -> None:
    (bought,) = services.vault.collect(
        [
            Submission(
                "purchase_order",
                {
                    "name": "Ada Lovelace",
                    "email": ADDRESS,
                    "shipping_address": "12 St James's Square, London",
                    "billing_address": "12 St James's Square, London",
                    "card": "4111 1111 1111 1111",
                    "order": "Aura Carver frame, 1 x 199.00",
                },
                Source.WEB_FORM,
            )
        ],
        actor="tests",
    )
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.DELETION), actor="tests")
    desk.staff_verify(request_id, actor="staff:grace", note="called back")
    desk.approve(request_id, actor="staff:grace")
    services.jobs.drain()
    view = desk.get(request_id)
    assert view.status is Status.COMPLETED
    assert view.outcome is not None
    kept = {item["where"]: item for item in view.outcome["retained"]}
    assert set(kept) == {"Orders", "Mailing address"}, kept
    assert "tax" in kept["Orders"]["reason"]
    answer = mail_to(inbox, ADDRESS)[-1]
    assert "Orders are tax records kept for seven years" in answer
    # The person is erased and cannot be found; the kept record is frozen and unfindable.
    with pytest.raises(SubjectErased):
        services.vault.read(bought.subject_id, "essential.service", actor="tests")
    assert services.vault.resolve(IdentityKind.EMAIL, ADDRESS, actor="tests") is None
    with services.vault.sessions() as session:
        record_id = session.scalar(select(Subject.id).where(Subject.kept_from == bought.subject_id))
    assert record_id is not None
    with pytest.raises(SubjectFrozen):
        services.vault.read(record_id, "essential.service.fulfillment", actor="tests")
    tax = services.vault.read(record_id, "essential.legal_obligation", actor="tests").values
    assert sorted(v.field for v in tax) == ["billing_address", "order"]
    assert "4111" not in " ".join(v.value for v in tax), "the card is not a tax record"


def test_a_request_still_waiting_for_proof_can_be_extended_and_still_be_proven(
    services: Services, person: str, inbox: SmtpInbox
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.DELETION), actor="tests")
    extended = desk.extend(request_id, reason="a backlog of requests", actor="staff:grace")
    assert extended.status is Status.AWAITING_VERIFICATION
    assert extended.extended
    assert extended.due == extended.answer_by + dt.timedelta(days=45)
    services.jobs.drain()
    assert "needs more time" in " ".join(m["Subject"] for m in inbox.messages)
    result = desk.verify(
        request_id,
        email_index=email_index(services, ADDRESS),
        data_points={"user.contact.phone_number": PHONE},
    )
    assert result.status is Status.VERIFIED
    with pytest.raises(ExtensionRefused):
        desk.extend(request_id, reason="again", actor="staff:grace")
