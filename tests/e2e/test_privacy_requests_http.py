"""Privacy requests over HTTP: the privacy-center pages a person uses, and the staff API."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import jsonschema
import pytest
from fastapi.testclient import TestClient

from pledge.app import Services
from pledge.runtime import Runtime
from pledge.vault import SubjectErased
from tests.conftest import SmtpInbox, api_headers
from tests.people import ADDRESS, NAME, PHONE, body, package_token

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "access-package.schema.json").read_text())
pytestmark = pytest.mark.usefixtures("person")


def sign_in(client: TestClient, inbox: SmtpInbox, services: Services, next_path: str) -> None:
    """Prove the address through the code the real SMTP server received; land on `next_path`."""
    page = client.post(
        "/privacy-center/preferences/code", data={"email": ADDRESS, "next": next_path}
    )
    challenge = re.search(r'name="challenge" value="([0-9a-f-]{36})"', page.text)
    assert challenge, page.text
    services.jobs.drain()
    code = re.search(r"Your code is (\d{6})\.", body(inbox.messages[-1]))
    assert code
    landed = client.post(
        "/privacy-center/preferences/verify",
        data={"challenge": challenge[1], "code": code[1], "next": next_path},
        follow_redirects=False,
    )
    assert landed.status_code == 303
    assert landed.headers["location"] == next_path


def request_link(inbox: SmtpInbox) -> str:
    for message in reversed(inbox.messages):
        found = re.search(r"https://[^/\s]+(/privacy-center/requests/[0-9a-f-]{36})", body(message))
        if found:
            return found[1]
    raise AssertionError("no request link was mailed")


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found, page
    return found[1]


def test_an_access_request_from_the_form_to_the_download(
    client: TestClient, services: Services, inbox: SmtpInbox
) -> None:
    form = client.get("/privacy-center/requests")
    assert "Make a privacy request" in form.text
    received = client.post(
        "/privacy-center/requests",
        data={"kind": "access", "email": ADDRESS, "residence": "US-CA"},
    )
    assert received.status_code == 200
    assert "Request received" in received.text
    services.jobs.drain()
    link = request_link(inbox)

    signed_out = client.get(link)
    assert "Sign in to your request" in signed_out.text
    sign_in(client, inbox, services, link)
    page = client.get(link)
    assert "Confirm who you are" in page.text
    assert "penalty of perjury" in page.text

    wrong = client.post(
        f"{link}/verify",
        data={"form_token": form_token(page.text), "point:user.name": "Eve"},
        follow_redirects=True,
    )
    assert "You have 2 tries left" in wrong.text
    confirmed = client.post(
        f"{link}/verify",
        data={
            "form_token": form_token(page.text),
            "point:user.name": NAME.upper(),
            "point:user.contact.phone_number": PHONE,
            "declare": "yes",
            "declaration_name": NAME,
        },
        follow_redirects=True,
    )
    assert "who you are is confirmed" in confirmed.text
    services.jobs.drain()

    token = package_token(body(inbox.messages[-1]))
    readable = client.get(f"{link}/package", params={"token": token})
    assert readable.status_code == 200
    assert NAME in readable.text
    assert "Account password" in readable.text
    download = client.get(f"{link}/package", params={"token": token, "format": "json"})
    assert download.headers["content-disposition"].startswith("attachment")
    jsonschema.validate(download.json(), SCHEMA, format_checker=jsonschema.FormatChecker())
    assert "Done" in client.get(link).text


def test_the_request_form_answers_the_same_for_an_unknown_address(
    client: TestClient, services: Services
) -> None:
    known = client.post(
        "/privacy-center/requests",
        data={"kind": "deletion", "email": ADDRESS, "residence": "US-CA"},
    )
    unknown = client.post(
        "/privacy-center/requests",
        data={"kind": "deletion", "email": "nobody@example.com", "residence": "US-CA"},
    )
    assert (known.status_code, known.text) == (unknown.status_code, unknown.text)


def test_a_bad_request_form_is_refused_and_changes_nothing(
    client: TestClient, services: Services
) -> None:
    for data in (
        {"kind": "access", "email": "not-an-address", "residence": "US-CA"},
        {"kind": "rob", "email": ADDRESS, "residence": "US-CA"},
        {"kind": "access", "email": ADDRESS, "residence": "Mars"},
        {"kind": "correction", "email": ADDRESS, "residence": "US-CA"},
    ):
        assert client.post("/privacy-center/requests", data=data).status_code == 422
    assert services.requests.queue() == []


def test_a_cross_site_request_form_is_refused(client: TestClient, services: Services) -> None:
    refused = client.post(
        "/privacy-center/requests",
        data={"kind": "deletion", "email": ADDRESS, "residence": "US-CA"},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert services.requests.queue() == []


def test_another_persons_request_is_not_shown(
    client: TestClient, services: Services, inbox: SmtpInbox
) -> None:
    from pledge.policy.document import RequestKind  # noqa: PLC0415
    from pledge.requests import Channel, Intake  # noqa: PLC0415

    theirs = services.requests.submit(
        Intake(RequestKind.ACCESS, Channel.API, "US-CA", "someone.else@example.com"), actor="t"
    )
    sign_in(client, inbox, services, "/privacy-center/requests")
    page = client.get(f"/privacy-center/requests/{theirs}")
    assert page.status_code == 404


def test_staff_work_a_deletion_through_the_api(
    client: TestClient, services: Services, inbox: SmtpInbox, mail_runtime: Runtime, person: str
) -> None:
    staff = api_headers(mail_runtime, "requests:read", "requests:write")
    created = client.post(
        "/v1/requests",
        json={
            "kind": "deletion",
            "email": ADDRESS,
            "residence": "US-CA",
            "channel": "phone",
            "entered_by": "grace",
        },
        headers=staff,
    )
    assert created.status_code == 202, created.text
    request_id = created.json()["id"]
    assert created.json()["status"] == "awaiting_verification"
    assert not created.json()["overdue"]

    for action, leak in (
        ("verify", {"note": "called back on (415) 555-0132"}),
        ("acknowledge", {"reason": "letter sent to 12 Elm Street"}),
        ("deny", {"reason": "ada@example.com is not hers"}),
    ):
        leaky = client.post(f"/v1/requests/{request_id}/{action}", json=leak, headers=staff)
        assert leaky.status_code == 422, (action, leaky.text)
        assert "must not hold personal data" in leaky.json()["detail"]
    assert client.get(f"/v1/requests/{request_id}", headers=staff).json()["status"] == (
        "awaiting_verification"
    )
    verified = client.post(
        f"/v1/requests/{request_id}/verify",
        json={"note": "called back on the number we hold; 2 data points matched"},
        headers=staff,
    )
    assert verified.json()["status"] == "verified"
    queue = client.get("/v1/requests", params={"open": "true"}, headers=staff).json()
    assert [r["id"] for r in queue] == [request_id]
    assert client.post(f"/v1/requests/{request_id}/approve", headers=staff).status_code == 200
    services.jobs.drain()

    shown = client.get(f"/v1/requests/{request_id}", headers=staff).json()
    assert shown["status"] == "completed"
    assert [t["to_status"] for t in shown["transitions"]] == [
        "received",
        "awaiting_verification",
        "verified",
        "in_progress",
        "completed",
    ]
    with pytest.raises(SubjectErased):
        services.vault.read(person, "essential.service", actor="tests")

    exported = client.get("/v1/requests/export.csv", headers=staff)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["id"], r["channel"], r["status"]) for r in rows] == [
        (request_id, "phone", "completed")
    ]
    assert ADDRESS not in exported.text


def test_the_api_refuses_bad_requests_with_a_clear_4xx(
    client: TestClient, services: Services, mail_runtime: Runtime
) -> None:
    staff = api_headers(mail_runtime, "requests:read", "requests:write")
    reader = api_headers(mail_runtime, "requests:read")
    good = {"kind": "access", "email": ADDRESS, "residence": "US-CA"}
    assert client.post("/v1/requests", json=good, headers=reader).status_code == 403
    assert client.post("/v1/requests", json={**good, "kind": "x"}, headers=staff).status_code == 422
    phone = {**good, "channel": "phone"}
    refused = client.post("/v1/requests", json=phone, headers=staff)
    assert refused.status_code == 422
    assert "named staff member" in refused.json()["detail"]
    nul = {**good, "agent": {"name": "A\x00", "document_reference": "x"}}
    assert client.post("/v1/requests", json=nul, headers=staff).status_code == 422
    naive = {**good, "received_at": "2026-11-30T10:00:00"}  # no time zone: which day was it?
    assert client.post("/v1/requests", json=naive, headers=staff).status_code == 422
    posing = {**good, "channel": "privacy_center"}
    assert client.post("/v1/requests", json=posing, headers=staff).status_code == 422
    secret = {
        **good,
        "kind": "correction",
        "corrections": [{"category": "user.authorization.password", "value": "x"}],
    }
    assert client.post("/v1/requests", json=secret, headers=staff).status_code == 422
    assert client.get("/v1/requests", headers=staff).json() == []
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.post(f"/v1/requests/{missing}/approve", headers=staff).status_code == 404
    created = client.post("/v1/requests", json=good, headers=staff).json()
    early = client.post(f"/v1/requests/{created['id']}/approve", headers=staff)
    assert early.status_code == 409
    assert "cannot become in_progress" in early.json()["detail"]
