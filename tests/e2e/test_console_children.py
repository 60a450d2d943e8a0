"""Staff check a parent's signed form in the console: they download it (audited), accept it,
and it is destroyed; they flag a subject found to be a child."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from pledge.app import Services
from pledge.audit import AuditEntry
from pledge.policy.document import ParentalConsentMethod
from pledge.runtime import Runtime
from pledge.staff import Role
from pledge.vault import Source, Submission
from tests.people import screened

PASSWORD = "correct horse battery"


def sign_in(client: TestClient, services: Services, role: Role) -> str:
    enrolment = services.staff.add("sam", role, PASSWORD, actor="tests")
    totp = pyotp.TOTP(enrolment.totp_secret)
    code = totp.generate_otp(totp.timecode(dt.datetime.now(dt.UTC)))
    client.post("/console/login", data={"username": "sam", "password": PASSWORD, "code": code})
    page = client.get("/console/children")
    assert page.status_code == 200, page.text
    found = re.search(r'name="form_token" value="([0-9a-f]{64})"', page.text)
    assert found
    return found[1]


def test_staff_check_a_signed_form_and_it_is_destroyed(
    client: TestClient, services: Services, runtime: Runtime
) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", "dad@example.com", actor="tests")
    consents.submit_evidence(
        consent_id,
        token,
        method=ParentalConsentMethod.SIGNED_FORM,
        content=b"%PDF-1.4 a signed form",
        media_type="application/pdf",
        third_party=False,
    )
    form_token = sign_in(client, services, Role.PRIVACY_OFFICER)
    listed = client.get("/console/children").text
    assert "in review" in listed
    assert "dad@example.com" not in listed
    evidence = client.get(f"/console/children/{consent_id}/evidence")
    assert evidence.content == b"%PDF-1.4 a signed form"
    assert evidence.headers["content-disposition"].startswith("attachment")
    accepted = client.post(
        f"/console/children/{consent_id}/review",
        data={"form_token": form_token, "decision": "accept", "reference": "form 7, signed"},
        follow_redirects=False,
    )
    assert accepted.status_code == 303
    assert consents.view(consent_id, token).status == "consented"
    assert client.get(f"/console/children/{consent_id}/evidence").status_code == 404
    with runtime.sessions() as session:
        viewed = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "parental_consent.evidence_viewed")
        ).one()
    assert viewed.actor == "staff:sam"


def test_staff_flag_a_subject_as_a_child_from_the_console(
    client: TestClient, services: Services
) -> None:
    (found,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "small@example.com"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    form_token = sign_in(client, services, Role.ADMIN)
    flagged = client.post(
        "/console/children/flag",
        data={"form_token": form_token, "subject_id": found.subject_id, "reason": "said so"},
    )
    assert flagged.status_code == 200
    assert "Frozen" in flagged.text
    assert services.vault.state(found.subject_id).frozen
