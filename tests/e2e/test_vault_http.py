"""The vault over HTTP, as an integrating service uses it: keys, scopes, bad input, erasure."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pledge.app import create_app
from pledge.audit import AuditEntry
from pledge.runtime import Runtime
from pledge.vault.tables import PersonalValue, Subject
from tests.conftest import api_headers

NEWSLETTER = {
    "collection_point": "newsletter",
    "fields": {"email": "reader@example.com", "name": "Ada Reader"},
    "source": "web_form",
}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime.settings, runtime)) as test_client:
        yield test_client


@pytest.fixture
def collector(runtime: Runtime) -> dict[str, str]:
    return api_headers(runtime, "collect")


@pytest.fixture(autouse=True)
def screened(client: TestClient, collector: dict[str, str]) -> Iterator[None]:
    """The newsletter screens ages: its sign-ups carry the pass the age screen gives."""
    answer = client.post(
        "/v1/age-screen",
        json={"collection_point": "newsletter", "date_of_birth": "1990-04-01"},
        headers=collector,
    )
    assert answer.status_code == 200, answer.text
    NEWSLETTER["age_pass"] = answer.json()["age_pass"]
    yield
    del NEWSLETTER["age_pass"]


def stored(runtime: Runtime) -> tuple[int, int]:
    with runtime.sessions() as session:
        subjects = session.scalar(select(func.count()).select_from(Subject)) or 0
        values = session.scalar(select(func.count()).select_from(PersonalValue)) or 0
    return subjects, values


def test_collect_then_read_for_a_purpose(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    created = client.post("/v1/collect", json=NEWSLETTER, headers=collector)
    assert created.status_code == 201, created.text
    subject_id = created.json()["subject_id"]
    reader = api_headers(runtime, "read:marketing.communications.email")
    data = client.get(
        f"/v1/subjects/{subject_id}/data",
        params={"purpose": "marketing.communications.email"},
        headers=reader,
    )
    assert data.status_code == 200, data.text
    values = {v["field"]: v["value"] for v in data.json()["values"]}
    assert values == {"email": "reader@example.com", "name": "Ada Reader"}


def test_calls_without_a_valid_key_or_scope_are_refused_and_store_nothing(
    client: TestClient, runtime: Runtime
) -> None:
    assert client.post("/v1/collect", json=NEWSLETTER).status_code == 401
    bogus = {"Authorization": "Bearer pledge_aaaaaaaaaaaa_" + "b" * 43}
    assert client.post("/v1/collect", json=NEWSLETTER, headers=bogus).status_code == 401
    reader = api_headers(runtime, "read:*")
    refused = client.post("/v1/collect", json=NEWSLETTER, headers=reader)
    assert refused.status_code == 403
    assert "collect" in refused.json()["detail"]
    assert stored(runtime) == (0, 0)


def test_a_read_needs_the_scope_of_its_own_purpose(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    subject_id = client.post("/v1/collect", json=NEWSLETTER, headers=collector).json()["subject_id"]
    reader = api_headers(runtime, "read:essential.service.fulfillment")
    response = client.get(
        f"/v1/subjects/{subject_id}/data",
        params={"purpose": "marketing.communications.email"},
        headers=reader,
    )
    assert response.status_code == 403
    assert "read:marketing.communications.email" in response.json()["detail"]


def test_an_unknown_purpose_is_a_422_naming_it(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    subject_id = client.post("/v1/collect", json=NEWSLETTER, headers=collector).json()["subject_id"]
    response = client.get(
        f"/v1/subjects/{subject_id}/data",
        params={"purpose": "gossip"},
        headers=api_headers(runtime, "read:*"),
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "purpose"]


BAD_BODIES: list[tuple[str, Any, list[Any]]] = [
    (
        "unknown collection point",
        {**NEWSLETTER, "collection_point": "lottery"},
        ["body", "collection_point"],
    ),
    (
        "unknown field",
        {**NEWSLETTER, "fields": {"email": "a@example.com", "shoe": "44"}},
        ["body", "fields", "shoe"],
    ),
    (
        "missing required field",
        {**NEWSLETTER, "fields": {"name": "Ada"}},
        ["body", "fields", "email"],
    ),
    (
        "a number where text is expected",
        {**NEWSLETTER, "fields": {"email": 42}},
        ["body", "fields", "email"],
    ),
    ("an unknown key", {**NEWSLETTER, "priority": "high"}, ["body", "priority"]),
    (
        "an oversized value",
        {**NEWSLETTER, "fields": {"email": "a@example.com", "name": "x" * 10_001}},
        ["body", "fields", "name"],
    ),
    (
        "a bad subject id",
        {**NEWSLETTER, "subject_id": "1; DROP TABLE subjects"},
        ["body", "subject_id"],
    ),
    (
        "a staff entry without its staff member",
        {**NEWSLETTER, "source": "staff_entry"},
        ["body", "entered_by"],
    ),
]


@pytest.mark.parametrize(
    ("body", "loc"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_input_is_a_422_naming_the_place_and_stores_nothing(
    client: TestClient, runtime: Runtime, collector: dict[str, str], body: Any, loc: list[Any]
) -> None:
    response = client.post("/v1/collect", json=body, headers=collector)
    assert response.status_code == 422, response.text
    assert loc in [d["loc"][: len(loc)] for d in response.json()["detail"]]
    assert stored(runtime) == (0, 0)


def test_malformed_json_is_a_422(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    response = client.post(
        "/v1/collect",
        content=b'{"collection_point": "newsletter", "fields": {',
        headers={**collector, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert stored(runtime) == (0, 0)


def test_a_body_over_the_limit_is_a_413(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    huge = {
        "items": [{**NEWSLETTER, "fields": {"email": "a@example.com", "name": "x" * 9_000}}] * 300
    }
    response = client.post("/v1/collect/batch", json=huge, headers=collector)
    assert response.status_code == 413
    assert stored(runtime) == (0, 0)


def test_injection_strings_are_stored_and_returned_inert(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    hostile = {
        "name": "Robert'); DROP TABLE subjects;-- <script>alert(1)</script> {{7*7}} ${jndi:ldap://x}",
        "email": "bobby.tables@example.com",
    }
    created = client.post("/v1/collect", json={**NEWSLETTER, "fields": hostile}, headers=collector)
    assert created.status_code == 201
    subject_id = created.json()["subject_id"]
    data = client.get(
        f"/v1/subjects/{subject_id}/data",
        params={"purpose": "marketing.communications.email"},
        headers=api_headers(runtime, "read:*"),
    )
    assert {v["field"]: v["value"] for v in data.json()["values"]} == hostile
    assert stored(runtime) == (1, 2)


def test_a_batch_is_stored_whole_or_not_at_all(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    items = [{**NEWSLETTER, "fields": {"email": f"r{i}@example.com"}} for i in range(10)]
    items[7] = {**NEWSLETTER, "fields": {"email": "r7@example.com", "age": "9"}}
    refused = client.post("/v1/collect/batch", json={"items": items}, headers=collector)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "items", 7, "fields", "age"]
    assert stored(runtime) == (0, 0)
    items[7] = {**NEWSLETTER, "fields": {"email": "r7@example.com"}}
    accepted = client.post("/v1/collect/batch", json={"items": items}, headers=collector)
    assert accepted.status_code == 201
    assert len({r["subject_id"] for r in accepted.json()["results"]}) == 10


def test_correct_resolve_and_erase(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    staff = api_headers(runtime, "correct", "resolve", "shred", "read:*")
    subject_id = client.post("/v1/collect", json=NEWSLETTER, headers=collector).json()["subject_id"]
    found = client.post(
        "/v1/subjects/resolve", json={"kind": "email", "value": "READER@example.com"}, headers=staff
    )
    assert found.json() == {"subject_id": subject_id}
    params = {"purpose": "marketing.communications.email"}
    values = client.get(f"/v1/subjects/{subject_id}/data", params=params, headers=staff).json()[
        "values"
    ]
    name_id = next(v["id"] for v in values if v["field"] == "name")
    corrected = client.post(
        f"/v1/subjects/{subject_id}/values/{name_id}/corrections",
        json={"value": "Ada Lovelace"},
        headers=staff,
    )
    assert corrected.status_code == 201
    history = client.get(
        f"/v1/subjects/{subject_id}/values/{corrected.json()['value_id']}/history",
        params=params,
        headers=staff,
    )
    assert [v["value"] for v in history.json()["versions"]] == ["Ada Reader", "Ada Lovelace"]
    again = client.post(
        f"/v1/subjects/{subject_id}/values/{name_id}/corrections",
        json={"value": "Ada B."},
        headers=staff,
    )
    assert again.status_code == 404  # the old version is no longer the current one
    erased = client.delete(
        f"/v1/subjects/{subject_id}", params={"reason": "deletion request"}, headers=staff
    )
    assert erased.json() == {"subject_id": subject_id, "erased": True, "already_erased": False}
    assert (
        client.get(f"/v1/subjects/{subject_id}/data", params=params, headers=staff).status_code
        == 410
    )
    gone = client.post(
        "/v1/subjects/resolve", json={"kind": "email", "value": "reader@example.com"}, headers=staff
    )
    assert gone.status_code == 404


def test_a_sign_up_without_the_age_screen_is_refused_and_stores_nothing(
    client: TestClient, runtime: Runtime, collector: dict[str, str]
) -> None:
    unscreened = {k: v for k, v in NEWSLETTER.items() if k != "age_pass"}
    refused = client.post("/v1/collect", json=unscreened, headers=collector)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "age_pass"]
    forged = client.post(
        "/v1/collect", json={**unscreened, "age_pass": "9999999999.abc"}, headers=collector
    )
    assert forged.status_code == 422
    other_point = client.post(
        "/v1/age-screen",
        json={"collection_point": "promotion", "date_of_birth": "1990-04-01"},
        headers=collector,
    ).json()["age_pass"]
    misused = client.post(
        "/v1/collect", json={**unscreened, "age_pass": other_point}, headers=collector
    )
    assert misused.status_code == 422, "a pass is good for its own collection point only"
    assert stored(runtime) == (0, 0)


def test_a_childs_registration_is_refused_and_nothing_of_it_is_kept(
    client: TestClient,
    runtime: Runtime,
    collector: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with runtime.sessions() as session:
        audited = session.scalar(select(func.count()).select_from(AuditEntry))
    child = {
        "collection_point": "registration",
        "fields": {
            "name": "Kid Tester",
            "email": "kid@example.com",
            "password": "pw-123456789",
            "date_of_birth": "2016-05-04",
        },
        "source": "web_form",
    }
    refused = client.post("/v1/collect", json=child, headers=collector)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["type"] == "age_screen"
    assert "2016" not in refused.text
    assert stored(runtime) == (0, 0)
    screened = client.post(
        "/v1/age-screen",
        json={"collection_point": "registration", "date_of_birth": "2016-05-04"},
        headers=collector,
    ).json()
    assert (screened["admitted"], screened["age_pass"]) == (False, None)
    assert screened["retry_token"]
    assert "2016-05-04" not in caplog.text, "no log line holds what was typed"
    assert "kid@example.com" not in caplog.text
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == audited
    adult = {**child, "fields": {**child["fields"], "date_of_birth": "1990-05-04"}}
    assert client.post("/v1/collect", json=adult, headers=collector).status_code == 201
