"""The privacy center's sign-in in a real browser (Debian's Chromium, driven by Playwright):
its own pages sign a person in, and a form on another site can do neither step of it.

Pledge runs in a thread (uvicorn, on a database of its own), and so does another site, a
different origin, whose page holds forms that post to Pledge. Chromium missing is a skip with a
message on a laptop and a failure under CI=true, like the cookie banner's browser tests.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import SmtpInbox
from tests.e2e.conftest import Pledge

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ADDRESS = "someone@example.com"


class OtherSite:
    """Another origin, serving one page: whatever form a test gives it."""

    def __init__(self) -> None:
        self.page = b""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(site.page)))
                self.end_headers()
                self.wfile.write(site.page)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}"  # another site
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve_form(self, action: str, fields: dict[str, str], *, policy: str) -> None:
        """A page whose form posts `fields` to `action`, under the referrer policy given."""
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        self.page = (
            f'<!doctype html><meta name="referrer" content="{policy}">'
            f'<form method="post" action="{html.escape(action)}">{inputs}'
            '<button id="go">Win a prize</button></form>'
        ).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    yield site
    site.close()


def code_in(inbox: SmtpInbox, pledge: Pledge) -> str:
    pledge.services.jobs.drain()
    found = re.search(r"Your code is (\d{6})\.", inbox.messages[-1].get_content())
    assert found
    return found.group(1)


def submit(page: Page, button: str, path: str) -> int:
    """Click `button` and return the status of the POST to `path` it sends."""
    with page.expect_response(
        lambda r: r.url.endswith(path) and r.request.method == "POST"
    ) as sent:
        page.click(button)
    status: int = sent.value.status
    return status


def test_the_privacy_centers_own_pages_sign_a_person_in(
    pledge: Pledge, browser: Browser, inbox: SmtpInbox
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{pledge.url}/privacy-center/preferences")
    page.fill("#email", ADDRESS)
    assert submit(page, "button[type=submit]", "/preferences/code") == 200
    page.fill("#code", code_in(inbox, pledge))
    assert submit(page, "button[type=submit]", "/preferences/verify") == 303
    page.wait_for_url(f"{pledge.url}/privacy-center/preferences")
    assert "holds no choices for this address" in page.content()
    assert [c["name"] for c in context.cookies()] == ["pledge_session"]
    context.close()


@pytest.mark.parametrize("policy", ["strict-origin-when-cross-origin", "no-referrer"])
def test_a_form_on_another_site_can_neither_ask_for_a_code_nor_sign_a_visitor_in(
    pledge: Pledge, browser: Browser, inbox: SmtpInbox, other_site: OtherSite, policy: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    other_site.serve_form(
        f"{pledge.url}/privacy-center/preferences/code", {"email": ADDRESS}, policy=policy
    )
    page.goto(other_site.url)
    assert submit(page, "#go", "/preferences/code") == 403
    pledge.services.jobs.drain()
    assert inbox.messages == []

    # Login CSRF: the attacker proves their own address, then has the visitor post the code.
    asked = httpx.post(
        f"{pledge.url}/privacy-center/preferences/code", data={"email": "attacker@example.com"}
    )
    found = re.search(r'name="challenge" value="([0-9a-f-]{36})"', asked.text)
    assert found
    fields = {"challenge": found.group(1), "code": code_in(inbox, pledge)}
    other_site.serve_form(f"{pledge.url}/privacy-center/preferences/verify", fields, policy=policy)
    page.goto(other_site.url)
    assert submit(page, "#go", "/preferences/verify") == 403
    assert context.cookies() == []  # the visitor is signed in as nobody
    context.close()
