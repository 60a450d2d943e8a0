"""Privacy requests from intake to the answer, through the real SMTP server, on both databases."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import event

from pledge.app import Services
from pledge.consent import Method
from pledge.policy.document import RequestKind
from pledge.requests import (
    DECLARATION,
    Agent,
    Channel,
    Correction,
    ExtensionRefused,
    Intake,
    IntakeRefused,
    RequestNotFound,
    Status,
    TransitionRefused,
)
from pledge.runtime import Runtime
from pledge.vault import SubjectErased
from tests.conftest import SmtpInbox
from tests.people import (
    ADDRESS,
    NAME,
    PASSWORD,
    PHONE,
    email_index,
    mail_to,
    package_token,
)

SCHEMA = json.loads((Path(__file__).parents[3] / "docs" / "access-package.schema.json").read_text())


def intake(kind: RequestKind, email: str | None = ADDRESS, **extra: Any) -> Intake:
    return Intake(kind=kind, channel=Channel.API, residence="US-CA", email=email, **extra)


def test_an_access_request_is_acknowledged_verified_and_answered_with_a_package(
    services: Services, inbox: SmtpInbox, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.ACCESS), actor="tests")
    services.jobs.drain()

    view = desk.get(request_id)
    assert view.status is Status.AWAITING_VERIFICATION
    assert view.answer_by == view.received_on + dt.timedelta(days=44), "day 45 counts receipt"
    (acknowledgement,) = mail_to(inbox, ADDRESS)
    assert f"/privacy-center/requests/{request_id}" in acknowledgement
    assert view.answer_by.isoformat() in acknowledgement
    assert view.acknowledged_at is not None

    result = desk.verify(
        request_id,
        email_index=email_index(services, ADDRESS),
        data_points={"user.name": "ada lovelace", "user.contact.phone_number": "310-555-0100"},
        declaration_by=NAME,
    )
    assert result.status is Status.IN_PROGRESS
    services.jobs.drain()

    done = desk.get(request_id)
    assert done.status is Status.COMPLETED
    assert done.subject_id == person
    answer = mail_to(inbox, ADDRESS)[-1]
    package = json.loads(
        desk.package(
            request_id,
            token=package_token(answer),
            email_index=email_index(services, ADDRESS),
        )
    )
    jsonschema.validate(package, SCHEMA, format_checker=jsonschema.FormatChecker())
    values = {c["key"]: [v["value"] for v in c["values"]] for c in package["categories"]}
    assert values["user.name"] == [NAME, NAME]
    assert values["user.contact.phone_number"] == [PHONE]
    assert PASSWORD not in json.dumps(package), "a password is never in a package"
    assert [w["name"] for w in package["withheld_categories"]] == ["Account password"]
    email = next(c for c in package["categories"] if c["key"] == "user.contact.email")
    assert email["retention"]["period"] == "3 years"
    assert {"Example Payments, LLC"} <= {r["name"] for r in email["recipients"]}
    assert [r["id"] for r in package["requests"]] == [request_id]


def test_the_package_link_works_only_for_the_requester_and_only_until_it_expires(
    services: Services, inbox: SmtpInbox, person: str, mail_runtime: Runtime
) -> None:
    desk = services.requests
    request_id = verified_access(services)
    token = package_token(mail_to(inbox, ADDRESS)[-1])
    mine = email_index(services, ADDRESS)

    with pytest.raises(RequestNotFound):
        desk.package(request_id, token=token, email_index=email_index(services, "eve@example.com"))
    with pytest.raises(RequestNotFound):
        desk.package(request_id, token="x" * 43, email_index=mine)
    assert desk.package(request_id, token=token, email_index=mine)

    from pledge.requests.tables import PrivacyRequest  # noqa: PLC0415

    with mail_runtime.sessions() as session, session.begin():
        row = session.get(PrivacyRequest, request_id)
        assert row is not None
        row.package_expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with pytest.raises(RequestNotFound):
        desk.package(request_id, token=token, email_index=mine)
    assert not desk.get(request_id).package_ready


def verified_access(services: Services) -> str:
    request_id = services.requests.submit(intake(RequestKind.ACCESS), actor="tests")
    services.requests.verify(
        request_id,
        email_index=email_index(services, ADDRESS),
        data_points={"user.name": NAME, "user.contact.phone_number": PHONE},
        declaration_by=NAME,
    )
    services.jobs.drain()
    return request_id


def test_receiving_a_request_does_the_same_work_for_a_known_and_an_unknown_address(
    services: Services, person: str, mail_runtime: Runtime
) -> None:
    statements: list[str] = []

    def remember(*args: Any) -> None:
        statements.append(re.sub(r"sa_savepoint_\d+", "sp", re.sub(r"\s+", " ", args[2])))

    event.listen(mail_runtime.engine, "before_cursor_execute", remember)
    try:
        services.requests.submit(intake(RequestKind.DELETION), actor="tests")
        known = list(statements)
        statements.clear()
        services.requests.submit(intake(RequestKind.DELETION, "nobody@example.com"), actor="t")
        unknown = list(statements)
    finally:
        event.remove(mail_runtime.engine, "before_cursor_execute", remember)
    assert known == unknown


def test_wrong_data_points_use_up_the_attempts_and_the_request_is_denied_with_an_appeal(
    services: Services, inbox: SmtpInbox, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.DELETION), actor="tests")
    mine = email_index(services, ADDRESS)
    lefts = [
        desk.verify(request_id, email_index=mine, data_points={"user.name": "Eve"}).attempts_left
        for _ in range(3)
    ]
    assert lefts == [2, 1, 0]
    view = desk.get(request_id)
    assert view.status is Status.DENIED
    services.jobs.drain()
    denial = mail_to(inbox, ADDRESS)[-1]
    assert "could not verify your identity" in denial
    assert "disagree with this answer" in denial, "the appeal instructions go with a denial"
    assert desk.vault.read(person, "essential.service", actor="tests").values, "nothing erased"


def test_someone_else_cannot_verify_a_request_made_under_another_address(
    services: Services, person: str
) -> None:
    request_id = services.requests.submit(intake(RequestKind.DELETION), actor="tests")
    with pytest.raises(RequestNotFound):
        services.requests.verify(
            request_id,
            email_index=email_index(services, "eve@example.com"),
            data_points={"user.name": NAME},
        )


def test_the_highest_tier_needs_the_signed_declaration(services: Services, person: str) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.ACCESS), actor="tests")
    points = {"user.name": NAME, "user.contact.phone_number": PHONE}
    mine = email_index(services, ADDRESS)
    assert desk.verify(request_id, email_index=mine, data_points=points).status is (
        Status.AWAITING_VERIFICATION
    )
    assert (
        desk.verify(request_id, email_index=mine, data_points=points, declaration_by=NAME).status
        is Status.IN_PROGRESS
    )
    declaration = desk.details(request_id).declaration
    assert declaration is not None
    assert (declaration["name"], declaration["text"]) == (NAME, DECLARATION)


def test_a_deletion_waits_for_staff_then_erases_the_person_and_tells_each_recipient(
    services: Services, inbox: SmtpInbox, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.DELETION), actor="tests")
    result = desk.verify(
        request_id,
        email_index=email_index(services, ADDRESS),
        data_points={"user.contact.phone_number": PHONE},
    )
    assert result.status is Status.VERIFIED, "deletions wait for a staff member's approval"
    services.jobs.drain()
    assert services.vault.read(person, "essential.service", actor="tests").values

    desk.approve(request_id, actor="staff:grace")
    services.jobs.drain()

    assert desk.get(request_id).status is Status.COMPLETED
    with pytest.raises(SubjectErased):
        services.vault.read(person, "essential.service", actor="tests")
    notices = {m["To"]: m for m in inbox.messages if m["To"].endswith(".example.com")}
    # Ada's name, e-mail and phone went to processors; nothing of hers went to ad networks.
    assert set(notices) == {
        "privacy@hosting.example.com",
        "privacy@payments.example.com",
        "privacy@parcel.example.com",
        "privacy@maildelivery.example.com",
        "privacy@affiliates.example.com",
    }
    assert ADDRESS in str(notices["privacy@hosting.example.com"].get_body())
    answer = mail_to(inbox, ADDRESS)[-1]
    assert "We deleted the personal information" in answer
    assert desk.get(request_id).outcome == {
        "vault_erased": True,
        "connected": {},
        "retained": [],
        "recipients_notified": [
            "hosting_partner",
            "payment_processor",
            "shipping_carrier",
            "email_service",
            "affiliates",
        ],
    }


def test_a_correction_writes_a_new_version_in_the_vault(services: Services, person: str) -> None:
    desk = services.requests
    request_id = desk.submit(
        intake(RequestKind.CORRECTION, corrections=[Correction("user.name", "Ada King")]),
        actor="tests",
    )
    desk.verify(
        request_id,
        email_index=email_index(services, ADDRESS),
        data_points={"user.contact.phone_number": PHONE},
    )
    desk.approve(request_id, actor="staff:grace")
    services.jobs.drain()

    names = [
        v
        for v in services.vault.read(person, "essential.service", actor="t").values
        if v.category == "user.name"
    ]
    assert [(v.value, v.version) for v in names] == [("Ada King", 2), ("Ada King", 2)]
    assert desk.get(request_id).outcome == {
        "corrected": {"user.name": 2},
        "connected_values": 0,
        "unchanged_records": {},
    }


def test_an_opt_out_needs_no_proof_and_is_recorded_in_the_ledger(
    services: Services, inbox: SmtpInbox, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.OPT_OUT_SALE_SHARING), actor="tests")
    services.jobs.drain()

    assert desk.get(request_id).status is Status.COMPLETED
    choices = services.consent.choices(person)
    sold = ["third_party_sharing.affiliate_marketing", "marketing.advertising.third_party.targeted"]
    for purpose in sold:
        assert not choices[purpose].granted
        assert choices[purpose].method is Method.PRIVACY_REQUEST
    assert "we do not sell or share" in mail_to(inbox, ADDRESS)[-1]


def test_an_unsubscribe_request_suppresses_the_address(services: Services, person: str) -> None:
    services.requests.submit(intake(RequestKind.UNSUBSCRIBE), actor="tests")
    services.jobs.drain()
    assert services.mailer.suppressed(ADDRESS)


def test_an_agents_request_is_confirmed_by_the_person_directly(
    services: Services, inbox: SmtpInbox, person: str
) -> None:
    agent = Agent("Privacy Helpers LLC", "POA-2026-0042")
    request_id = services.requests.submit(intake(RequestKind.DELETION, agent=agent), actor="t")
    services.jobs.drain()
    view = services.requests.get(request_id)
    assert view.by_agent
    assert view.status is Status.AWAITING_VERIFICATION
    (confirmation,) = mail_to(inbox, ADDRESS)
    assert "Privacy Helpers LLC made this request for you" in confirmation
    assert "confirm it yourself" in confirmation
    assert services.requests.details(request_id).agent == agent


def test_staff_enter_a_request_received_by_post_and_verify_it(
    services: Services, person: str
) -> None:
    desk = services.requests
    letter = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    with pytest.raises(IntakeRefused, match="named staff member"):
        desk.submit(
            Intake(RequestKind.ACCESS, Channel.POST, "US-CA", None, received_at=letter), actor="t"
        )
    request_id = desk.submit(
        Intake(
            RequestKind.ACCESS, Channel.POST, "US-CA", None, entered_by="grace", received_at=letter
        ),
        actor="staff:grace",
    )
    view = desk.get(request_id)
    assert view.received_at == letter
    assert view.acknowledged_at is None, "a letter is acknowledged by post, by staff"
    desk.staff_verify(
        request_id,
        actor="staff:grace",
        note="called back; 3 data points matched",
        subject_id=person,
    )
    services.jobs.drain()
    assert desk.get(request_id).status is Status.COMPLETED
    assert desk.get(request_id).outcome["values"] == 7
    desk.acknowledge(request_id, actor="staff:grace", note="letter sent")
    assert desk.get(request_id).acknowledged_at is not None
    moves = [(m.from_status, m.to_status) for m in desk.transitions(request_id)]
    assert moves[:3] == [
        (None, Status.RECEIVED),
        (Status.RECEIVED, Status.AWAITING_VERIFICATION),
        (Status.AWAITING_VERIFICATION, Status.VERIFIED),
    ]
    found = desk.record_of(request_id)  # what a status page reads, in one snapshot
    assert found.request == desk.get(request_id)
    assert found.transitions == desk.transitions(request_id)
    assert found.today == desk.today()
    with pytest.raises(RequestNotFound):
        desk.record_of("00000000-0000-4000-8000-000000000000")


def test_an_extension_is_granted_once_with_a_notice_and_moves_the_due_date(
    services: Services, inbox: SmtpInbox, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.DELETION), actor="tests")
    desk.verify(
        request_id,
        email_index=email_index(services, ADDRESS),
        data_points={"user.name": NAME},
    )
    view = desk.extend(request_id, reason="Your orders are in an archive.", actor="staff:grace")
    assert view.status is Status.EXTENDED
    assert view.due == view.answer_by + dt.timedelta(days=45)
    services.jobs.drain()
    notice = mail_to(inbox, ADDRESS)[-1]
    assert "Your orders are in an archive." in notice
    assert view.due.isoformat() in notice
    with pytest.raises(ExtensionRefused, match="only once"):
        desk.extend(request_id, reason="Again.", actor="staff:grace")


def test_a_gdpr_request_is_due_in_one_month_and_extends_by_two(services: Services) -> None:
    desk = services.requests
    request_id = desk.submit(
        Intake(RequestKind.ACCESS, Channel.API, "FR", "claire@example.fr"), actor="tests"
    )
    view = desk.get(request_id)
    assert view.acknowledge_by is None
    assert 28 <= (view.answer_by - view.received_on).days <= 33


def test_a_closed_request_cannot_be_denied_or_extended(services: Services, person: str) -> None:
    request_id = services.requests.submit(intake(RequestKind.UNSUBSCRIBE), actor="tests")
    services.jobs.drain()
    with pytest.raises(TransitionRefused):
        services.requests.deny(request_id, reason="No.", actor="staff:grace")


def test_the_queue_is_sorted_by_due_date_and_flags_the_overdue(services: Services) -> None:
    desk = services.requests
    now = dt.datetime.now(dt.UTC)
    later = desk.submit(intake(RequestKind.ACCESS, "b@example.com"), actor="tests")
    sooner = desk.submit(
        intake(RequestKind.ACCESS, "a@example.com", received_at=now - dt.timedelta(days=20)),
        actor="tests",
    )
    assert [v.id for v in desk.queue(open_only=True)] == [sooner, later]
    due = desk.get(sooner).due
    assert not desk.get(sooner).overdue(due)
    assert desk.get(sooner).overdue(due + dt.timedelta(days=1)), "the 46th day is overdue"
    assert [v.id for v in desk.queue(overdue_on=due + dt.timedelta(days=1))] == [sooner]


def test_staff_are_reminded_of_requests_due_soon_or_overdue_once_a_day(
    services: Services, inbox: SmtpInbox
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.ACCESS), actor="tests")
    due = desk.get(request_id).due
    services.jobs.drain()
    assert desk.remind_staff(today=due - dt.timedelta(days=30)) == 0
    assert desk.remind_staff(today=due + dt.timedelta(days=1)) == 1
    assert desk.remind_staff(today=due + dt.timedelta(days=1)) == 0, "once a day"
    services.jobs.drain()
    (reminder,) = mail_to(inbox, "info@auraphoto.com")
    assert f"{request_id} access (awaiting_verification): OVERDUE" in reminder
    assert ADDRESS not in reminder, "a reminder holds no personal data"


def test_the_records_export_as_csv_without_personal_data(services: Services, person: str) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.UNSUBSCRIBE), actor="tests")
    services.jobs.drain()
    text = "".join(desk.export_csv())
    header, row = text.splitlines()[:2]
    assert header.startswith("id,kind,channel,regime,status")
    assert row.startswith(f"{request_id},unsubscribe,api,ccpa,completed,no,")
    assert row.split(",")[15] == "yes", "answered on time"
    assert ADDRESS not in text
    assert "ada" not in text.lower()


def test_after_the_retention_period_the_details_are_destroyed_and_the_record_stays(
    services: Services, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(intake(RequestKind.UNSUBSCRIBE), actor="tests")
    services.jobs.drain()
    closed = desk.get(request_id).closed_at
    assert closed is not None
    assert desk.forget_expired(closed + dt.timedelta(days=700)) == 0, "kept 24 months"
    assert desk.forget_expired(closed + dt.timedelta(days=732)) == 1
    with pytest.raises(RequestNotFound):
        desk.details(request_id)
    assert desk.get(request_id).status is Status.COMPLETED
    assert request_id in "".join(desk.export_csv())
