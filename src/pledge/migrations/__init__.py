"""Pledge's schema migrations (Alembic, batch mode so each one also runs on SQLite)."""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData

from pledge.db import Base

TABLE_MODULES = (
    "pledge.policy.tables",
    "pledge.audit.tables",
    "pledge.apikeys.tables",
    "pledge.vault.tables",
    "pledge.consent.tables",
    "pledge.jobs.tables",
    "pledge.mail.tables",
    "pledge.privacy_center.tables",
    "pledge.requests.tables",
    "pledge.staff.tables",
    "pledge.children.tables",
)
"""Every module that declares tables; the metadata Alembic compares against imports them all."""


def metadata() -> MetaData:
    """The complete MetaData of Pledge's tables."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    return Base.metadata


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration bound to `engine`, with the scripts shipped in this package."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision`."""
    command.upgrade(alembic_config(engine), revision)


def downgrade_database(engine: Engine, revision: str) -> None:
    """Take the schema back down to `revision` (`base` for an empty database)."""
    command.downgrade(alembic_config(engine), revision)


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head
