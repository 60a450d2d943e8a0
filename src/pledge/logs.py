"""Pledge's log lines: configured once, never carrying a personal value or an IP address.

Code never passes personal values to a logger; the redaction filter here is the second line
of defense for values that slip into a message anyway (an exception text, a library's line).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PATTERNS = (
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<ip>"),
    (re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b"), "<ip>"),
    (re.compile(r"(?<![\w-])\+?\d[\d ().-]{7,}\d(?![\w-])"), "<number>"),
)


def redact(text: str) -> str:
    """`text` with e-mail addresses, IP addresses and phone- or card-like numbers masked."""
    for pattern, mask in _PATTERNS:
        text = pattern.sub(mask, text)
    return text


class RedactPersonalData(logging.Filter):
    """Rewrites each record's message through `redact` before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message (and exception text) in place; never drop a record."""
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(level: str) -> None:
    """Send Pledge's and the server's log lines to stderr through the redaction filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactPersonalData())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server_log = logging.getLogger(name)
        server_log.handlers[:] = []
        server_log.propagate = True
    # The server's own access log prints the client address; Pledge writes its own instead.
    logging.getLogger("uvicorn.access").disabled = True


access_log = logging.getLogger("pledge.access")


class AccessLog:
    """ASGI middleware writing one line per request: method, path, status, time. No IP, no query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and log it once the response has started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        wrapped: Callable[[Message], Awaitable[None]] = remember_status
        try:
            await self.app(scope, receive, wrapped)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            access_log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed)
