"""A deletion request in a real browser (Debian's Chromium driven by Playwright): the form,
the e-mailed link, the sign-in code, the data points, staff approval, the erasure.

Pledge runs in a thread (uvicorn, on a database of its own) and sends its mail to a real SMTP
server (aiosmtpd); the test runs the job queue itself, as a worker would."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import uvicorn

from pledge.app import Services, build_services, create_app
from pledge.db import create_database_engine
from pledge.migrations import upgrade_database
from pledge.policy.document import RequestKind
from pledge.requests import Status
from pledge.runtime import Runtime
from pledge.vault import SubjectErased, Submission
from pledge.vault.rules import Source
from tests.conftest import FreshDatabases, SmtpInbox, test_settings
from tests.e2e.test_cookie_banner_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _browser_or_skip,
    _free_port,
)
from tests.people import ADDRESS, BIRTHDAY, NAME, PHONE, body, screened

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def pledge_server(
    fresh_databases: FreshDatabases, smtp_inbox: tuple[SmtpInbox, int]
) -> Iterator[tuple[str, Runtime, Services]]:
    _browser_or_skip()
    url = f"http://127.0.0.1:{_free_port()}"
    database_url = fresh_databases.new()
    engine = create_database_engine(database_url)
    upgrade_database(engine)
    engine.dispose()
    settings = test_settings(
        database_url,
        keystore_url=fresh_databases.new(),
        public_url=url,
        smtp_port=smtp_inbox[1],
        jobs_first_retry_seconds=0.0,
    )
    runtime = Runtime.build(settings)
    services = build_services(runtime)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, runtime, services),
            host="127.0.0.1",
            port=int(url.rsplit(":", 1)[1]),
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "Pledge did not start"
        time.sleep(0.02)
    yield url, runtime, services
    server.should_exit = True
    thread.join(10)
    runtime.close()


@pytest.fixture
def page(pledge_server: tuple[str, Runtime, Services]) -> Iterator[Page]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - absent means skipped

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context()
        yield context.new_page()
        context.close()
        browser.close()


def last_mail(inbox: SmtpInbox, services: Services, pattern: str) -> str:
    services.jobs.drain()
    for message in reversed(inbox.messages):
        found = re.search(pattern, body(message))
        if found:
            return found[1]
    raise AssertionError(f"no message matched {pattern}")


def test_a_person_asks_for_deletion_in_the_browser_and_is_erased_after_approval(
    pledge_server: tuple[str, Runtime, Services], page: Page, inbox: SmtpInbox
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - absent means skipped

    url, _, services = pledge_server
    (ada,) = services.vault.collect(
        screened(
            services.vault,
            Submission(
                "registration",
                {
                    "name": NAME,
                    "email": ADDRESS,
                    "password": "pw-1234567",
                    "date_of_birth": BIRTHDAY,
                },
                Source.WEB_FORM,
            ),
        ),
        actor="tests",
    )
    services.vault.collect(
        [
            Submission(
                "support_contact",
                {"name": NAME, "phone": PHONE, "correspondence": "Hello."},
                Source.WEB_FORM,
                subject_id=ada.subject_id,
            )
        ],
        actor="tests",
    )

    page.goto(f"{url}/privacy-center")
    page.get_by_role("link", name="Make a privacy request").click()
    page.get_by_label("Delete the personal information you hold about me").check()
    page.get_by_label("Your e-mail address").fill(ADDRESS)
    page.get_by_label("Where you live").select_option("US-CA")
    page.get_by_role("button", name="Send my request").click()
    expect(page.get_by_role("heading", name="Request received")).to_be_visible()

    link = last_mail(inbox, services, r"(http://\S+/privacy-center/requests/[0-9a-f-]{36})")
    page.goto(link)
    expect(page.get_by_role("heading", name="Sign in to your request")).to_be_visible()
    page.get_by_label("E-mail address").fill(ADDRESS)
    page.get_by_role("button", name="Send me a code").click()
    code = last_mail(inbox, services, r"Your code is (\d{6})\.")
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Confirm who you are")).to_be_visible()
    page.get_by_label("Phone number").fill("(310) 555-0100")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("who you are is confirmed")).to_be_visible()
    expect(page.get_by_text("Confirmed; waiting for our privacy team")).to_be_visible()

    (request,) = services.requests.queue(open_only=True)
    assert (request.kind, request.status) == (RequestKind.DELETION, Status.VERIFIED)
    services.requests.approve(request.id, actor="staff:grace")
    services.jobs.drain()

    page.reload()
    expect(page.get_by_text("Done", exact=True)).to_be_visible()
    with pytest.raises(SubjectErased):
        services.vault.read(ada.subject_id, "essential.service", actor="tests")
    assert "We deleted the personal information" in last_mail(
        inbox, services, r"(We deleted the personal information[^\n]*)"
    )
