"""The privacy center's preferences page, end to end; codes arrive through a real SMTP server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from pledge.app import Services
from pledge.consent import Action, ChoiceToRecord, Method
from pledge.mail import MARKETING_EMAIL
from pledge.privacy_center.tables import EmailChallenge
from pledge.runtime import Runtime
from pledge.vault import Source, Submission
from tests.conftest import SmtpInbox
from tests.people import screened

ADDRESS = "frame.owner@example.com"
SHARING = "marketing.advertising.third_party.targeted"


@pytest.fixture
def person(services: Services) -> str:
    (collected,) = services.vault.collect(
        screened(services.vault, Submission("newsletter", {"email": ADDRESS}, Source.WEB_FORM)),
        actor="tests",
    )
    services.consent.record(
        [
            ChoiceToRecord(
                collected.subject_id,
                MARKETING_EMAIL,
                Action.GRANT,
                Method.DOUBLE_OPT_IN,
                "newsletter",
                "b" * 64,
            )
        ],
        actor="tests",
    )
    return collected.subject_id


def ask_code(client: TestClient, address: str) -> tuple[int, str, str]:
    page = client.post("/privacy-center/preferences/code", data={"email": address})
    match = re.search(r'name="challenge" value="([0-9a-f-]{36})"', page.text)
    assert match, page.text
    return page.status_code, match.group(1), page.text


def code_in(inbox: SmtpInbox, services: Services) -> str:
    services.jobs.drain()
    match = re.search(r"Your code is (\d{6})\.", inbox.messages[-1].get_content())
    assert match
    return match.group(1)


def sign_in(
    client: TestClient, inbox: SmtpInbox, services: Services, address: str = ADDRESS
) -> None:
    _, challenge, _ = ask_code(client, address)
    code = code_in(inbox, services)
    answer = client.post(
        "/privacy-center/preferences/verify",
        data={"challenge": challenge, "code": code},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "samesite=strict" in cookie.lower()


def form_token(page: str) -> str:
    match = re.search(r'name="form_token" value="([0-9a-f]{64})"', page)
    assert match
    return match.group(1)


def test_a_person_proves_their_address_then_turns_marketing_email_off(
    client: TestClient, services: Services, inbox: SmtpInbox, person: str
) -> None:
    assert 'name="email"' in client.get("/privacy-center/preferences").text
    sign_in(client, inbox, services)
    assert inbox.messages[0]["To"] == ADDRESS

    page = client.get("/privacy-center/preferences").text
    assert re.search(rf'value="{re.escape(MARKETING_EMAIL)}" checked', page)
    for heading in ("E-mail", "Post", "Sale and sharing", "Cookies and ads", "Other uses"):
        assert f"<legend>{heading}" in page
    assert "Personalized" in page or "personaliz" in page.lower()
    shown = re.findall(r'name="shown" value="([^"]+)"', page)
    keep_on = [
        p
        for p in shown
        if p != MARKETING_EMAIL and re.search(rf'value="{re.escape(p)}" checked', page)
    ]
    saved = client.post(
        "/privacy-center/preferences",
        data={"form_token": form_token(page), "shown": shown, "on": keep_on},
    )
    assert "Your choices are saved" in saved.text

    current = services.consent.choices(person)[MARKETING_EMAIL]
    assert (current.granted, current.method) == (False, Method.PREFERENCES_PAGE)
    assert len(services.consent.history(person)) == 2, "only the changed choice is recorded"


def test_asking_for_a_code_looks_and_works_the_same_for_known_and_unknown_addresses(
    client: TestClient, services: Services, inbox: SmtpInbox, person: str, mail_runtime: Runtime
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(re.sub(r"sa_savepoint_\d+", "sp", re.sub(r"\s+", " ", args[2])))

    event.listen(mail_runtime.engine, "before_cursor_execute", count)
    try:
        known_status, known_id, known_page = ask_code(client, ADDRESS)
        known_statements = list(statements)
        statements.clear()
        unknown_status, unknown_id, unknown_page = ask_code(client, "nobody.here@example.com")
        unknown_statements = list(statements)
    finally:
        event.remove(mail_runtime.engine, "before_cursor_execute", count)

    assert known_status == unknown_status == 200
    assert known_page.replace(known_id, "ID") == unknown_page.replace(unknown_id, "ID")
    assert known_statements == unknown_statements, "the same work, so the same time"
    services.jobs.drain()
    assert sorted(m["To"] for m in inbox.messages) == sorted([ADDRESS, "nobody.here@example.com"])


def test_an_unknown_address_proven_sees_that_nothing_is_held(
    client: TestClient, services: Services, inbox: SmtpInbox
) -> None:
    sign_in(client, inbox, services, "stranger@example.com")
    page = client.get("/privacy-center/preferences").text
    assert "holds no choices for this address" in page


def test_a_code_allows_five_attempts_then_even_the_right_one_fails(
    client: TestClient, services: Services, inbox: SmtpInbox, person: str
) -> None:
    _, challenge, _ = ask_code(client, ADDRESS)
    code = code_in(inbox, services)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        answer = client.post(
            "/privacy-center/preferences/verify", data={"challenge": challenge, "code": wrong}
        )
        assert answer.status_code == 400
    late = client.post(
        "/privacy-center/preferences/verify",
        data={"challenge": challenge, "code": code},
        follow_redirects=False,
    )
    assert late.status_code == 400
    assert "set-cookie" not in late.headers


def test_a_code_expires_after_ten_minutes(
    client: TestClient, services: Services, inbox: SmtpInbox, person: str, mail_runtime: Runtime
) -> None:
    _, challenge, _ = ask_code(client, ADDRESS)
    code = code_in(inbox, services)
    with mail_runtime.sessions() as session, session.begin():
        row = session.get(EmailChallenge, challenge)
        assert row is not None
        assert (row.expires_at - row.created_at).total_seconds() == 600
        session.execute(
            update(EmailChallenge)
            .where(EmailChallenge.id == challenge)
            .values(expires_at=row.created_at)
        )
    answer = client.post(
        "/privacy-center/preferences/verify", data={"challenge": challenge, "code": code}
    )
    assert answer.status_code == 400


def test_a_browser_sending_gpc_sees_its_opt_out_honored_and_recorded(
    client: TestClient, services: Services, inbox: SmtpInbox, person: str
) -> None:
    sign_in(client, inbox, services)
    page = client.get("/privacy-center/preferences", headers={"Sec-GPC": "1"}).text
    assert "Opt-out request honored" in page
    choice = services.consent.choices(person)[SHARING]
    assert (choice.granted, choice.method) == (False, Method.GPC)
    assert re.search(rf'value="{re.escape(SHARING)}" disabled', page)


def test_a_save_without_the_form_token_changes_nothing(
    client: TestClient, services: Services, inbox: SmtpInbox, person: str
) -> None:
    sign_in(client, inbox, services)
    client.post(
        "/privacy-center/preferences", data={"shown": [MARKETING_EMAIL], "form_token": "0" * 64}
    )
    assert services.consent.choices(person)[MARKETING_EMAIL].granted


def test_codes_to_one_address_are_limited_per_hour_without_a_different_answer(
    client: TestClient, services: Services, inbox: SmtpInbox
) -> None:
    pages = [ask_code(client, "busy@example.com") for _ in range(6)]
    services.jobs.drain()
    assert len(inbox.messages) == 5
    assert {status for status, _, _ in pages} == {200}
    assert len({page.replace(cid, "ID") for _, cid, page in pages}) == 1


def test_an_invalid_address_is_refused_and_sends_nothing(
    client: TestClient, services: Services, inbox: SmtpInbox
) -> None:
    answer = client.post("/privacy-center/preferences/code", data={"email": "not an address"})
    assert answer.status_code == 422
    services.jobs.drain()
    assert inbox.messages == []


def test_expired_codes_and_sessions_are_deleted(
    client: TestClient, services: Services, inbox: SmtpInbox, mail_runtime: Runtime
) -> None:
    import datetime as dt  # noqa: PLC0415

    from pledge.privacy_center.tables import CenterSession  # noqa: PLC0415

    sign_in(client, inbox, services, "someone@example.com")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert services.privacy_center.forget_expired(now=later) == 2
    with mail_runtime.sessions() as session:
        assert session.get(CenterSession, "x") is None
        assert session.scalars(select(EmailChallenge)).all() == []
    assert 'name="email"' in client.get("/privacy-center/preferences").text


def test_codes_asked_for_past_the_limit_can_never_be_proven(
    client: TestClient, services: Services, inbox: SmtpInbox, mail_runtime: Runtime
) -> None:
    for _ in range(5):
        ask_code(client, "target@example.com")
    _, over, _ = ask_code(client, "target@example.com")
    with mail_runtime.sessions() as session:
        row = session.get(EmailChallenge, over)
        assert row is not None
        assert not re.fullmatch(r"[0-9a-f]{64}", row.code_digest)


def test_tries_are_limited_per_address_across_codes(
    client: TestClient, services: Services, inbox: SmtpInbox
) -> None:
    for _ in range(2):
        _, challenge, _ = ask_code(client, "guessed@example.com")
        for _ in range(5):
            client.post(
                "/privacy-center/preferences/verify",
                data={"challenge": challenge, "code": "000000"},
            )
    _, challenge, _ = ask_code(client, "guessed@example.com")
    code = code_in(inbox, services)
    late = client.post(
        "/privacy-center/preferences/verify",
        data={"challenge": challenge, "code": code},
        follow_redirects=False,
    )
    assert late.status_code == 400, "ten tries in the hour are spent: even the right code fails"


SAME_SITE = "https://privacy.example.test"
"""The origin of `PLEDGE_PUBLIC_URL` in the test settings."""


def _challenges(mail_runtime: Runtime) -> list[EmailChallenge]:
    with mail_runtime.sessions() as session:
        return list(session.scalars(select(EmailChallenge)))


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://privacy.example.test"},  # another scheme is another origin
        {"Origin": "https://privacy.example.test:8443"},
        {"Referer": "https://attacker.example/login-csrf.html"},
        {"Origin": "https://attacker.example", "Referer": f"{SAME_SITE}/privacy-center"},
    ],
)
def test_a_form_on_another_site_can_neither_ask_for_a_code_nor_sign_anyone_in(
    client: TestClient,
    services: Services,
    inbox: SmtpInbox,
    mail_runtime: Runtime,
    headers: dict[str, str],
) -> None:
    asked = client.post(
        "/privacy-center/preferences/code", data={"email": ADDRESS}, headers=headers
    )
    assert asked.status_code == 403
    assert _challenges(mail_runtime) == []
    services.jobs.drain()
    assert inbox.messages == []

    # The attacker proves their own address, then makes the victim's browser post the code.
    _, challenge, _ = ask_code(client, ADDRESS)
    code = code_in(inbox, services)
    forged = client.post(
        "/privacy-center/preferences/verify",
        data={"challenge": challenge, "code": code},
        headers=headers,
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers
    (row,) = _challenges(mail_runtime)
    assert row.attempts == 0, "a refused post is no attempt"
    assert row.verified_at is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": SAME_SITE},
        {"Origin": "HTTPS://Privacy.Example.Test:443"},
        {"Referer": f"{SAME_SITE}/privacy-center/preferences"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # a no-referrer page of our own
        {},  # not a browser: neither header
    ],
)
def test_the_privacy_centers_own_pages_and_other_clients_sign_in_as_before(
    client: TestClient, services: Services, inbox: SmtpInbox, person: str, headers: dict[str, str]
) -> None:
    page = client.post("/privacy-center/preferences/code", data={"email": ADDRESS}, headers=headers)
    assert page.status_code == 200
    match = re.search(r'name="challenge" value="([0-9a-f-]{36})"', page.text)
    assert match
    answer = client.post(
        "/privacy-center/preferences/verify",
        data={"challenge": match.group(1), "code": code_in(inbox, services)},
        headers=headers,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "pledge_session=" in answer.headers["set-cookie"]
