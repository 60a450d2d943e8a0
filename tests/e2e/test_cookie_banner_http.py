"""The cookie banner's routes over HTTP: what it shows, what a visitor's answer records."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pledge.app import create_app
from pledge.consent.tables import ConsentEventRow, ConsentVisitor
from pledge.runtime import Runtime
from tests.conftest import api_headers, test_settings

ADVERTISING = {
    "marketing.advertising.first_party.targeted",
    "marketing.advertising.third_party.targeted",
}
SITE = "https://shop.example.test"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime.settings, runtime)) as test_client:
        yield test_client


@pytest.fixture
def config(client: TestClient) -> dict[str, Any]:
    response = client.get("/consent/cookies/config")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def answer(config: dict[str, Any], **choices: bool) -> dict[str, Any]:
    return {
        "consent_id": None,
        "choices": {"essential": True, "analytics": True, "advertising": True, **choices},
        "gpc": False,
        "policy_version": config["policy_version"],
    }


def history(client: TestClient, runtime: Runtime, consent_id: str) -> list[dict[str, Any]]:
    headers = api_headers(runtime, "consent:read")
    response = client.get(f"/v1/subjects/{consent_id}/consent", headers=headers)
    assert response.status_code == 200
    events: list[dict[str, Any]] = response.json()["history"]
    return events


def counts(runtime: Runtime) -> tuple[int, int]:
    with runtime.sessions() as session:
        events = session.scalar(select(func.count()).select_from(ConsentEventRow))
        visitors = session.scalar(select(func.count()).select_from(ConsentVisitor))
    return events or 0, visitors or 0


def test_the_config_gives_the_categories_and_the_digest_of_the_notice_it_shows(
    config: dict[str, Any],
) -> None:
    assert config["policy_version"] == "2026.11"
    assert [c["key"] for c in config["categories"]] == ["essential", "analytics", "advertising"]
    essential, analytics, advertising = config["categories"]
    assert (essential["can_refuse"], analytics["can_refuse"]) == (False, True)
    assert (analytics["sale_or_sharing"], advertising["sale_or_sharing"]) == (False, True)
    assert analytics["cookies"] == ["_ga"]
    assert "Analytics: Count visits" in config["notice"]
    assert config["notice_sha256"] == hashlib.sha256(config["notice"].encode()).hexdigest()
    assert config["honors_gpc"] is True
    assert config["storage"] == {"cookie": "pledge_consent", "max_age_days": 395}
    assert config["privacy_policy_url"] == "https://privacy.example.test/privacy"


def test_the_script_is_served_by_pledge_itself(client: TestClient) -> None:
    response = client.get("/consent/banner.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "pledgeConsent" in response.text
    assert "https://" not in response.text.replace("https://privacy.example.com", "")


def test_an_answer_records_each_purpose_under_a_new_random_consent_id_with_the_notice_digest(
    client: TestClient, runtime: Runtime, config: dict[str, Any]
) -> None:
    response = client.post("/consent/cookies", json=answer(config, advertising=False))
    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["consent_id"]).version == 4
    assert body["choices"] == {"essential": True, "analytics": True, "advertising": False}
    assert body["gpc_honored"] is False
    events = history(client, runtime, body["consent_id"])
    assert {(e["purpose"], e["action"]) for e in events} == {
        ("analytics.reporting", "grant"),
        *((purpose, "withdraw") for purpose in ADVERTISING),
    }
    assert {e["method"] for e in events} == {"cookie_banner"}
    assert {e["source"] for e in events} == {"cookie banner"}
    assert {e["notice_sha256"] for e in events} == {
        hashlib.sha256(config["notice"].encode()).hexdigest()
    }
    assert {e["policy_version"] for e in events} == {"2026.11"}

    again = client.post(
        "/consent/cookies", json={**answer(config), "consent_id": body["consent_id"]}
    ).json()
    assert again["consent_id"] == body["consent_id"]
    unknown = str(uuid.uuid4())
    fresh = client.post("/consent/cookies", json={**answer(config), "consent_id": unknown}).json()
    assert fresh["consent_id"] not in {unknown, body["consent_id"]}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"choices": {"essential": True, "analytics": True, "advertising": True, "x": True}}, "x"),
        ({"choices": {"essential": False, "analytics": True, "advertising": True}}, "essential"),
        ({"choices": {"essential": True, "analytics": True}}, "advertising"),
        ({"choices": {"essential": True, "analytics": "yes", "advertising": True}}, "analytics"),
        ({"ip": "203.0.113.7"}, "ip"),
        ({"consent_id": "not-an-id"}, "consent_id"),
        ({"policy_version": ""}, "policy_version"),
    ],
)
def test_an_invalid_answer_is_refused_and_changes_nothing(
    client: TestClient,
    runtime: Runtime,
    config: dict[str, Any],
    change: dict[str, Any],
    where: str,
) -> None:
    before = counts(runtime)
    response = client.post("/consent/cookies", json={**answer(config), **change})
    assert response.status_code == 422
    assert where in response.json()["detail"][0]["loc"]
    assert counts(runtime) == before


def test_an_answer_to_an_older_policy_version_is_refused_so_the_banner_asks_again(
    client: TestClient, runtime: Runtime, config: dict[str, Any]
) -> None:
    before = counts(runtime)
    response = client.post("/consent/cookies", json={**answer(config), "policy_version": "2025.1"})
    assert response.status_code == 409
    assert "2026.11 is in force" in response.json()["detail"]
    assert counts(runtime) == before


@pytest.mark.parametrize("signal", ["header", "body"])
def test_global_privacy_control_refuses_advertising_whatever_the_visitor_chose(
    client: TestClient, runtime: Runtime, config: dict[str, Any], signal: str
) -> None:
    body = {**answer(config), "gpc": signal == "body"}
    headers = {"Sec-GPC": "1"} if signal == "header" else {}
    response = client.post("/consent/cookies", json=body, headers=headers).json()
    assert response["gpc_honored"] is True
    assert response["choices"] == {"essential": True, "analytics": True, "advertising": False}
    events = history(client, runtime, response["consent_id"])
    by_purpose = {e["purpose"]: e for e in events}
    for purpose in ADVERTISING:
        assert (by_purpose[purpose]["action"], by_purpose[purpose]["method"]) == (
            "withdraw",
            "gpc",
        )
        assert by_purpose[purpose]["notice_sha256"] == "0" * 64
    assert by_purpose["analytics.reporting"]["method"] == "cookie_banner"


def test_a_visitor_id_records_only_the_purposes_of_cookie_categories(
    client: TestClient, runtime: Runtime, config: dict[str, Any]
) -> None:
    consent_id = client.post("/consent/cookies", json=answer(config)).json()["consent_id"]
    headers = api_headers(runtime, "consent:write")
    choice = {
        "purpose": "marketing.communications.email",
        "action": "grant",
        "method": "form_checkbox",
        "source": "newsletter",
        "notice_sha256": "a" * 64,
    }
    url = f"/v1/subjects/{consent_id}/consent"
    refused = client.post(url, json=choice, headers=headers)
    assert refused.status_code == 422
    assert "not a purpose of a cookie category" in refused.json()["detail"][0]["msg"]
    essential = client.post(url, json={**choice, "purpose": "essential.service"}, headers=headers)
    assert essential.status_code == 422
    # Analytics rests on legitimate interest, but its cookies can be refused: a visitor may.
    analytics = {**choice, "purpose": "analytics.reporting", "action": "withdraw"}
    assert client.post(url, json=analytics, headers=headers).status_code == 201


def test_a_decision_about_a_visitor_follows_their_cookie_choice(
    client: TestClient, runtime: Runtime, config: dict[str, Any]
) -> None:
    consent_id = client.post("/consent/cookies", json=answer(config, analytics=False)).json()[
        "consent_id"
    ]
    headers = api_headers(runtime, "decide")
    ask = {
        "subject_id": consent_id,
        "purpose": "analytics.reporting",
        "categories": ["user.device.ip_address"],
    }
    decision = client.post("/v1/decisions", json=ask, headers=headers).json()
    assert decision["allowed"] is False
    (reason,) = decision["reasons"]
    assert reason.startswith("opt-out: the person opted out on ")
    assert reason.endswith(" by cookie_banner")
    other = {**ask, "purpose": "marketing.communications.email"}
    refused = client.post("/v1/decisions", json=other, headers=headers).json()
    assert refused["allowed"] is False
    assert "not a purpose of a cookie category" in refused["reasons"][0]


def test_a_returning_visitor_reads_their_choice_and_is_not_prompted_to_opt_back_in(
    client: TestClient, runtime: Runtime, config: dict[str, Any]
) -> None:
    consent_id = client.post("/consent/cookies", json=answer(config, advertising=False)).json()[
        "consent_id"
    ]
    found = client.get(f"/consent/cookies/{consent_id}").json()
    assert found["choices"] == {"essential": True, "analytics": True, "advertising": False}
    blocked = dt.datetime.fromisoformat(found["reprompt_blocked_until"]["advertising"])
    assert blocked > dt.datetime.now(dt.UTC) + dt.timedelta(days=360)
    assert client.get(f"/consent/cookies/{uuid.uuid4()}").status_code == 404

    before = counts(runtime)
    prompted = {**answer(config), "consent_id": consent_id, "prompted": True}
    assert client.post("/consent/cookies", json=prompted).status_code == 409
    assert counts(runtime) == before
    # Coming back on their own (the visitor reopened the banner), they may opt in again.
    unprompted = {**prompted, "prompted": False}
    assert client.post("/consent/cookies", json=unprompted).json()["choices"]["advertising"]


def test_only_the_configured_sites_may_call_the_banner_from_their_pages(
    runtime: Runtime,
) -> None:
    settings = test_settings(runtime.settings.database_url, banner_origins=[SITE])
    with TestClient(create_app(settings, runtime)) as client:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        allowed = client.options("/consent/cookies", headers={**preflight, "Origin": SITE})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == SITE
        assert "access-control-allow-credentials" not in allowed.headers
        other = client.options(
            "/consent/cookies", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        config = client.get("/consent/cookies/config", headers={"Origin": SITE})
        assert config.headers["access-control-allow-origin"] == SITE
        api = client.get("/v1/policy", headers={"Origin": SITE})
        assert "access-control-allow-origin" not in api.headers


def test_without_configured_sites_no_cross_origin_call_is_allowed(client: TestClient) -> None:
    response = client.get("/consent/cookies/config", headers={"Origin": SITE})
    assert "access-control-allow-origin" not in response.headers
