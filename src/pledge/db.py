"""Pledge's database: the engine, the shared MetaData, the unit of work and group commit."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
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
    # Taking the write lock at BEGIN serializes writers cleanly (busy_timeout waits). A
    # transaction declared as only reading (`reading`) reads a snapshot beside the writer.
    if connection.get_execution_options().get(_READING):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


_READING = "pledge_reading"


@contextmanager
def reading(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that only reads: on SQLite it does not wait for, or hold up, the one
    writer (WAL gives it a snapshot); elsewhere it is an ordinary transaction. Writing in it
    fails on SQLite when another transaction writes at the same time."""
    with sessions() as session, session.begin():
        session.connection(execution_options={_READING: True})
        yield session


def _begin_deferred(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def create_database_engine(url: str, *, sqlite_write_lock_at_begin: bool = True) -> Engine:
    """Build the engine for `url`, with SQLite tuned for durable, concurrent use.

    On SQLite every transaction takes the write lock when it begins, so concurrent requests
    queue instead of failing. Tests that hold one transaction open for a whole test turn
    that off (`sqlite_write_lock_at_begin=False`) so other connections can still read.
    """
    if url.startswith("sqlite"):
        # A database in memory has one connection per thread: no pool order to choose.
        database = make_url(url).database
        in_memory = not database or database == ":memory:" or "mode=memory" in url
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            **({} if in_memory else {"pool_use_lifo": True}),
        )
        event.listen(engine, "connect", _tune_sqlite)
        begin = _begin_immediately if sqlite_write_lock_at_begin else _begin_deferred
        event.listen(engine, "begin", begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_use_lifo=True)


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


class BatchFailed(Exception):
    """Raised by a group commit's `run_batch`, chained from the failure (`raise BatchFailed()
    from failure`), when the failure is no item's doing: the database was unreachable, or the
    policy could not be read, before any item ran. Every item of the batch then fails with
    (a copy of) the failure, and none runs again."""


class GroupCommitClosed(RuntimeError):
    """The group commit was shut down: the item was not committed, and will not be."""


def blames_no_item(failure: BaseException) -> bool:
    """Whether a batch's failure is the database's rather than any item's: a lost or refused
    connection, a lock or statement timeout, a deadlock. Running the items again, alone or in
    halves, would only meet it again (or make it worse), so the whole batch fails with it."""
    return isinstance(
        failure,
        BatchFailed
        | OperationalError
        | InterfaceError
        | DisconnectionError
        | sqlalchemy.exc.TimeoutError
        | TimeoutError
        | ConnectionError,
    )


def own_copy(failure: Exception) -> Exception:
    """A new exception of the same type and arguments as `failure`, caused by it.

    An exception instance is raised in one place only: raising it again (in each of the tasks
    waiting on one batch) would grow its traceback and rewrite its context in every one of them.
    The copy is made without calling the type's `__init__` (whose signature may differ from
    its `args`); a type that cannot be copied that way is wrapped in a `RuntimeError`."""
    kind = type(failure)
    try:
        copied: Exception = kind.__new__(kind, *failure.args)
        copied.args = failure.args
        copied.__dict__.update(failure.__dict__)
    except Exception:  # noqa: BLE001 - an exotic exception type: say what it was instead
        copied = RuntimeError(f"{kind.__name__}: {failure}")
    copied.__cause__ = failure
    return copied


class GroupCommit(Generic[Item, Outcome]):
    """Group commit: units of work submitted from many requests at once share one transaction.

    One writer thread takes every item queued while the previous batch was committing and
    hands them, in order, to `run_batch`, which runs them in one transaction and returns each
    item's outcome: a result, or the exception that refused that item alone. Each submitter's
    future completes only after its batch has committed, so nothing is acknowledged before it
    is durable, and concurrent writers share one commit (one fsync) instead of queueing for
    one each. Alone, an item is a batch of one: no waiting for company.

    `run_batch` must raise only when nothing of the batch was committed. A failure that blames
    no item (`blames_no_item`: the database unreachable, a lock timeout, or `BatchFailed`
    raised by `run_batch`) fails every item of the batch with it. Any other failure may be one
    item's doing: the batch is cut in halves, each run again on its own, down to the item that
    fails alone, so one bad item among n costs about 2 log2(n) more batches and never fails the
    others. An unknown outcome (the commit itself failed) must be returned as every item's
    exception, never raised. Each waiting caller gets an exception of its own (`own_copy`),
    never one instance shared between tasks.

    The thread starts on the first submission and ends after `idle` seconds with nothing to do.
    `close` drains the queue at shutdown: what waits is committed, and what cannot be in time
    fails with `GroupCommitClosed`; nothing is accepted after it.
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
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, item: Item) -> Future[Outcome]:
        """Queue `item`; its future completes once its batch has committed (or failed). A
        future cancelled before its batch starts is left out of it."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[Item]) -> list[Future[Outcome]]:
        """Queue `items` together, in order: they share a batch when no more than `max_batch`
        items wait. `GroupCommitClosed` once `close` was called."""
        futures: list[Future[Outcome]] = [Future() for _ in items]
        with self._wakeup:
            if self._closed:
                raise GroupCommitClosed(f"{self.name} is shut down: nothing more is committed")
            self._queue.extend(zip(items, futures, strict=True))
            if self._running:
                self._wakeup.notify()
            else:
                self._running = True
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
        return futures

    def close(self, timeout: float = 30.0) -> int:
        """Shut down: refuse new items, commit the ones waiting, and fail those still waiting
        after `timeout` seconds with `GroupCommitClosed`; how many failed so. A batch running
        when the time runs out goes on to its end (its outcome is not ours to invent): its
        callers are answered by it."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._wakeup:
            abandoned = self._queue[:]
            self._queue.clear()
        failed = 0
        for _, future in abandoned:
            if future.set_running_or_notify_cancel():
                future.set_exception(
                    GroupCommitClosed(f"{self.name} shut down before this item was committed")
                )
                failed += 1
        if failed:
            log.warning("%s: shut down with %d items not committed", self.name, failed)
        return failed

    def _serve(self) -> None:
        batch: list[tuple[Item, Future[Outcome]]] = []
        try:
            while True:
                with self._wakeup:
                    if not self._queue and not self._closed:
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
            outcomes: Sequence[Outcome | Exception] = self.run_batch([item for item, _ in batch])
        except Exception as failure:  # noqa: BLE001 - whatever it was, nothing was committed
            if len(batch) > 1 and not blames_no_item(failure):
                half = len(batch) // 2
                log.warning(
                    "%s: a batch of %d failed (%s); running its halves apart",
                    self.name,
                    len(batch),
                    type(failure).__name__,
                )
                self._commit(batch[:half])
                self._commit(batch[half:])
                return
            cause = failure.__cause__ if isinstance(failure, BatchFailed) else failure
            outcomes = [cause if isinstance(cause, Exception) else failure] * len(batch)
        shared = Counter(id(o) for o in outcomes if isinstance(o, Exception))
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(own_copy(outcome) if shared[id(outcome)] > 1 else outcome)
            else:
                future.set_result(outcome)
