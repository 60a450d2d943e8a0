"""Settings: typed, documented, and refusing placeholder secrets outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pledge.config import Environment, Settings

OPERATIONS_DOC = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


@pytest.mark.parametrize("environment", [Environment.TEST, Environment.PRODUCTION])
def test_a_placeholder_secret_is_refused_outside_development(environment: Environment) -> None:
    with pytest.raises(
        ValidationError, match="PLEDGE_SECRET_KEY still holds the development placeholder"
    ):
        Settings(_env_file=None, environment=environment)  # type: ignore[call-arg]


def test_development_starts_with_the_placeholder_so_a_laptop_needs_no_setup() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.database_url == "sqlite:///pledge.db"


def test_settings_are_read_from_pledge_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLEDGE_DATABASE_URL", "postgresql+psycopg://pledge@db/pledge")
    monkeypatch.setenv("PLEDGE_ENVIRONMENT", "production")
    monkeypatch.setenv("PLEDGE_SECRET_KEY", "a-real-secret-from-the-vault")
    monkeypatch.setenv("PLEDGE_PUBLIC_URL", "https://privacy.example.com")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql+psycopg://pledge@db/pledge"
    assert settings.secret_key.get_secret_value() == "a-real-secret-from-the-vault"
    assert "a-real-secret" not in repr(settings)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_has_a_docstring_and_a_row_in_the_operations_doc(name: str) -> None:
    assert Settings.model_fields[name].description, f"{name} has no docstring"
    assert f"`PLEDGE_{name.upper()}`" in OPERATIONS_DOC.read_text(), (
        f"PLEDGE_{name.upper()} undocumented"
    )


def test_the_key_store_may_not_be_the_main_database() -> None:
    with pytest.raises(ValidationError, match="PLEDGE_KEYSTORE_URL must name another database"):
        Settings(_env_file=None, database_url="sqlite:///one.db", keystore_url="sqlite:///one.db")  # type: ignore[call-arg]


def test_two_spellings_of_one_sqlite_file_are_one_database(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="PLEDGE_KEYSTORE_URL must name another database"):
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite:///{tmp_path}/pledge.db",
            keystore_url=f"sqlite:///{tmp_path}/./sub/../pledge.db",
        )


REAL_SECRET = {"secret_key": "a-real-secret-from-the-vault"}


def test_production_refuses_links_that_are_not_https() -> None:
    with pytest.raises(ValidationError, match="PLEDGE_PUBLIC_URL must be an https:// address"):
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            environment=Environment.PRODUCTION,
            public_url="http://privacy.example.com",
            **REAL_SECRET,
        )


def test_outside_development_clear_text_smtp_is_refused_unless_the_server_is_local() -> None:
    with pytest.raises(ValidationError, match="PLEDGE_SMTP_SECURITY=none sends mail in clear"):
        Settings(
            _env_file=None,
            environment=Environment.TEST,
            smtp_host="smtp.example.com",
            **REAL_SECRET,
        )  # type: ignore[call-arg]
    local = Settings(_env_file=None, environment=Environment.TEST, **REAL_SECRET)  # type: ignore[call-arg]
    assert local.smtp_host == "127.0.0.1"
    tls = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment=Environment.TEST,
        smtp_host="smtp.example.com",
        smtp_security="starttls",
        **REAL_SECRET,
    )
    assert tls.smtp_security.value == "starttls"


def test_an_unsubscribe_link_lives_at_least_30_days() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 30"):
        Settings(_env_file=None, unsubscribe_link_days=29)  # type: ignore[call-arg]
