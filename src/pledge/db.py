"""Pledge's database: the engine, the shared MetaData, and the unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every table; each capability package declares its own tables on it."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Pledge, not the driver, decides when transactions begin (see _begin_immediately).
    dbapi_connection.isolation_level = None
    # WAL lets readers run beside the one writer; synchronous=FULL makes a commit durable
    # before it is acknowledged (NORMAL could lose the last commits on power loss).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _begin_immediately(connection: Connection) -> None:
    # The sqlite3 driver would begin lazily, at the first write: savepoints then commit for
    # real, and two threads that both read before writing deadlock on the lock upgrade.
    # Taking the write lock at BEGIN serializes writers cleanly (busy_timeout waits).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def create_database_engine(url: str, *, sqlite_write_lock_at_begin: bool = True) -> Engine:
    """Build the engine for `url`, with SQLite tuned for durable, concurrent use.

    On SQLite every transaction takes the write lock when it begins, so concurrent requests
    queue instead of failing. Tests that hold one transaction open for a whole test turn
    that off (`sqlite_write_lock_at_begin=False`) so other connections can still read.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _tune_sqlite)
        begin = _begin_immediately if sqlite_write_lock_at_begin else _begin_deferred
        event.listen(engine, "begin", begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with sessions() as session, session.begin():
        yield session
