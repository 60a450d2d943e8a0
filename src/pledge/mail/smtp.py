"""Handing messages to the SMTP server of the settings (the standard library's smtplib)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from pledge.config import Settings, SmtpSecurity


class SmtpRelay:
    """Sends each message over its own connection, protected as the settings say."""

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls_context = tls_context or ssl.create_default_context(cafile=settings.smtp_ca_file)

    def send(self, message: EmailMessage) -> None:
        """Deliver `message` to the server; raise (an `smtplib.SMTPException` or `OSError`) if the
        server did not accept it for every recipient."""
        s = self.settings
        client: smtplib.SMTP
        if s.smtp_security is SmtpSecurity.TLS:
            client = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=self.tls_context
            )
        else:
            client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        with client:
            if s.smtp_security is SmtpSecurity.STARTTLS:
                client.starttls(context=self.tls_context)
            if s.smtp_username and s.smtp_password:
                client.login(s.smtp_username, s.smtp_password.get_secret_value())
            refused = client.send_message(message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
