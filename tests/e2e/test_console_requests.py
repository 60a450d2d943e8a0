"""Staff work the request queue in the admin console: sign in with a password and a TOTP code,
enter a request received by post, verify and acknowledge it, approve it, and see it done."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pledge.app import Services
from pledge.audit import AuditEntry
from pledge.policy.document import RequestKind
from pledge.requests import Channel, Intake
from pledge.runtime import Runtime
from pledge.staff import Enrolment, Role
from pledge.vault import SubjectErased
from tests.people import NAME

PASSWORD = "correct horse battery"


def enrol(services: Services, username: str, role: Role) -> Enrolment:
    return services.staff.add(username, role, PASSWORD, actor="tests")


def sign_in(client: TestClient, enrolment: Enrolment, step: int = 0) -> None:
    """Sign in through the login form, as a browser would; the cookie stays in the client."""
    totp = pyotp.TOTP(enrolment.totp_secret)
    code = totp.generate_otp(totp.timecode(dt.datetime.now(dt.UTC)) + step)
    answer = client.post(
        "/console/login",
        data={"username": enrolment.member.username, "password": PASSWORD, "code": code},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert "httponly" in answer.headers["set-cookie"].lower()
    assert "samesite=strict" in answer.headers["set-cookie"].lower()


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([0-9a-f]{64})"', page)
    assert found, page
    return found[1]


def test_a_request_by_post_goes_from_entry_to_erasure_through_the_console(
    client: TestClient, services: Services, runtime: Runtime, person: str
) -> None:
    agent = enrol(services, "kim", Role.SUPPORT_AGENT)
    officer = enrol(services, "sam", Role.PRIVACY_OFFICER)

    sign_in(client, agent)
    page = client.get("/console/requests/new")
    assert page.status_code == 200
    entered = client.post(
        "/console/requests",
        data={
            "form_token": form_token(page.text),
            "kind": "deletion",
            "channel": "post",
            "residence": "us-ca",
            "received_on": dt.datetime.now(dt.UTC).date().isoformat(),
        },
        follow_redirects=False,
    )
    assert entered.status_code == 303
    request_url = entered.headers["location"]
    request_id = request_url.rsplit("/", 1)[1]
    view = services.requests.get(request_id)
    assert (view.channel, view.entered_by, view.status.value) == (
        Channel.POST,
        "kim",
        "awaiting_verification",
    )

    page = client.get(request_url)
    assert "Record as verified" in page.text
    assert "Approve" not in page.text  # a support agent decides nothing
    token = form_token(page.text)
    leaky = client.post(
        f"{request_url}/verify",
        data={"form_token": token, "note": "her letter gave kim@example.com", "subject_id": person},
    )
    assert leaky.status_code == 422
    assert "must not hold personal data" in leaky.text
    assert services.requests.get(request_id).status.value == "awaiting_verification"
    client.post(f"{request_url}/acknowledge", data={"form_token": token, "note": "letter sent"})
    verified = client.post(
        f"{request_url}/verify",
        data={"form_token": token, "note": "signed letter, ID seen", "subject_id": person},
        follow_redirects=False,
    )
    assert verified.status_code == 303
    view = services.requests.get(request_id)
    assert view.status.value == "verified"  # deletions wait for a decision
    assert view.acknowledged_at is not None
    refused = client.post(f"{request_url}/approve", data={"form_token": token})
    assert refused.status_code == 403
    assert services.requests.get(request_id).status.value == "verified"

    client.cookies.clear()
    sign_in(client, officer)
    queue = client.get("/console/requests")
    assert request_id[:8] in queue.text
    page = client.get(request_url)
    approved = client.post(
        f"{request_url}/approve",
        data={"form_token": form_token(page.text)},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    services.jobs.drain()
    view = services.requests.get(request_id)
    assert view.status.value == "completed"
    assert view.outcome is not None
    assert view.outcome["vault_erased"] is True
    with pytest.raises(SubjectErased):
        services.vault.read(person, "essential.service", actor="tests")
    done = client.get(request_url)
    assert "completed" in done.text
    assert "<td>staff:sam</td>" in done.text  # the approval, in the history


def test_showing_the_requester_is_audited_and_an_auditor_cannot(
    client: TestClient, services: Services, runtime: Runtime
) -> None:
    request_id = services.requests.submit(
        Intake(
            kind=RequestKind.ACCESS,
            channel=Channel.API,
            residence="FR",
            email="zoe@example.com",
        ),
        actor="tests",
    )
    sign_in(client, enrol(services, "kim", Role.SUPPORT_AGENT))
    page = client.get(f"/console/requests/{request_id}")
    assert "zoe@example.com" not in page.text
    shown = client.post(
        f"/console/requests/{request_id}/details", data={"form_token": form_token(page.text)}
    )
    assert shown.status_code == 200
    assert "zoe@example.com" in shown.text
    with runtime.sessions() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "request.details_viewed")
        ).one()
    assert entry.actor == "staff:kim"
    assert entry.purpose == "essential.legal_obligation.privacy_requests"
    assert "zoe" not in entry.details

    client.cookies.clear()
    sign_in(client, enrol(services, "ann", Role.AUDITOR))
    page = client.get(f"/console/requests/{request_id}")
    assert page.status_code == 200
    assert "Show the requester" not in page.text
    refused = client.post(
        f"/console/requests/{request_id}/details", data={"form_token": form_token(page.text)}
    )
    assert refused.status_code == 403
    assert "zoe@example.com" not in refused.text
    records = client.get("/console/requests/export.csv")
    assert records.status_code == 200
    assert request_id in records.text
    assert "zoe" not in records.text


def test_the_queue_shows_the_soonest_due_first_and_flags_the_overdue(
    client: TestClient, services: Services
) -> None:
    now = dt.datetime.now(dt.UTC)
    late = services.requests.submit(
        Intake(
            kind=RequestKind.ACCESS,
            channel=Channel.PHONE,
            residence="US-CA",
            email=None,
            entered_by="kim",
            received_at=now - dt.timedelta(days=29),
        ),
        actor="tests",
    )
    gdpr = services.requests.submit(
        Intake(kind=RequestKind.ACCESS, channel=Channel.API, residence="DE", email="a@b.example"),
        actor="tests",
    )
    ccpa = services.requests.submit(
        Intake(
            kind=RequestKind.ACCESS, channel=Channel.API, residence="US-NY", email="c@d.example"
        ),
        actor="tests",
    )
    sign_in(client, enrol(services, "ann", Role.AUDITOR))
    page = client.get("/console/requests").text
    order = [page.index(i[:8]) for i in (late, gdpr, ccpa)]
    assert order == sorted(order)  # due in 16 days, in about a month, in 45 days


def test_a_wrong_login_answers_the_same_whatever_was_wrong(
    client: TestClient, services: Services
) -> None:
    enrolment = enrol(services, "sam", Role.ADMIN)
    totp = pyotp.TOTP(enrolment.totp_secret)
    good = totp.now()
    answers = [
        client.post("/console/login", data=form)
        for form in (
            {"username": "sam", "password": "not the password", "code": good},
            {"username": "sam", "password": PASSWORD, "code": "12345x"},
            {"username": "nobody", "password": PASSWORD, "code": good},
        )
    ]
    assert {a.status_code for a in answers} == {401}
    assert len({a.text for a in answers}) == 1
    assert all("set-cookie" not in a.headers for a in answers)
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_staff_download_the_package_of_a_request_that_came_by_post(
    client: TestClient, services: Services, runtime: Runtime, person: str
) -> None:
    desk = services.requests
    request_id = desk.submit(
        Intake(
            kind=RequestKind.ACCESS,
            channel=Channel.POST,
            residence="US-CA",
            email=None,
            entered_by="kim",
        ),
        actor="tests",
    )
    desk.staff_verify(request_id, actor="staff:kim", note="signed letter", subject_id=person)
    services.jobs.drain()
    assert desk.get(request_id).status.value == "completed"
    sign_in(client, enrol(services, "kim", Role.SUPPORT_AGENT))
    page = client.get(f"/console/requests/{request_id}")
    assert "Download the package" in page.text
    download = client.post(
        f"/console/requests/{request_id}/package", data={"form_token": form_token(page.text)}
    )
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/json")
    assert NAME in download.text
    with runtime.sessions() as session:
        viewed = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "request.package_viewed")
        ).one()
    assert viewed.actor == "staff:kim"
