"""Pledge's one Settings object, built once at the composition root and passed down."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REFERENCE_POLICY = Path(__file__).parent / "reference" / "reference.yaml"
"""The reference customer's policy, shipped in the package so `pledge demo` needs no checkout."""

PLACEHOLDER_PREFIX = "development-only"
"""Secrets starting with this are placeholders: accepted in development, refused elsewhere."""


class Environment(enum.StrEnum):
    """Where Pledge runs; only `development` accepts placeholder secrets."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


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
    """The address people reach Pledge at; used in generated links and in the rendered policy."""

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
        return self
