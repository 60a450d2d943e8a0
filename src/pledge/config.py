"""Pledge's one Settings object, built once at the composition root and passed down."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

REFERENCE_POLICY = Path(__file__).parent / "reference" / "reference.yaml"
"""The reference customer's policy, shipped in the package so `pledge demo` needs no checkout."""

PLACEHOLDER_PREFIX = "development-only"
"""Secrets starting with this are placeholders: accepted in development, refused elsewhere."""


class Environment(enum.StrEnum):
    """Where Pledge runs; only `development` accepts placeholder secrets."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class KeyProviderKind(enum.StrEnum):
    """Where the master key lives."""

    LOCAL = "local"
    PKCS11 = "pkcs11"


class SmtpSecurity(enum.StrEnum):
    """How the SMTP connection is protected."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class Settings(BaseSettings):
    """Every setting Pledge reads, from `PLEDGE_*` environment variables or a `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix="PLEDGE_",
        env_file=".env",
        extra="ignore",
        use_attribute_docstrings=True,
        frozen=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    """`development` (the default, for a laptop), `test`, or `production`. Outside development,
    placeholder secrets are refused at start."""

    database_url: str = "sqlite:///pledge.db"
    """SQLAlchemy URL of Pledge's own database. The default is a SQLite file `pledge.db` in the
    working directory; production uses `postgresql+psycopg://user@host/dbname`."""

    policy_file: Path = REFERENCE_POLICY
    """The policy file the server validates at start and publishes when no version is stored yet.
    Defaults to the reference policy shipped with Pledge."""

    secret_key: SecretStr = SecretStr(f"{PLACEHOLDER_PREFIX}-secret-key")
    """Key for signing cookies and links. Generate one with `python -c "import secrets;
    print(secrets.token_urlsafe(32))"`; the placeholder default is refused outside development."""

    auto_migrate: bool = True
    """Whether `pledge serve` upgrades the database schema before serving. Turn it off when
    several processes start together and run `pledge db upgrade` once instead."""

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    """Level of Pledge's own log lines. No level ever writes a personal value or an IP address."""

    public_url: str = "http://127.0.0.1:8000"
    """The address people reach Pledge at; used in generated links and in the rendered policy.
    Its origin is the only one from which a browser may post the privacy center's forms."""

    banner_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] = Field(
        default_factory=list
    )
    """Sites allowed to call the cookie banner's routes from their pages (CORS), each as an
    origin such as `https://www.example.com` (no path, no trailing slash), given as a JSON list.
    Empty (the default): only pages served by Pledge itself may."""

    keystore_url: str = "sqlite:///pledge-keys.db"
    """SQLAlchemy URL of the key store holding the wrapped per-subject data keys. It is a separate
    database from `PLEDGE_DATABASE_URL` on purpose: erasing a subject destroys its key here, so a
    copy of the main database restored later stays unreadable. Back it up on its own, briefly."""

    key_provider: KeyProviderKind = KeyProviderKind.LOCAL
    """Where the master key that wraps data keys lives: `local` (a key file, the embedded default)
    or `pkcs11` (a hardware or software token; the key never leaves it)."""

    master_key_file: Path = Path("pledge-master.key")
    """The local provider's key file, created with mode 0600 on first start."""

    pkcs11_library: Path | None = None
    """Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`), for `pkcs11`."""

    pkcs11_token_label: str | None = None
    """Label of the PKCS#11 token holding the master and blind-index keys."""

    pkcs11_pin: SecretStr | None = None
    """User PIN of the PKCS#11 token."""

    pkcs11_key_label: str = "pledge-master"
    """Prefix of the token's key labels: `<prefix>-<n>` master keys, `<prefix>-index` HMAC key."""

    jobs_url: str = "sqlite:///pledge-jobs.db"
    """Where background jobs are queued: `sqlite:///path` (a file, the embedded default: jobs
    survive a restart) or `redis://host:6379/0` (production, with several `pledge worker`
    processes). Either way each job's durable record is a row in Pledge's own database."""

    jobs_workers: int = Field(default=2, ge=1, le=64)
    """Worker threads in each `pledge worker` process."""

    jobs_max_attempts: int = Field(default=8, ge=1, le=100)
    """Attempts before a job is marked failed and left for staff
    (`pledge jobs list --status failed`)."""

    jobs_first_retry_seconds: float = Field(default=30.0, ge=0)
    """Wait before a failed job's second attempt; each later wait doubles, up to an hour."""

    jobs_lease_seconds: float = Field(default=300.0, gt=0)
    """How long a worker may run one attempt; past it the worker is presumed dead and the job
    runs again on another."""

    smtp_host: str = "127.0.0.1"
    """SMTP server that delivers Pledge's mail (transactional and marketing)."""

    smtp_port: int = Field(default=1025, ge=1, le=65535)
    """SMTP port: 587 with `starttls`, 465 with `tls`. The default 1025 suits a local test server
    (`python -m aiosmtpd -n -l 127.0.0.1:1025` prints what it receives)."""

    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    """`starttls`, `tls` (implicit TLS) or `none`. Outside development, `none` is accepted only
    for a server on the same machine."""

    smtp_username: str | None = None
    """SMTP login, if the server asks for one."""

    smtp_password: SecretStr | None = None
    """SMTP password, with `PLEDGE_SMTP_USERNAME`."""

    smtp_ca_file: Path | None = None
    """CA certificates (PEM) to trust for the SMTP server, when its certificate is not signed by
    one the system trusts."""

    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    """Longest wait for the SMTP server; a timeout fails the attempt, and the job retries."""

    smtp_keep_open_seconds: float = Field(default=10.0, ge=0)
    """A job thread's SMTP connection carries its next message if that comes within this many
    seconds of the last (no second handshake or TLS negotiation); one idle longer is closed
    first. 0 opens a connection per message."""

    mail_from: str = "Pledge <privacy@localhost>"
    """The From of every message Pledge sends."""

    unsubscribe_link_days: int = Field(default=60, ge=30, le=3650)
    """How long a marketing message's unsubscribe link keeps working (at least 30 days)."""

    parental_payment_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    """Your payment service's page where a parent's card transaction verifies their consent; it
    reports back with `POST /v1/parental-consents/{id}/verifications`. None: not offered."""

    parental_kba_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    """Your identity service's page of knowledge-based questions for parents; it reports back
    likewise. None: not offered."""

    datasets_file: Path | None = None
    """The connected-databases file (docs/datasets.md): external tables that access, correction
    and deletion requests reach. None: requests reach Pledge's vault only."""

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.environment is not Environment.DEVELOPMENT:
            for name in ("secret_key",):
                value: SecretStr = getattr(self, name)
                if value.get_secret_value().startswith(PLACEHOLDER_PREFIX):
                    raise ValueError(
                        f"PLEDGE_{name.upper()} still holds the development placeholder; "
                        f"set a real secret when PLEDGE_ENVIRONMENT={self.environment.value}"
                    )
        if _same_database(self.keystore_url, self.database_url):
            raise ValueError(
                "PLEDGE_KEYSTORE_URL must name another database than PLEDGE_DATABASE_URL: "
                "erasure relies on keys never being in a copy of the main database"
            )
        if (
            self.environment is not Environment.DEVELOPMENT
            and self.smtp_security is SmtpSecurity.NONE
            and self.smtp_host not in {"127.0.0.1", "::1", "localhost"}
        ):
            raise ValueError(
                "PLEDGE_SMTP_SECURITY=none sends mail in clear text: outside development it is "
                "accepted only for an SMTP server on this machine; use starttls or tls"
            )
        if self.environment is Environment.PRODUCTION and not self.public_url.startswith(
            "https://"
        ):
            raise ValueError(
                "PLEDGE_PUBLIC_URL must be an https:// address in production: unsubscribe and "
                "privacy-center links are built from it"
            )
        if self.key_provider is KeyProviderKind.PKCS11 and not (
            self.pkcs11_library and self.pkcs11_token_label and self.pkcs11_pin
        ):
            raise ValueError(
                "PLEDGE_KEY_PROVIDER=pkcs11 needs PLEDGE_PKCS11_LIBRARY, PLEDGE_PKCS11_TOKEN_LABEL "
                "and PLEDGE_PKCS11_PIN"
            )
        return self


def _same_database(first: str, second: str) -> bool:
    """Whether two URLs name one database (SQLite paths compared once resolved)."""
    a, b = make_url(first), make_url(second)
    if a.get_backend_name() == b.get_backend_name() == "sqlite":
        if not a.database or not b.database or ":memory:" in (a.database, b.database):
            return False
        return Path(a.database).resolve() == Path(b.database).resolve()
    return (a.host, a.port, a.database) == (b.host, b.port, b.database)
