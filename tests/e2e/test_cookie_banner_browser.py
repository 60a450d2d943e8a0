"""The cookie banner in a real browser: Debian's Chromium driven by Playwright.

Two servers run in threads: Pledge (uvicorn, on a database of its own) and the organization's
site, another origin, whose page embeds the banner and gates two tags on it. Chromium missing is
a skip with a message on a laptop and a failure under CI=true, like PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pytest
import uvicorn
import yaml

from pledge.app import create_app
from pledge.consent import Action, ConsentLedger, Method
from pledge.db import create_database_engine
from pledge.migrations import upgrade_database
from pledge.policy import current_version, load_policy_text, publish_policy
from pledge.runtime import Runtime
from tests.conftest import IN_CI, REFERENCE_POLICY, FreshDatabases, test_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADVERTISING = {
    "marketing.advertising.first_party.targeted",
    "marketing.advertising.third_party.targeted",
}
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Shop</title>
  <script src="{pledge}/consent/banner.js" defer></script>
</head>
<body>
  <h1>Shop</h1>
  <a href="#" id="cookie-choices">Cookie choices</a>
  <script type="text/plain" data-pledge-category="analytics" src="/analytics.js"></script>
  <script type="text/plain" data-pledge-category="advertising">window.adsLoaded = true;</script>
  <script>
    document.getElementById("cookie-choices").addEventListener("click", (event) => {{
      event.preventDefault();
      window.pledgeConsent.open();
    }});
  </script>
</body>
</html>
"""


def _browser_or_skip() -> None:
    try:
        import playwright.sync_api  # noqa: F401, PLC0415 - only to learn whether it is installed
    except ImportError:
        missing = "Playwright is not installed (it is in the `test` dependency group)"
    else:
        if CHROMIUM.exists():
            return
        missing = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if IN_CI:
        pytest.fail(f"{missing} (CI=true: a missing browser is a failure)", pytrace=False)
    pytest.skip(f"{missing}: the browser tests of the cookie banner are skipped")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Site:
    """The organization's own site: one page with gated tags, and the analytics script."""

    def __init__(self, pledge: str) -> None:
        self.requested: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requested.append(self.path)
                if self.path == "/":
                    body, kind = PAGE.format(pledge=pledge).encode(), "text/html"
                elif self.path == "/analytics.js":
                    body, kind = b"window.analyticsLoaded = true;", "text/javascript"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # "localhost" and "127.0.0.1" are different sites: the banner's calls are cross-site.
        self.url = f"http://localhost:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class Servers:
    site: Site
    runtime: Runtime
    pledge: str


