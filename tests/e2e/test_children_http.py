"""Children over HTTP, as a child, a parent, staff and an integrating service meet it: a child's
sign-up stopped at the screen, the parent's notice and consent, the child's own sign-up under
it, the parent's review, download and revocation in the privacy center, and the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from fastapi.testclient import TestClient

from pledge.app import Services, create_app
from pledge.policy.ages import AgeBand
from pledge.runtime import Runtime
from pledge.vault import IdentityKind, SubjectErased
from tests.conftest import SmtpInbox, api_headers
from tests.people import mail_to

PARENT = "mum@example.com"
KID = "kid@example.com"


def parent_link(inbox: SmtpInbox, services: Services) -> str:
    services.jobs.drain()
    found = re.search(
        r"https?://[^/\s]+(/parental-consent/[0-9a-f-]{36}\?token=\S+)", mail_to(inbox, PARENT)[0]
    )
    assert found
    return found[1]


def sign_in_as_parent(client: TestClient, inbox: SmtpInbox, services: Services) -> None:
    page = client.post(
        "/privacy-center/preferences/code",
        data={"email": PARENT, "next": "/privacy-center/children"},
    )
    assert "Sign in as a parent" in page.text or "Enter your code" in page.text
    challenge = re.search(r'name="challenge" value="([0-9a-f-]{36})"', page.text)
    assert challenge
    services.jobs.drain()
    code = re.search(r"Your code is (\d{6})\.", mail_to(inbox, PARENT)[-1])
    assert code
    landed = client.post(
        "/privacy-center/preferences/verify",
        data={"challenge": challenge[1], "code": code[1], "next": "/privacy-center/children"},
        follow_redirects=False,
    )
    assert landed.headers["location"] == "/privacy-center/children"


def test_a_child_signs_up_with_a_parents_consent_and_the_parent_keeps_the_last_word(
    client: TestClient, services: Services, inbox: SmtpInbox
) -> None:
    screened = client.post("/sign-up/registration/age", data={"date_of_birth": "2016-08-14"})
    assert "permission of a parent or guardian" in screened.text
    assert "pledge_age" in screened.headers["set-cookie"]
    asked = client.post("/sign-up/registration/parent", data={"parent_email": PARENT})
    assert "We have written to them" in asked.text
    assert services.vault.resolve(IdentityKind.EMAIL, PARENT, actor="tests") is None

    link = parent_link(inbox, services)
    page = client.get(link)
    assert "Nothing is collected from them until you agree" in page.text
    token = link.split("token=")[1]
    consent_id = link.split("/")[2].split("?")[0]
    both = client.post(
        f"/parental-consent/{consent_id}",
        data={"token": token, "action": "email_plus", "third_party": "yes"},
    )
    assert both.status_code == 422
    assert "third parties" in both.text
    given = client.post(
        f"/parental-consent/{consent_id}", data={"token": token, "action": "email_plus"}
    )
    assert "You gave your consent" in given.text
    finish = re.search(r'href="(/sign-up/registration\?consent=[^"]+)"', given.text)
    assert finish
    form = client.get(finish[1].replace("&amp;", "&"))
    parental = re.search(r'name="parental_pass" value="([^"]+)"', form.text)
    assert parental
    done = client.post(
        "/sign-up/registration",
        data={
            "parental_pass": parental[1],
            "consent_id": consent_id,
            "name": "Kid Example",
            "email": KID,
            "password": "pw-123456789",
            "date_of_birth": "2016-08-14",
        },
    )
    assert "You are signed up" in done.text
    child = services.vault.resolve(IdentityKind.EMAIL, KID, actor="tests")
    assert child is not None

    sign_in_as_parent(client, inbox, services)
    mine = client.get("/privacy-center/children")
    assert "consented" in mine.text
    review = client.get(f"/privacy-center/children/{consent_id}")
    assert "Kid Example" in review.text
    assert "pw-123456789" not in review.text, "a password is never shown"
    download = client.get(f"/privacy-center/children/{consent_id}?format=json")
    assert download.headers["content-type"].startswith("application/json")
    assert KID in download.text
    form_token = re.search(r'name="form_token" value="([^"]+)"', mine.text)
    assert form_token
    revoked = client.post(
        f"/privacy-center/children/{consent_id}/revoke",
        data={"form_token": form_token[1]},
        follow_redirects=False,
    )
    assert revoked.headers["location"] == "/privacy-center/children?revoked=1"
    try:
        services.vault.read(child, "essential.service", actor="tests")
        raise AssertionError("the child's data survived the revocation")
    except SubjectErased:
        pass


def test_staff_flag_a_child_through_the_api_and_list_the_consents(
    client: TestClient, services: Services, runtime: Runtime, inbox: SmtpInbox
) -> None:
    collector = api_headers(runtime, "collect")
    screened = client.post(
        "/v1/age-screen",
        json={"collection_point": "newsletter", "date_of_birth": "1999-01-01"},
        headers=collector,
    ).json()
    subject = client.post(
        "/v1/collect",
        json={
            "collection_point": "newsletter",
            "fields": {"email": "young.reader@example.com"},
            "age_pass": screened["age_pass"],
        },
        headers=collector,
    ).json()["subject_id"]
    staff = api_headers(runtime, "children:write", "children:read", "read:*")
    assert (
        client.post(
            "/v1/children/flags", json={"subject_id": subject, "reason": "x"}, headers=collector
        ).status_code
        == 403
    )
    flagged = client.post(
        "/v1/children/flags",
        json={"subject_id": subject, "reason": "age stated to support", "parent_email": PARENT},
        headers=staff,
    )
    assert flagged.status_code == 202, flagged.text
    assert flagged.json()["reason"] == "discovered"
    frozen = client.get(
        f"/v1/subjects/{subject}/data",
        params={"purpose": "marketing.communications.email"},
        headers=staff,
    )
    assert frozen.status_code == 423
    listed = client.get("/v1/parental-consents", headers=staff).json()
    assert [c["child_subject_id"] for c in listed] == [subject]
    assert PARENT not in str(listed)
    services.jobs.drain()
    assert "erase your child's account" in mail_to(inbox, PARENT)[0]
    missing = client.post(
        "/v1/children/flags",
        json={"subject_id": "00000000-0000-4000-8000-000000000000", "reason": "x"},
        headers=staff,
    )
    assert missing.status_code == 404


def test_a_payment_service_reports_a_parent_verified_by_a_card_transaction(
    client: TestClient, services: Services, runtime: Runtime, mail_runtime: Runtime
) -> None:
    consent_id, token = services.parental_consents.ask("registration", PARENT, actor="tests")
    configured = mail_runtime.settings.model_copy(
        update={"parental_payment_url": "https://pay.example.com/parents"}
    )
    shop_runtime = dataclasses.replace(mail_runtime, settings=configured)
    with TestClient(create_app(configured, shop_runtime, services)) as shop:
        page = shop.get(f"/parental-consent/{consent_id}", params={"token": token})
    assert 'action="https://pay.example.com/parents"' in page.text
    assert f'name="consent" value="{consent_id}"' in page.text
    adapter = api_headers(runtime, "children:verify")
    url = f"/v1/parental-consents/{consent_id}/verifications"
    bad = client.post(url, json={"method": "email_plus", "reference": "x"}, headers=adapter)
    assert bad.status_code == 422
    no_scope = client.post(
        url,
        json={"method": "payment_card", "reference": "ch_1"},
        headers=api_headers(runtime, "collect"),
    )
    assert no_scope.status_code == 403
    verified = client.post(
        url,
        json={"method": "payment_card", "reference": "ch_3PzX1", "third_party": True},
        headers=adapter,
    )
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert (body["status"], body["method"], body["third_party_consented"]) == (
        "consented",
        "payment_card",
        True,
    )
    assert "ch_3PzX1" in body["evidence_reference"]
    again = client.post(url, json={"method": "payment_card", "reference": "ch_2"}, headers=adapter)
    assert again.status_code == 422, "a closed consent is not verified twice"


def test_a_teen_admitted_at_the_newsletter_is_kept_as_a_teen(
    client: TestClient, services: Services, runtime: Runtime
) -> None:
    collector = api_headers(runtime, "collect")
    today = dt.datetime.now(dt.UTC).date()
    fourteen = today.replace(year=today.year - 14, day=1) - dt.timedelta(days=40)
    screened = client.post(
        "/v1/age-screen",
        json={"collection_point": "newsletter", "date_of_birth": fourteen.isoformat()},
        headers=collector,
    ).json()
    assert screened["admitted"]
    subject = client.post(
        "/v1/collect",
        json={
            "collection_point": "newsletter",
            "fields": {"email": "teen@example.com"},
            "age_pass": screened["age_pass"],
        },
        headers=collector,
    ).json()["subject_id"]
    assert services.vault.state(subject).age_band is AgeBand.TEEN
    decision = services.consent.decide(
        subject,
        "third_party_sharing.affiliate_marketing",
        ["user.contact.email"],
        actor="tests",
        recipient="affiliates",
    )
    assert not decision.allowed
    assert any("13 to 15" in r for r in decision.reasons)
    forged = screened["age_pass"].replace(".teen.", ".adult.")
    refused = client.post(
        "/v1/collect",
        json={
            "collection_point": "newsletter",
            "fields": {"email": "other.teen@example.com"},
            "age_pass": forged,
        },
        headers=collector,
    )
    assert refused.status_code == 422, "the band is signed with the pass"


def test_a_caller_cannot_claim_a_parents_consent(client: TestClient, runtime: Runtime) -> None:
    headers = api_headers(runtime, "consent:write")
    claimed = client.post(
        "/v1/subjects/00000000-0000-4000-8000-000000000000/consent",
        json={
            "purpose": "third_party_sharing.affiliate_marketing",
            "action": "grant",
            "method": "parent",
            "source": "our app",
            "notice_sha256": "a" * 64,
        },
        headers=headers,
    )
    assert claimed.status_code == 422
    assert "parental consent flow" in claimed.text


def test_a_parents_signed_form_of_several_megabytes_is_received(
    client: TestClient, services: Services
) -> None:
    consent_id, token = services.parental_consents.ask("registration", PARENT, actor="tests")
    scan = b"%PDF-1.4 " + b"0" * (3 * 1024 * 1024)
    sent = client.post(
        f"/parental-consent/{consent_id}",
        data={"token": token, "action": "signed_form"},
        files={"evidence": ("form.pdf", scan, "application/pdf")},
    )
    assert sent.status_code == 200, sent.text[:300]
    assert "our staff are checking" in sent.text


def test_a_refused_browser_cannot_post_the_form_past_the_screen(
    client: TestClient, services: Services
) -> None:
    refused = client.post("/sign-up/registration/age", data={"date_of_birth": "2016-08-14"})
    assert "pledge_age" in refused.headers["set-cookie"]
    past = client.post(
        "/sign-up/registration",
        data={
            "name": "Grown Up",
            "email": "grown@example.com",
            "password": "pw-123456789",
            "date_of_birth": "1980-01-01",
        },
    )
    assert "permission of a parent or guardian" in past.text
    assert services.vault.resolve(IdentityKind.EMAIL, "grown@example.com", actor="t") is None


def test_a_childs_date_posted_straight_to_the_form_blocks_the_browser(
    client: TestClient, services: Services
) -> None:
    child = client.post(
        "/sign-up/registration",
        data={
            "name": "Kid",
            "email": "kid.direct@example.com",
            "password": "pw-123456789",
            "date_of_birth": "2017-02-02",
        },
    )
    assert "sign you up right now" in child.text
    assert "pledge_age" in child.headers["set-cookie"]
    assert "Max-Age=" in child.headers["set-cookie"]
    assert services.vault.resolve(IdentityKind.EMAIL, "kid.direct@example.com", actor="t") is None
