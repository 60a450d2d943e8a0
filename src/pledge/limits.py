"""Limits on what one HTTP request may carry (documented in docs/api.md)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest request body accepted: a full batch of 1,000 ordinary submissions fits."""


class BodyTooLarge(Exception):
    """The request body passed the limit while it was being read."""


class BodyLimit:
    """ASGI middleware answering 413 to a body over `MAX_BODY_BYTES`, before any handler runs."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_limit = limit
        self.larger = larger or {}
        """Paths allowed a larger body (the audience filter), with their own limit; a key
        ending in `/` covers every path under it."""

    def _limit_of(self, path: str) -> int:
        if path in self.larger:
            return self.larger[path]
        for prefix, size in self.larger.items():
            if prefix.endswith("/") and path.startswith(prefix):
                return size
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse by Content-Length at once, or count a streamed body as it arrives."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.larger.get(path) or next(
            (
                size
                for prefix, size in self.larger.items()
                if prefix.endswith("/") and path.startswith(prefix)
            ),
            self.default_limit,
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps({"detail": f"the request body is larger than {limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