@pytest.fixture(scope="module")
def servers(fresh_databases: FreshDatabases) -> Iterator[Servers]:
    """Pledge on a fresh database of its own (the savepoint runtime is one connection, not for a
    server's threads), allowing the site's origin, and the site embedding its banner."""
    _browser_or_skip()
    pledge = f"http://127.0.0.1:{_free_port()}"
    site = Site(pledge)
    database_url = fresh_databases.new()
    engine = create_database_engine(database_url)
    upgrade_database(engine)
    engine.dispose()
    settings = test_settings(
        database_url,
        keystore_url=fresh_databases.new(),
        banner_origins=[site.url],
        public_url=pledge,
    )
    runtime = Runtime.build(settings)
    port = int(pledge.rsplit(":", 1)[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, runtime),
            host="127.0.0.1",
            port=port,
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
    yield Servers(site, runtime, pledge)
    server.should_exit = True
    thread.join(10)
    site.close()
    runtime.close()


@pytest.fixture(scope="module")
def browser(servers: Servers) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - absent means skipped

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A new visitor: an empty browser profile."""
    fresh = browser.new_context()
    yield fresh
    fresh.close()


def visit(context: BrowserContext, servers: Servers) -> Page:
    """Open the site and wait until the banner script has decided what to do."""
    page = context.new_page()
    page.goto(servers.site.url)
    page.wait_for_function("window.pledgeConsent !== undefined")
    page.evaluate("window.pledgeConsent.ready")
    return page


def activated(page: Page) -> set[str]:
    """The categories whose gated tags the script turned into real ones (settled once
    `pledgeConsent.ready` is; a script with `src` then runs a moment later)."""
    found: list[str] = page.evaluate(
        "[...document.querySelectorAll('script[data-pledge-category]')]"
        ".filter((s) => s.type !== 'text/plain').map((s) => s.dataset.pledgeCategory)"
    )
    return set(found)


def wait_until_loaded(page: Page, *categories: str) -> None:
    """Wait until the tags of `categories` ran (each sets a flag)."""
    flags = {"analytics": "window.analyticsLoaded", "advertising": "window.adsLoaded"}
    page.wait_for_function(" && ".join(f"{flags[c]} === true" for c in categories))


def consent_id(context: BrowserContext) -> str:
    (cookie,) = [c for c in context.cookies() if c["name"] == "pledge_consent"]
    value: str = json.loads(unquote(cookie["value"]))["consent_id"]
    return value


def ledger_of(servers: Servers, visitor: str) -> dict[str, tuple[Action, Method]]:
    """The visitor's latest action and method per purpose, as the ledger holds them."""
    events = ConsentLedger(servers.runtime.sessions).history(visitor)
    return {e.purpose: (e.action, e.method) for e in events}


def test_nothing_gated_runs_before_a_choice_and_a_refusal_keeps_it_so(
    servers: Servers, context: BrowserContext
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - absent means skipped

    page = visit(context, servers)
    dialog = page.get_by_role("dialog", name="Cookies on")
    expect(dialog).to_be_visible()
    assert activated(page) == set()
    # The keyboard reaches the choices: Tab from inside the banner to its Reject button.
    for _ in range(10):
        if page.evaluate(
            "document.querySelector('[data-pledge-banner]').shadowRoot.activeElement"
            "?.textContent === 'Reject non-essential'"
        ):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    assert activated(page) == set()

    choices = ledger_of(servers, consent_id(context))
    assert set(choices) == {"analytics.reporting", *ADVERTISING}
    assert set(choices.values()) == {(Action.WITHDRAW, Method.COOKIE_BANNER)}
    page.reload()
    page.wait_for_function("window.pledgeConsent !== undefined")
    page.evaluate("window.pledgeConsent.ready")
    expect(dialog).to_be_hidden()
    assert activated(page) == set()
    assert page.evaluate("[window.analyticsLoaded, window.adsLoaded]") == [None, None]
    assert "/analytics.js" not in servers.site.requested


def test_accepting_loads_the_tags_at_once_and_on_every_later_visit(
    servers: Servers, context: BrowserContext
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - absent means skipped

    page = visit(context, servers)
    assert activated(page) == set()
    page.get_by_role("button", name="Accept all").click()
    wait_until_loaded(page, "analytics", "advertising")
    expect(page.get_by_role("dialog")).to_be_hidden()
    assert set(ledger_of(servers, consent_id(context)).values()) == {
        (Action.GRANT, Method.COOKIE_BANNER)
    }

    again = visit(context, servers)
    assert activated(again) == {"analytics", "advertising"}
    expect(again.get_by_role("dialog")).to_have_count(0)
    wait_until_loaded(again, "analytics", "advertising")
    # The "Cookie choices" link reopens the banner, with the choice made.
    again.get_by_role("link", name="Cookie choices").click()
    expect(again.get_by_role("checkbox", name="Analytics")).to_be_checked()


def test_global_privacy_control_is_honored_and_advertising_never_loads(
    servers: Servers, browser: Browser
) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - absent means skipped

    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    )
    try:
        page = visit(context, servers)
        expect(page.get_by_text("Opt-out request honored")).to_be_visible()
        advertising = page.get_by_role("checkbox", name="Advertising")
        expect(advertising).to_be_disabled()
        expect(advertising).not_to_be_checked()
        page.get_by_role("button", name="Accept all").click()
        wait_until_loaded(page, "analytics")
        assert activated(page) == {"analytics"}
        choices = ledger_of(servers, consent_id(context))
        assert choices["analytics.reporting"] == (Action.GRANT, Method.COOKIE_BANNER)
        assert {choices[p] for p in ADVERTISING} == {(Action.WITHDRAW, Method.GPC)}
        assert activated(visit(context, servers)) == {"analytics"}
    finally:
        context.close()


def test_a_new_policy_version_asks_again(servers: Servers, context: BrowserContext) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - absent means skipped

    page = visit(context, servers)
    page.get_by_role("button", name="Accept all").click()
    wait_until_loaded(page, "analytics", "advertising")
    assert activated(visit(context, servers)) == {"analytics", "advertising"}

    in_force = current_version(servers.runtime.sessions)
    assert in_force is not None
    raw = yaml.safe_load(REFERENCE_POLICY.read_text())
    raw["version"] = in_force[0].version + ".1"
    raw["effective_date"] = dt.datetime.now(dt.UTC).date()
    raw["cookies"]["analytics"]["description"] = "Count visits, in aggregate only."
    publish_policy(
        servers.runtime.sessions,
        load_policy_text(yaml.safe_dump(raw, sort_keys=False)),
        published_by="tests",
    )

    asked = visit(context, servers)
    expect(asked.get_by_role("dialog")).to_be_visible()
    expect(asked.get_by_text("Count visits, in aggregate only.")).to_be_visible()
    assert activated(asked) == set()
    asked.get_by_role("button", name="Reject non-essential").click()
    expect(asked.get_by_role("dialog")).to_be_hidden()
    events = ConsentLedger(servers.runtime.sessions).history(consent_id(context))
    assert {e.policy_version for e in events} == {in_force[0].version, raw["version"]}
