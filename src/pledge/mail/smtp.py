"""Handing messages to the SMTP server of the settings (the standard library's smtplib)."""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from pledge.config import Settings, SmtpSecurity

MESSAGES_PER_CONNECTION = 100
"""Messages sent over one connection before it is closed and a new one opened (servers may cap
how many one session carries)."""


@dataclass
class _Connection:
    client: smtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


class SmtpRelay:
    """Sends messages to the SMTP server, protected as the settings say, reusing connections.

    A connection that carried a message waits, idle, for the next one (each sender takes one,
    so there are at most as many as messages sent at once): a busy worker pays the handshake
    and the TLS negotiation once, not per message. One idle longer than
    `smtp_keep_open_seconds` is closed instead of used. Before an idle connection carries a
    message, a NOOP checks that the server still holds it; if not, the message goes over a new
    one. A message whose sending failed is never sent again here: its connection is dropped,
    and the job's next attempt decides."""

    def __init__(
        self,
        settings: Settings,
        *,
        tls_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.tls_context = tls_context or ssl.create_default_context(cafile=settings.smtp_ca_file)
        self.clock = clock
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        # Connections still idle when the relay is dropped are closed with it (no goodbye).
        weakref.finalize(self, _close_all, self._idle, self._lock, goodbye=False)

    def send(self, message: EmailMessage) -> None:
        """Deliver `message` to the server; raise (an `smtplib.SMTPException` or `OSError`) if the
        server did not accept it for every recipient."""
        connection = self._reusable() or _Connection(self._connect())
        try:
            refused = connection.client.send_message(message)
        except BaseException:
            connection.client.close()
            raise
        if refused:  # accepted for some recipients only: a failure all the same
            connection.client.close()
            raise smtplib.SMTPRecipientsRefused(refused)
        connection.sent += 1
        if self.settings.smtp_keep_open_seconds <= 0 or connection.sent >= MESSAGES_PER_CONNECTION:
            _quit(connection.client)
            return
        connection.idle_since = self.clock()
        with self._lock:
            self._idle.append(connection)

    def close(self) -> None:
        """Close the idle connections (the server is told goodbye)."""
        _close_all(self._idle, self._lock)

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for a message."""
        with self._lock:
            return len(self._idle)

    def _reusable(self) -> _Connection | None:
        """The most recently used idle connection that may carry one more message and that the
        server still answers on; None if there is none. Stale ones are closed on the way."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if self.clock() - connection.idle_since > self.settings.smtp_keep_open_seconds:
                connection.client.close()  # the server may have gone: no goodbye to wait on
                continue
            try:
                code, _ = connection.client.noop()
            except (smtplib.SMTPException, OSError):
                code = 0
            if code == 250:
                return connection
            connection.client.close()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        client: smtplib.SMTP
        if s.smtp_security is SmtpSecurity.TLS:
            client = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=self.tls_context
            )
        else:
            client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            if s.smtp_security is SmtpSecurity.STARTTLS:
                client.starttls(context=self.tls_context)
            if s.smtp_username and s.smtp_password:
                client.login(s.smtp_username, s.smtp_password.get_secret_value())
        except BaseException:
            client.close()
            raise
        return client


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _close_all(idle: list[_Connection], lock: threading.Lock, *, goodbye: bool = True) -> None:
    """Close the idle connections: with a QUIT, or (`goodbye=False`) at once."""
    with lock:
        connections = idle[:]
        idle.clear()
    for connection in connections:
        if goodbye:
            _quit(connection.client)
        else:
            connection.client.close()
