"""A transaction that only reads does not queue behind SQLite's one writer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from pledge.db import create_database_engine, reading, session_factory


def test_a_reading_transaction_reads_its_snapshot_while_a_writer_holds_the_lock(
    tmp_path: Path,
) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'pledge.db'}")
    sessions = session_factory(engine)
    with sessions() as session, session.begin():
        session.execute(text("CREATE TABLE choices (n INTEGER)"))
        session.execute(text("INSERT INTO choices VALUES (1)"))
    writing = threading.Event()
    done = threading.Event()

    def writer() -> None:
        with sessions() as session, session.begin():  # BEGIN IMMEDIATE: the write lock
            session.execute(text("INSERT INTO choices VALUES (2)"))
            writing.set()
            done.wait(timeout=20)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(timeout=10)
        started = time.monotonic()
        with reading(sessions) as session:
            seen = session.execute(text("SELECT n FROM choices")).scalars().all()
        waited = time.monotonic() - started
    finally:
        done.set()
        thread.join()
        engine.dispose()

    assert seen == [1]  # the snapshot before the writer's uncommitted row
    assert waited < 2  # an ordinary transaction would wait for the lock (busy_timeout, 10 s)
