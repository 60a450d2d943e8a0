"""What the browser tests share: Pledge served on a port of its own, and Debian's Chromium.

Chromium missing is a skip with a message on a laptop and a failure under CI=true."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import uvicorn

from pledge.app import Services, create_app
from pledge.db import create_database_engine
from pledge.migrations import upgrade_database
from pledge.runtime import Runtime
from tests.conftest import FreshDatabases, SmtpInbox, test_settings
from tests.e2e.test_cookie_banner_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _browser_or_skip,
    _free_port,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@dataclass
class Pledge:
    url: str
    services: Services


@pytest.fixture
def pledge(fresh_databases: FreshDatabases, smtp_inbox: tuple[SmtpInbox, int]) -> Iterator[Pledge]:
    """Pledge served on a port of its own, `PLEDGE_PUBLIC_URL` its address."""
    _browser_or_skip()
    url = f"http://127.0.0.1:{_free_port()}"
    database_url = fresh_databases.new()
    engine = create_database_engine(database_url)
    upgrade_database(engine)
    engine.dispose()
    settings = test_settings(
        database_url, keystore_url=fresh_databases.new(), public_url=url, smtp_port=smtp_inbox[1]
    )
    runtime = Runtime.build(settings)
    app = create_app(settings, runtime)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
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
    yield Pledge(url, app.state.services)
    server.should_exit = True
    thread.join(10)
    runtime.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - absent means skipped

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
