"""The SMTP relay against a real server (aiosmtpd): STARTTLS, implicit TLS, credentials."""

from __future__ import annotations

import datetime as dt
import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pledge.config import SmtpSecurity
from pledge.mail import SmtpRelay
from pledge.mail.rules import transactional_message
from tests.conftest import SmtpInbox, test_settings

USER, PASSWORD = "pledge", "smtp-secret"

# aiosmtpd warns that AUTH without STARTTLS is unsafe; with implicit TLS the whole connection
# is encrypted, which it cannot see.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: its PEM file and its key's."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pledge test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _authenticate(
    _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(params=[SmtpSecurity.STARTTLS, SmtpSecurity.TLS])
def secure_server(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[SmtpInbox, int, SmtpSecurity]]:
    security: SmtpSecurity = request.param
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*certificate)
    inbox, port = SmtpInbox(), _free_port()
    options: dict[str, Any] = {"authenticator": _authenticate, "auth_required": True}
    if security is SmtpSecurity.STARTTLS:
        options |= {"tls_context": server_context, "require_starttls": True}
    else:
        # Implicit TLS: the whole connection is encrypted, which aiosmtpd cannot see itself.
        options |= {"ssl_context": server_context, "auth_require_tls": False}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox, port, security
    finally:
        controller.stop()


def _relay(
    port: int, security: SmtpSecurity, ca: Path | None, password: str = PASSWORD
) -> SmtpRelay:
    settings = test_settings(
        "sqlite://",
        smtp_port=port,
        smtp_security=security,
        smtp_username=USER,
        smtp_password=password,
        smtp_ca_file=ca,
    )
    return SmtpRelay(settings)


def _message() -> Any:
    return transactional_message(
        sender="privacy@example.com", to="someone@example.com", subject_line="Hi", text="Hello."
    )


def test_mail_goes_out_encrypted_and_authenticated(
    secure_server: tuple[SmtpInbox, int, SmtpSecurity], certificate: tuple[Path, Path]
) -> None:
    inbox, port, security = secure_server
    _relay(port, security, certificate[0]).send(_message())
    assert [m["To"] for m in inbox.messages] == ["someone@example.com"]


def test_a_wrong_password_is_refused_and_nothing_is_sent(
    secure_server: tuple[SmtpInbox, int, SmtpSecurity], certificate: tuple[Path, Path]
) -> None:
    inbox, port, security = secure_server
    with pytest.raises(smtplib.SMTPAuthenticationError):
        _relay(port, security, certificate[0], password="wrong").send(_message())
    assert inbox.messages == []


def test_a_server_certificate_nobody_vouches_for_is_refused(
    secure_server: tuple[SmtpInbox, int, SmtpSecurity],
) -> None:
    inbox, port, security = secure_server
    with pytest.raises(ssl.SSLCertVerificationError):
        _relay(port, security, ca=None).send(_message())  # the system's CAs only
    assert inbox.messages == []
