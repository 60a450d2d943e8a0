"""Marketing and transactional mail through a real SMTP server (aiosmtpd), on both databases."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pledge.app import Services, build_services
from pledge.consent import Action, ChoiceToRecord, Method
from pledge.jobs import JobStatus
from pledge.mail import (
    MARKETING_EMAIL,
    MessageInFlight,
    MessageKind,
    MessageStatus,
    SmtpRelay,
)
from pledge.mail.tables import MailMessage
from pledge.runtime import Runtime
from pledge.vault import Source, Submission
from tests.conftest import SmtpInbox
from tests.people import screened

ADDRESS = "reader@example.com"


@pytest.fixture
def reader(services: Services) -> str:
    """A newsletter subscriber who confirmed by double opt-in."""
    (collected,) = services.vault.collect(
        screened(services.vault, Submission("newsletter", {"email": ADDRESS}, Source.WEB_FORM)),
        actor="tests",
    )
    services.consent.record([choice(collected.subject_id, Action.GRANT)], actor="tests")
    return collected.subject_id


def choice(
    subject_id: str, action: Action, method: Method = Method.DOUBLE_OPT_IN
) -> ChoiceToRecord:
    return ChoiceToRecord(subject_id, MARKETING_EMAIL, action, method, "newsletter", "a" * 64)


def send(services: Services, subject_id: str, text: str = "Our new frames are here.") -> str:
    (message_id,) = services.mailer.queue_marketing(
        [subject_id], campaign="autumn", subject_line="Autumn news", text=text, actor="tests"
    )
    services.jobs.drain()
    return message_id


def test_a_withdrawn_marketing_consent_blocks_the_next_send(
    services: Services, inbox: SmtpInbox, reader: str
) -> None:
    first = send(services, reader)
    assert [m["To"] for m in inbox.messages] == [ADDRESS]
    assert services.mailer.message(first).status is MessageStatus.SENT

    services.consent.record([choice(reader, Action.WITHDRAW, Method.FORM_CHECKBOX)], actor="tests")
    second = send(services, reader)

    assert len(inbox.messages) == 1, "the withdrawn consent must stop the message at SMTP"
    withheld = services.mailer.message(second)
    assert withheld.status is MessageStatus.WITHHELD
    assert any("withdr" in reason or "consent" in reason for reason in withheld.reasons)


def test_a_marketing_message_carries_one_click_unsubscribe_and_the_postal_address(
    services: Services, inbox: SmtpInbox, reader: str
) -> None:
    send(services, reader)
    (message,) = inbox.messages
    link = message["List-Unsubscribe"]
    assert re.fullmatch(
        r"<https://privacy\.example\.test/mail/unsubscribe/[A-Za-z0-9_-]{43}>", link
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    url = link.strip("<>")
    assert url in text
    assert f'href="{url}"' in html
    for body in (text, html):
        assert "11620 Wilshire Blvd., FL 9" in body
        assert "Los Angeles, CA 90025" in body
        assert "Aura Imaging, Inc." in body


def test_a_marketing_message_never_goes_to_an_erased_person(
    services: Services, inbox: SmtpInbox, reader: str
) -> None:
    services.vault.shred(reader, actor="tests", reason="deletion request")
    message = services.mailer.message(send(services, reader))
    assert inbox.messages == []
    assert message.status is MessageStatus.WITHHELD
    assert message.reasons == ("the person was erased",)


def test_one_click_post_unsubscribes_with_200_no_redirect_and_no_cookie(
    services: Services, client: TestClient, inbox: SmtpInbox, reader: str
) -> None:
    send(services, reader)
    path = urlsplit(inbox.messages[0]["List-Unsubscribe"].strip("<>")).path

    page = client.get(path)
    assert page.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert services.consent.choices(reader)[MARKETING_EMAIL].granted, "a GET changes nothing"

    answer = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    assert "You are unsubscribed" in answer.text

    current = services.consent.choices(reader)[MARKETING_EMAIL]
    assert not current.granted
    assert current.method is Method.ONE_CLICK_UNSUBSCRIBE
    assert send_status(services, reader) is MessageStatus.WITHHELD
    assert len(inbox.messages) == 1

    again = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert again.status_code == 200, "multipart, as RFC 8058 allows, and saying it twice is fine"
    history = services.consent.history(reader)
    assert sum(e.method is Method.ONE_CLICK_UNSUBSCRIBE for e in history) == 1


def send_status(services: Services, subject_id: str) -> MessageStatus:
    return services.mailer.message(send(services, subject_id)).status


def test_the_unsubscribe_post_needs_the_one_click_body_and_a_known_token(
    services: Services, client: TestClient, inbox: SmtpInbox, reader: str
) -> None:
    send(services, reader)
    path = urlsplit(inbox.messages[0]["List-Unsubscribe"].strip("<>")).path
    assert client.post(path, data={"List-Unsubscribe": "Yes"}).status_code == 400
    assert client.post(path).status_code == 400
    assert services.consent.choices(reader)[MARKETING_EMAIL].granted
    unknown = "/mail/unsubscribe/" + "A" * 43
    assert client.post(unknown, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert client.get(unknown).status_code == 404
    assert client.get("/mail/unsubscribe/short").status_code == 422


def test_the_link_works_for_the_configured_days_then_expires(
    services: Services, client: TestClient, inbox: SmtpInbox, reader: str, mail_runtime: Runtime
) -> None:
    from pledge.mail.tables import UnsubscribeLink  # noqa: PLC0415

    send(services, reader)
    path = urlsplit(inbox.messages[0]["List-Unsubscribe"].strip("<>")).path
    with mail_runtime.sessions() as session:
        link = session.scalars(select(UnsubscribeLink)).one()
        lifetime = link.expires_at - link.created_at
    assert lifetime.days == mail_runtime.settings.unsubscribe_link_days >= 30
    with mail_runtime.sessions() as session, session.begin():
        session.scalars(select(UnsubscribeLink)).one().expires_at = link.created_at
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert services.consent.choices(reader)[MARKETING_EMAIL].granted


def test_an_unsubscribed_address_stays_suppressed_until_the_person_opts_in_again(
    services: Services, client: TestClient, inbox: SmtpInbox, reader: str
) -> None:
    send(services, reader)
    path = urlsplit(inbox.messages[0]["List-Unsubscribe"].strip("<>")).path
    client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert services.mailer.suppressed(ADDRESS.upper())

    services.consent.record([choice(reader, Action.GRANT)], actor="tests")
    assert send_status(services, reader) is MessageStatus.SENT
    assert not services.mailer.suppressed(ADDRESS)
    assert len(inbox.messages) == 2


def test_transactional_mail_is_sealed_until_sent_then_shredded(
    services: Services, inbox: SmtpInbox, mail_runtime: Runtime
) -> None:
    with mail_runtime.sessions() as session, session.begin():
        job_id = services.mailer.queue_transactional(
            session, to="code@example.com", subject_line="Your code", text="Your code is 123456."
        )
        row = session.scalars(select(MailMessage)).one()
        assert b"code@example.com" not in (row.sealed or b"")
        assert b"123456" not in (row.sealed or b"")
        message_id = row.id
    services.jobs.dispatch([job_id])
    services.jobs.drain()
    (message,) = inbox.messages
    assert message["To"] == "code@example.com"
    assert "123456" in message.get_content()
    assert message["List-Unsubscribe"] is None
    with mail_runtime.sessions() as session:
        assert session.get(MailMessage, message_id).sealed is None  # type: ignore[union-attr]
    assert mail_runtime.keyring.data_keys([message_id]) == {}


def test_a_failing_smtp_server_makes_the_job_retry_then_fail_visibly(
    runtime: Runtime, client: TestClient, services: Services, reader: str
) -> None:
    from tests.conftest import api_headers  # noqa: PLC0415

    dead = dataclasses.replace(
        runtime,
        settings=runtime.settings.model_copy(
            update={"smtp_port": 9, "jobs_max_attempts": 3, "jobs_first_retry_seconds": 0.0}
        ),
    )
    broken = build_services(dead)
    (message_id,) = broken.mailer.queue_marketing(
        [reader], campaign="c", subject_line="s", text="t", actor="tests"
    )
    broken.jobs.drain()
    jobs = broken.jobs.jobs()
    assert [(j.status, j.attempts) for j in jobs] == [(JobStatus.FAILED, 3)]
    assert jobs[0].last_error == "ConnectionRefusedError"
    assert broken.mailer.message(message_id).status is MessageStatus.QUEUED

    headers = api_headers(runtime, "jobs:read", "jobs:write")
    listed = client.get("/v1/jobs", params={"status": "failed"}, headers=headers).json()
    assert listed["counts"]["failed"] == 1
    assert listed["jobs"][0]["last_error"] == "ConnectionRefusedError"

    # The cause fixed (the app's services use the working server), staff retry it.
    retried = client.post(f"/v1/jobs/{jobs[0].id}/retry", headers=headers)
    assert retried.status_code == 200
    assert client.post(f"/v1/jobs/{jobs[0].id}/retry", headers=headers).status_code == 409


def test_housekeeping_shreds_unsent_transactional_mail_and_drops_expired_links(
    services: Services, inbox: SmtpInbox, reader: str, mail_runtime: Runtime
) -> None:
    import datetime as dt  # noqa: PLC0415

    from pledge.mail.tables import UnsubscribeLink  # noqa: PLC0415

    send(services, reader)
    with mail_runtime.sessions() as session, session.begin():
        services.mailer.queue_transactional(  # never dispatched: its worker never came
            session, to="late@example.com", subject_line="Code", text="123456"
        )
    (stale,) = [m for m in _messages(mail_runtime) if m.kind == "transactional"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=61)
    assert services.mailer.forget_expired(now=later) == 2
    with mail_runtime.sessions() as session:
        assert session.scalars(select(UnsubscribeLink)).all() == []
        shredded = session.get(MailMessage, stale.id)
        assert shredded is not None
        assert (shredded.status, shredded.sealed) == ("withheld", None)
    assert mail_runtime.keyring.data_keys([stale.id]) == {}


def _messages(runtime: Runtime) -> list[MailMessage]:
    with runtime.sessions() as session:
        return list(session.scalars(select(MailMessage)))


def test_marketing_mail_over_http_is_queued_then_followed(
    client: TestClient, services: Services, inbox: SmtpInbox, reader: str, runtime: Runtime
) -> None:
    from tests.conftest import api_headers  # noqa: PLC0415

    headers = api_headers(runtime, "mail:send")
    body = {"subject_ids": [reader, reader], "campaign": "c1", "subject_line": "News", "text": "Hi"}
    queued = client.post("/v1/mail/marketing", json=body, headers=headers)
    assert queued.status_code == 202
    (message_id,) = queued.json()["message_ids"]
    assert client.get(f"/v1/mail/messages/{message_id}", headers=headers).json()["status"] == (
        "queued"
    )
    services.jobs.drain()
    shown = client.get(f"/v1/mail/messages/{message_id}", headers=headers).json()
    assert (shown["status"], shown["subject_id"]) == ("sent", reader)
    assert "reader@example.com" not in str(shown)
    assert len(inbox.messages) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"subject_line": "News\r\nBcc: everyone@example.com"},
        {"subject_ids": ["not-a-subject"]},
        {"subject_ids": []},
        {"text": ""},
        {"sender": "me@example.com"},
    ],
)
def test_bad_marketing_requests_are_refused_and_queue_nothing(
    client: TestClient, services: Services, reader: str, runtime: Runtime, change: dict[str, object]
) -> None:
    from tests.conftest import api_headers  # noqa: PLC0415

    body = {
        "subject_ids": [reader],
        "campaign": "c",
        "subject_line": "News",
        "text": "Hi",
        **change,
    }
    answer = client.post("/v1/mail/marketing", json=body, headers=api_headers(runtime, "mail:send"))
    assert answer.status_code == 422
    assert services.jobs.jobs() == []


def test_marketing_mail_needs_its_scope(client: TestClient, reader: str, runtime: Runtime) -> None:
    from tests.conftest import api_headers  # noqa: PLC0415

    body = {"subject_ids": [reader], "campaign": "c", "subject_line": "News", "text": "Hi"}
    answer = client.post("/v1/mail/marketing", json=body, headers=api_headers(runtime, "decide"))
    assert answer.status_code == 403


class SecondWorkerMidSend:
    """The real SMTP relay; but while the first worker sends a message, a second one runs the
    same job (handed out again when its lease passed), once."""

    def __init__(self, relay: SmtpRelay, second_worker: Callable[[], None]) -> None:
        self.relay = relay
        self.second_worker: Callable[[], None] | None = second_worker

    def send(self, message: EmailMessage) -> None:
        if self.second_worker is not None:
            second_worker, self.second_worker = self.second_worker, None
            second_worker()
        self.relay.send(message)


def _queued(services: Services, mail_runtime: Runtime, kind: MessageKind, reader: str) -> str:
    if kind is MessageKind.MARKETING:
        (message_id,) = services.mailer.queue_marketing(
            [reader], campaign="c", subject_line="News", text="Hi", actor="tests"
        )
        return message_id
    with mail_runtime.sessions() as session, session.begin():
        services.mailer.queue_transactional(
            session, to="code@example.com", subject_line="Code", text="Your code is 123456."
        )
        return session.scalars(select(MailMessage.id).where(MailMessage.kind == kind.value)).one()


@pytest.mark.parametrize("kind", [MessageKind.MARKETING, MessageKind.TRANSACTIONAL])
def test_two_workers_running_one_message_at_once_send_it_once(
    services: Services, inbox: SmtpInbox, reader: str, mail_runtime: Runtime, kind: MessageKind
) -> None:
    message_id = _queued(services, mail_runtime, kind, reader)
    payload = {"message_id": message_id}
    seen: list[MessageStatus] = []

    def second_worker() -> None:
        with pytest.raises(MessageInFlight):  # its job will try again later
            services.mailer.deliver(payload)
        seen.append(services.mailer.message(message_id).status)

    services.mailer.relay = SecondWorkerMidSend(services.mailer.relay, second_worker)  # type: ignore[assignment]
    services.mailer.deliver(payload)

    assert seen == [MessageStatus.SENDING]
    assert len(inbox.messages) == 1
    assert services.mailer.message(message_id).status is MessageStatus.SENT
    services.mailer.deliver(payload)  # the second worker's retry: nothing is left to send
    assert len(inbox.messages) == 1


def test_a_message_whose_send_failed_is_queued_again_for_the_next_attempt(
    services: Services, inbox: SmtpInbox, reader: str, mail_runtime: Runtime
) -> None:
    message_id = _queued(services, mail_runtime, MessageKind.MARKETING, reader)
    working = services.mailer.relay
    services.mailer.relay = SmtpRelay(  # type: ignore[assignment]
        mail_runtime.settings.model_copy(update={"smtp_port": 9})
    )
    with pytest.raises(ConnectionRefusedError):
        services.mailer.deliver({"message_id": message_id})
    assert services.mailer.message(message_id).status is MessageStatus.QUEUED
    services.mailer.relay = working
    services.mailer.deliver({"message_id": message_id})
    assert services.mailer.message(message_id).status is MessageStatus.SENT
    assert len(inbox.messages) == 1


def _unsubscribe(client: TestClient, inbox: SmtpInbox) -> None:
    path = urlsplit(inbox.messages[-1]["List-Unsubscribe"].strip("<>")).path
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200


@pytest.mark.parametrize("method", [Method.COOKIE_BANNER, Method.GPC, Method.ONE_CLICK_UNSUBSCRIBE])
def test_a_later_grant_that_is_no_affirmative_opt_in_leaves_the_address_suppressed(
    services: Services, client: TestClient, inbox: SmtpInbox, reader: str, method: Method
) -> None:
    send(services, reader)
    _unsubscribe(client, inbox)

    services.consent.record([choice(reader, Action.GRANT, method)], actor="tests")
    assert services.consent.choices(reader)[MARKETING_EMAIL].granted  # the decision allows it
    message = services.mailer.message(send(services, reader))

    assert len(inbox.messages) == 1, "the suppressed address must get nothing at SMTP"
    assert message.status is MessageStatus.WITHHELD
    assert message.reasons == ("suppressed: this address unsubscribed from marketing e-mail",)
    assert services.mailer.suppressed(ADDRESS)


@pytest.mark.parametrize(
    "method",
    [Method.FORM_CHECKBOX, Method.DOUBLE_OPT_IN, Method.PREFERENCES_PAGE, Method.STAFF_ENTRY],
)
def test_a_fresh_affirmative_opt_in_after_an_unsubscribe_lifts_the_suppression(
    services: Services, client: TestClient, inbox: SmtpInbox, reader: str, method: Method
) -> None:
    send(services, reader)
    _unsubscribe(client, inbox)
    services.consent.record([choice(reader, Action.GRANT, Method.COOKIE_BANNER)], actor="tests")
    services.consent.record([choice(reader, Action.GRANT, method)], actor="tests")
    assert send_status(services, reader) is MessageStatus.SENT
    assert len(inbox.messages) == 2
    assert not services.mailer.suppressed(ADDRESS)
