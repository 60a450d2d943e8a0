"""Consent over HTTP, and the Global Privacy Control round trip."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from pledge.app import create_app
from pledge.runtime import Runtime
from tests.conftest import api_headers

SHARING = "marketing.advertising.third_party.targeted"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime.settings, runtime)) as test_client:
        yield test_client


@pytest.fixture
def subject(client: TestClient, runtime: Runtime) -> str:
    headers = api_headers(runtime, "collect")
    screened = client.post(
        "/v1/age-screen",
        json={"collection_point": "newsletter", "date_of_birth": "04/01/1990"},
        headers=headers,
    ).json()
    body = {
        "collection_point": "newsletter",
        "fields": {"email": "gpc@example.com"},
        "source": "web_form",
        "age_pass": screened["age_pass"],
    }
    response = client.post("/v1/collect", json=body, headers=headers)
    subject_id: str = response.json()["subject_id"]
    return subject_id


def test_a_request_carrying_gpc_records_the_opt_out_and_later_decisions_keep_it(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    headers = api_headers(runtime, "decide", "consent:read")
    ask = {"subject_id": subject, "purpose": SHARING, "categories": ["user.device.cookie_id"]}
    assert client.post("/v1/decisions", json=ask, headers=headers).json()["allowed"] is True
    with_gpc = client.post("/v1/decisions", json=ask, headers={**headers, "Sec-GPC": "1"}).json()
    assert with_gpc["allowed"] is False
    assert with_gpc["gpc_honored"] is True
    later = client.post("/v1/decisions", json=ask, headers=headers).json()
    assert later["allowed"] is False
    assert any(reason.startswith("opt-out: the person opted out") for reason in later["reasons"])
    history = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    assert {(e["purpose"], e["action"], e["method"]) for e in history} >= {
        (SHARING, "withdraw", "gpc")
    }


def test_recording_a_choice_validates_its_proof_and_purpose(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    headers = api_headers(runtime, "consent:write")
    good = {
        "purpose": "marketing.communications.email",
        "action": "grant",
        "method": "double_opt_in",
        "source": "newsletter",
        "notice_sha256": "d" * 64,
    }
    assert (
        client.post(f"/v1/subjects/{subject}/consent", json=good, headers=headers).status_code
        == 201
    )
    assert (
        client.post(
            f"/v1/subjects/{subject}/consent",
            json={**good, "notice_sha256": "nope"},
            headers=headers,
        ).status_code
        == 422
    )
    assert (
        client.post(
            f"/v1/subjects/{subject}/consent", json={**good, "ip": "203.0.113.1"}, headers=headers
        ).status_code
        == 422
    )
    contract = {**good, "purpose": "essential.service.fulfillment"}
    refused = client.post(f"/v1/subjects/{subject}/consent", json=contract, headers=headers)
    assert refused.status_code == 422
    assert "asks for no consent" in refused.json()["detail"][0]["msg"]


def test_an_audience_by_email_streams_back_who_may_be_mailed(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    writer = api_headers(runtime, "consent:write", "decide")
    grant = {
        "purpose": "marketing.communications.email",
        "action": "grant",
        "method": "double_opt_in",
        "source": "newsletter",
        "notice_sha256": "e" * 64,
    }
    assert (
        client.post(f"/v1/subjects/{subject}/consent", json=grant, headers=writer).status_code
        == 201
    )
    body = "nobody@example.com\nGPC@example.com\nnot-an-address\n"
    response = client.post(
        "/v1/audiences",
        params={
            "purpose": "marketing.communications.email",
            "categories": "user.contact.email",
            "identify_by": "email",
        },
        content=body,
        headers={**writer, "content-type": "text/plain"},
    )
    assert response.status_code == 200
    assert response.text == "GPC@example.com\n"


def test_an_audience_for_an_unknown_purpose_is_refused(
    client: TestClient, runtime: Runtime
) -> None:
    response = client.post(
        "/v1/audiences",
        params={"purpose": "gossip", "categories": "user.contact.email"},
        content="x\n",
        headers=api_headers(runtime, "decide"),
    )
    assert response.status_code == 422


def test_the_site_says_it_honors_gpc(client: TestClient) -> None:
    assert client.get("/.well-known/gpc.json").json() == {"gpc": True, "lastUpdate": "2026-11-01"}


@pytest.mark.parametrize(
    "source",
    ["news\x00letter", "newsletter\n", "x" * 201, ""],
    ids=["nul", "control character", "over long", "empty"],
)
def test_a_choice_whose_source_no_column_could_hold_is_refused_before_it_reaches_a_batch(
    client: TestClient, runtime: Runtime, subject: str, source: str
) -> None:
    headers = api_headers(runtime, "consent:write", "consent:read")
    body = {
        "purpose": "marketing.communications.email",
        "action": "grant",
        "method": "double_opt_in",
        "source": source,
        "notice_sha256": "d" * 64,
    }
    ledger = client.app.state.consent  # type: ignore[attr-defined]
    batches: list[int] = []
    run = ledger._writer.run_batch
    ledger._writer.run_batch = lambda batch: batches.append(len(batch)) or run(batch)
    answer = client.post(f"/v1/subjects/{subject}/consent", json=body, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "source"]
    assert batches == []  # refused by the route: no batch ever saw it
    history = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    assert history == []


# --- Batches ---------------------------------------------------------------------------------

EMAIL = "marketing.communications.email"


def _choice(subject: str, **changes: object) -> dict[str, object]:
    return {
        "subject_id": subject,
        "purpose": EMAIL,
        "action": "grant",
        "method": "double_opt_in",
        "source": "import from the old newsletter tool",
        "notice_sha256": "d" * 64,
        **changes,
    }


def _decide(subject: str, purpose: str = EMAIL) -> dict[str, object]:
    return {"subject_id": subject, "purpose": purpose, "categories": ["user.contact.email"]}


def test_a_batch_of_choices_is_recorded_in_order_and_decisions_follow_it(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    headers = api_headers(runtime, "consent:write", "consent:read", "decide")
    batch = [_choice(subject), _choice(subject, purpose=SHARING, action="withdraw")]

    recorded = client.post("/v1/consent/batch", json={"items": batch}, headers=headers)

    assert recorded.status_code == 201
    seqs = recorded.json()["seqs"]
    assert len(seqs) == 2
    assert seqs[1] == seqs[0] + 1
    history = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    assert [(e["seq"], e["purpose"], e["action"]) for e in history[-2:]] == [
        (seqs[0], EMAIL, "grant"),
        (seqs[1], SHARING, "withdraw"),
    ]
    stranger = "00000000-0000-4000-8000-000000000000"
    answers = client.post(
        "/v1/decisions/batch",
        json={"items": [_decide(subject), _decide(stranger), _decide(subject, SHARING)]},
        headers=headers,
    )
    assert answers.status_code == 200
    decisions = answers.json()["decisions"]
    assert [d["allowed"] for d in decisions] == [True, False, False]
    assert decisions[1]["reasons"] == ["no such subject"]
    assert any(r.startswith("opt-out: the person opted out") for r in decisions[2]["reasons"])


def test_a_batch_with_one_refused_choice_records_none_and_says_which(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    headers = api_headers(runtime, "consent:write", "consent:read")
    before = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    contract = _choice(subject, purpose="essential.service.fulfillment")
    stranger = _choice("00000000-0000-4000-8000-000000000000")

    refused = client.post(
        "/v1/consent/batch", json={"items": [_choice(subject), contract]}, headers=headers
    )
    missing = client.post(
        "/v1/consent/batch", json={"items": [_choice(subject), stranger]}, headers=headers
    )
    too_many = client.post(
        "/v1/consent/batch", json={"items": [_choice(subject)] * 1001}, headers=headers
    )
    empty = client.post("/v1/consent/batch", json={"items": []}, headers=headers)

    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "items", 1, "purpose"]
    assert "asks for no consent" in problem["msg"]
    assert missing.status_code == 404
    assert missing.json()["detail"][0]["loc"] == ["body", "items", 1]
    assert (too_many.status_code, empty.status_code) == (422, 422)
    after = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    assert after == before


def test_a_batch_body_that_fails_its_checks_is_answered_as_a_declared_body_and_changes_nothing(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    """The batch endpoints validate their JSON straight from the bytes: the answers to bad
    input must stay those of any other endpoint (422, located under "body"), and a caller
    without a key learns nothing about the body."""
    headers = api_headers(runtime, "consent:write", "consent:read", "decide")
    before = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    bad_id = {**_decide(subject), "subject_id": "not-a-uuid"}
    extra = {**_choice(subject), "note": "unexpected"}

    broken = client.post(
        "/v1/decisions/batch",
        content=b'{"items": [',
        headers={**headers, "Content-Type": "application/json"},
    )
    third = client.post(
        "/v1/decisions/batch",
        json={"items": [_decide(subject), _decide(subject), bad_id]},
        headers=headers,
    )
    unexpected = client.post(
        "/v1/consent/batch", json={"items": [_choice(subject), extra]}, headers=headers
    )
    keyless = client.post("/v1/consent/batch", content=b"{", headers={})
    not_text = client.post(
        "/v1/decisions/batch",
        content=b'{"items": [{"subject_id": "\xff"}]}',
        headers={**headers, "Content-Type": "application/json"},
    )
    as_text = client.post(
        "/v1/consent/batch",
        content=json.dumps({"items": [_choice(subject)]}),
        headers={**headers, "Content-Type": "text/plain"},
    )
    untyped = client.post(
        "/v1/consent/batch", content=json.dumps({"items": [_choice(subject)]}), headers=headers
    )

    assert broken.status_code == 422
    assert broken.json()["detail"][0]["loc"][0] == "body"
    assert broken.json()["detail"][0]["type"] == "json_invalid"
    assert third.status_code == 422
    (problem,) = third.json()["detail"]
    assert problem["loc"] == ["body", "items", 2, "subject_id"]
    assert unexpected.status_code == 422
    assert unexpected.json()["detail"][0]["loc"] == ["body", "items", 1, "note"]
    assert keyless.status_code == 401
    assert not_text.status_code == 422  # not a 500, and the bytes are not echoed back
    assert not_text.json()["detail"][0]["input"] == {}
    assert (as_text.status_code, untyped.status_code) == (422, 422)
    assert as_text.json()["detail"][0]["type"] == "content_type"
    after = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    assert after == before


def test_a_batch_of_decisions_answers_an_unknown_purpose_and_refuses_a_gpc_header(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    headers = api_headers(runtime, "decide")
    items = {"items": [_decide(subject), _decide(subject, "no.such.purpose")]}

    unknown = client.post("/v1/decisions/batch", json=items, headers=headers)
    alone = client.post("/v1/decisions", json=_decide(subject, "no.such.purpose"), headers=headers)
    gpc = client.post(
        "/v1/decisions/batch",
        json={"items": [_decide(subject)]},
        headers={**headers, "Sec-GPC": "1"},
    )
    unscoped = client.post(
        "/v1/decisions/batch",
        json={"items": [_decide(subject)]},
        headers=api_headers(runtime, "consent:read"),
    )

    assert unknown.status_code == 200
    answer = unknown.json()["decisions"][1]
    assert answer["allowed"] is False
    assert answer["reasons"] == alone.json()["reasons"]
    assert gpc.status_code == 400
    assert unscoped.status_code == 403


class _LockNotAvailable(Exception):
    """What psycopg raises when a lock timeout passes (SQLSTATE 55P03)."""

    sqlstate = "55P03"


def _busy(error: Exception) -> object:
    def fail(*_args: object, **_kwargs: object) -> object:
        raise OperationalError("BEGIN IMMEDIATE", {}, error)

    return fail


def test_a_database_busy_past_its_lock_timeout_is_answered_503_with_retry_after(
    client: TestClient, runtime: Runtime, subject: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    consent = client.app.state.consent  # type: ignore[attr-defined]
    ask = {"items": [_decide(subject)]}
    headers = api_headers(runtime, "decide")
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
    for error in (locked, _LockNotAvailable("canceling statement due to lock timeout")):
        monkeypatch.setattr(consent, "decide_many", _busy(error))
        busy = client.post("/v1/decisions/batch", json=ask, headers=headers)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "2"
        assert "try again" in busy.json()["detail"]
    # A fault that waiting does not mend stays the server's own error.
    missing = sqlite3.OperationalError("no such table: consent_choices")
    missing.sqlite_errorname = "SQLITE_ERROR"  # type: ignore[attr-defined]
    monkeypatch.setattr(consent, "decide_many", _busy(missing))
    with pytest.raises(OperationalError, match="no such table"):
        client.post("/v1/decisions/batch", json=ask, headers=headers)


def test_a_batch_refuses_a_prompted_opt_in_right_after_its_own_opt_out(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    headers = api_headers(runtime, "consent:write", "consent:read")
    before = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    batch = [
        _choice(subject, purpose=SHARING, action="withdraw"),
        _choice(subject, purpose=SHARING, prompted_by_pledge=True),
    ]
    one_alone = [_choice("00000000-0000-4000-8000-000000000000")]

    prompted = client.post("/v1/consent/batch", json={"items": batch}, headers=headers)
    missing = client.post("/v1/consent/batch", json={"items": one_alone}, headers=headers)

    assert prompted.status_code == 409
    assert prompted.json()["detail"][0]["loc"] == ["body", "items", 1]
    assert missing.status_code == 404
    assert missing.json()["detail"][0]["loc"] == ["body", "items", 0]
    after = client.get(f"/v1/subjects/{subject}/consent", headers=headers).json()["history"]
    assert after == before
