"""The migrations and the models agree, on every backend, both ways."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from pledge.db import create_database_engine
from pledge.migrations import downgrade_database, metadata, schema_is_current, upgrade_database


def test_the_migrated_schema_matches_the_models_exactly(empty_database_url: str) -> None:
    engine = create_database_engine(empty_database_url)
    upgrade_database(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata())
    engine.dispose()
    assert differences == [], f"models and migrations disagree: {differences}"


def test_every_migration_downgrades_to_an_empty_database_and_back(empty_database_url: str) -> None:
    engine = create_database_engine(empty_database_url)
    upgrade_database(engine)
    assert schema_is_current(engine)
    downgrade_database(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert not schema_is_current(engine)
    upgrade_database(engine)
    assert schema_is_current(engine)
    engine.dispose()
