"""Pledge's database: the engine, the shared MetaData, the unit of work and group commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

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


Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

log = logging.getLogger(__name__)


class GroupCommit(Generic[Item, Outcome]):
    """Group commit: units of work submitted from many requests at once share one transaction.

    One writer thread takes every item queued while the previous batch was committing and
    hands them, in order, to `run_batch`, which runs them in one transaction and returns each
    item's outcome: a result, or the exception that refused that item alone. Each submitter's
    future completes only after its batch has committed, so nothing is acknowledged before it
    is durable, and concurrent writers share one commit (one fsync) instead of queueing for
    one each. Alone, an item is a batch of one: no waiting for company.

    `run_batch` must raise only when nothing of the batch was committed; then each item is run
    again in a batch of its own, so one bad item cannot fail the others. An unknown outcome
    (the commit itself failed) must be returned as every item's exception, never raised. The
    thread starts on the first submission and ends after `idle` seconds with nothing to do.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Outcome | Exception]],
        *,
        name: str,
        max_batch: int = 100,
        idle: float = 5.0,
    ) -> None:
        self.run_batch = run_batch
        self.name = name
        self.max_batch = max_batch
        self.idle = idle
        self._queue: list[tuple[Item, Future[Outcome]]] = []
        self._wakeup = threading.Condition()
        self._running = False

    def submit(self, item: Item) -> Future[Outcome]:
        """Queue `item`; its future completes once its batch has committed (or failed). A
        future cancelled before its batch starts is left out of it."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[Item]) -> list[Future[Outcome]]:
        """Queue `items` together, in order: they share a batch when no more than `max_batch`
        items wait."""
        futures: list[Future[Outcome]] = [Future() for _ in items]
        with self._wakeup:
            self._queue.extend(zip(items, futures, strict=True))
            if self._running:
                self._wakeup.notify()
            else:
                self._running = True
                threading.Thread(target=self._serve, name=self.name, daemon=True).start()
        return futures

    def _serve(self) -> None:
        batch: list[tuple[Item, Future[Outcome]]] = []
        try:
            while True:
                with self._wakeup:
                    if not self._queue:
                        self._wakeup.wait(self.idle)
                    if not self._queue:
                        self._running = False
                        return
                    taken = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                batch = [(item, f) for item, f in taken if f.set_running_or_notify_cancel()]
                if batch:
                    self._commit(batch)
                batch = []
        except BaseException as stopped:
            # Not expected (`_commit` answers every Exception); let the next submission start
            # a new thread, and leave no caller of this batch waiting forever.
            with self._wakeup:
                self._running = False
            for _, future in batch:
                if not future.done():
                    future.set_exception(stopped)
            raise

    def _commit(self, batch: list[tuple[Item, Future[Outcome]]]) -> None:
        try:
            outcomes = self.run_batch([item for item, _ in batch])
        except Exception as failure:  # noqa: BLE001 - whatever it was, nothing was committed
            if len(batch) > 1:
                log.warning("%s: a batch of %d failed; each item runs alone", self.name, len(batch))
                for one in batch:
                    self._commit([one])
                return
            outcomes = [failure]
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
