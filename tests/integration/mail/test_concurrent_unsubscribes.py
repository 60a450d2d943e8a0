"""Unsubscribes of one address arriving at once, over HTTP, on PostgreSQL with a connection per
request (as a server has): every one is answered 200, and the address is suppressed once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from pledge.app import Services, build_services, create_app
from pledge.consent import Action, ChoiceToRecord, Method
from pledge.mail import MARKETING_EMAIL
from pledge.mail.tables import Suppression
from pledge.migrations import upgrade_database
from pledge.policy import load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.vault import Source, Submission
from tests.conftest import REFERENCE_POLICY, FreshDatabases, SmtpInbox, test_settings
from tests.people import screened

pytestmark = pytest.mark.postgresql

WAIT = 30.0


@pytest.fixture
def server_runtime(tmp_path: Path, smtp_inbox: tuple[SmtpInbox, int]) -> Iterator[Runtime]:
    """A migrated PostgreSQL database of the test's own, sending mail to the test SMTP server."""
    databases = FreshDatabases("postgresql", tmp_path)
    try:
        settings = test_settings(
            databases.new(),
            keystore_url=databases.new(),
            master_key_file=tmp_path / "m.key",
            smtp_port=smtp_inbox[1],
        )
        with Runtime.build(settings) as runtime:
            upgrade_database(runtime.engine)
            publish_policy(
                runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests"
            )
            yield runtime
    finally:
        databases.drop_all()


def _two_links(runtime: Runtime, inbox: SmtpInbox) -> tuple[Services, str, list[str]]:
    """A subscriber sent two messages: the services, the subscriber, the two links' paths."""
    services = build_services(runtime)
    (reader,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "twice@example.com"}, Source.WEB_FORM),
        ),
        actor="t",
    )
    grant = ChoiceToRecord(
        reader.subject_id, MARKETING_EMAIL, Action.GRANT, Method.DOUBLE_OPT_IN, "t", "a" * 64
    )
    services.consent.record([grant], actor="tests")
    for campaign in ("spring", "summer"):  # two messages, each with a link of its own
        services.mailer.queue_marketing(
            [reader.subject_id], campaign=campaign, subject_line="News", text="Hi", actor="t"
        )
    services.jobs.drain()
    paths = [urlsplit(m["List-Unsubscribe"].strip("<>")).path for m in inbox.messages]
    assert len(set(paths)) == 2
    return services, reader.subject_id, paths


def _suppressions(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(Suppression)) or 0


def test_two_links_to_one_address_clicked_at_once_both_unsubscribe(
    server_runtime: Runtime, inbox: SmtpInbox
) -> None:
    services, reader, paths = _two_links(server_runtime, inbox)

    # Both requests have read the suppression list before either writes to it: the race two
    # clicks at once run into on a server.
    both_there = threading.Barrier(2, timeout=WAIT)

    def meet(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT INTO mail_suppressions"):
            both_there.wait()

    event.listen(server_runtime.engine, "before_cursor_execute", meet)
    app = create_app(server_runtime.settings, server_runtime, services)
    with TestClient(app, raise_server_exceptions=False) as client, ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda p: client.post(p, data={"List-Unsubscribe": "One-Click"}), paths)
        )
    event.remove(server_runtime.engine, "before_cursor_execute", meet)

    assert [a.status_code for a in answers] == [200, 200]
    assert all("You are unsubscribed" in a.text for a in answers)
    assert _suppressions(server_runtime) == 1
    assert not services.consent.choices(reader)[MARKETING_EMAIL].granted


def test_one_link_posted_many_times_at_once_unsubscribes_once(
    server_runtime: Runtime, inbox: SmtpInbox
) -> None:
    services, reader, paths = _two_links(server_runtime, inbox)
    app = create_app(server_runtime.settings, server_runtime, services)
    with TestClient(app, raise_server_exceptions=False) as client, ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda p: client.post(p, data={"List-Unsubscribe": "One-Click"}), paths[:1] * 4
            )
        )
    assert [a.status_code for a in answers] == [200] * 4
    assert _suppressions(server_runtime) == 1
    history = services.consent.history(reader)
    assert [e.method for e in history if e.action is Action.WITHDRAW] == [
        Method.ONE_CLICK_UNSUBSCRIBE
    ]
