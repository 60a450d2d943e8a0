"""The SMTP relay against a real server (aiosmtpd): STARTTLS, implicit TLS, credentials."""

from __future__ import annotations

import datetime as dt
import ipaddress
import smtplib
import socket
import ssl
import time
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


class _PeerInbox(SmtpInbox):
    """An inbox that also notes the connection (client address and port) of each message, and
    refuses recipients whose address begins with "refused"."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[Any] = []

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, server: object, session: Any, envelope: Any
    ) -> str:
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
        self, _server: object, _session: object, envelope: Any, address: str, _options: Any
    ) -> str:
        if address.startswith("refused"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def plain_server() -> Iterator[tuple[_PeerInbox, int]]:
    """A server without TLS that keeps an idle connection for the default 5 minutes."""
    yield from _serve(timeout=300)


@pytest.fixture
def impatient_server() -> Iterator[tuple[_PeerInbox, int]]:
    """A server without TLS that hangs up on a connection idle for 0.3 s."""
    yield from _serve(timeout=0.3)


def _serve(timeout: float) -> Iterator[tuple[_PeerInbox, int]]:
    inbox, port = _PeerInbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, timeout=timeout)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _plain_relay(port: int, clock: Any = None, **settings: Any) -> SmtpRelay:
    options = {} if clock is None else {"clock": clock}
    return SmtpRelay(test_settings("sqlite://", smtp_port=port, **settings), **options)


def _to(n: int) -> Any:
    return transactional_message(
        sender="privacy@example.com", to=f"person{n}@example.com", subject_line="Hi", text="Hi."
    )


def test_messages_in_a_row_share_one_encrypted_connection(
    certificate: tuple[Path, Path],
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*certificate)
    inbox, port, logins = _PeerInbox(), _free_port(), []

    def authenticate(*args: Any) -> AuthResult:
        logins.append(1)
        return _authenticate(*args)

    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_required=True,
        tls_context=server_context,
        require_starttls=True,
    )
    controller.start()
    try:
        relay = _relay(port, SmtpSecurity.STARTTLS, certificate[0])
        for n in range(3):
            relay.send(_to(n))
        relay.close()
    finally:
        controller.stop()
    assert [m["To"] for m in inbox.messages] == [f"person{n}@example.com" for n in range(3)]
    assert len(set(inbox.peers)) == 1, "one connection, one TLS negotiation"
    assert len(logins) == 1, "one login"


def test_a_connection_the_server_hung_up_is_replaced_and_the_message_goes_once(
    impatient_server: tuple[_PeerInbox, int],
) -> None:
    inbox, port = impatient_server
    relay = _plain_relay(port)
    relay.send(_to(1))
    time.sleep(0.6)  # the server hangs up on the idle connection after 0.3 s
    relay.send(_to(2))
    assert [m["To"] for m in inbox.messages] == ["person1@example.com", "person2@example.com"]
    assert len(set(inbox.peers)) == 2
    relay.close()


def test_a_connection_idle_longer_than_the_setting_is_closed_not_used(
    plain_server: tuple[_PeerInbox, int],
) -> None:
    inbox, port = plain_server
    now = [100.0]
    relay = _plain_relay(port, clock=lambda: now[0], smtp_keep_open_seconds=5)
    relay.send(_to(1))
    now[0] += 4
    relay.send(_to(2))
    now[0] += 6
    relay.send(_to(3))
    first, second, third = inbox.peers
    assert first == second != third
    assert relay.idle_connections == 1
    relay.close()
    assert relay.idle_connections == 0


def test_with_the_setting_at_zero_each_message_has_its_own_connection(
    plain_server: tuple[_PeerInbox, int],
) -> None:
    inbox, port = plain_server
    relay = _plain_relay(port, smtp_keep_open_seconds=0)
    for n in range(3):
        relay.send(_to(n))
    assert len(inbox.messages) == 3
    assert len(set(inbox.peers)) == 3
    assert relay.idle_connections == 0


def test_a_refused_message_drops_its_connection_and_is_not_sent_again(
    plain_server: tuple[_PeerInbox, int],
) -> None:
    inbox, port = plain_server
    relay = _plain_relay(port)
    relay.send(_to(1))
    bad = _to(2)
    del bad["To"]
    bad["To"] = "refused@example.com"
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        relay.send(bad)
    assert relay.idle_connections == 0
    relay.send(_to(3))
    assert [m["To"] for m in inbox.messages] == ["person1@example.com", "person3@example.com"]
    relay.close()


def test_a_message_refused_for_one_of_its_recipients_fails_and_drops_its_connection(
    plain_server: tuple[_PeerInbox, int],
) -> None:
    inbox, port = plain_server
    relay = _plain_relay(port)
    relay.send(_to(1))
    partly = _to(2)
    partly["Cc"] = "refused@example.com"
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        relay.send(partly)
    assert relay.idle_connections == 0
    relay.send(_to(3))
    assert len(set(inbox.peers)) == 2
    relay.close()
