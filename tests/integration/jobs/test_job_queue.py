"""The job queue on real components: Pledge's database (SQLite and PostgreSQL), Huey on a SQLite
file and on the real Redis; a worker process killed mid-job; retries with backoff."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from pledge.db import create_database_engine, session_factory
from pledge.jobs import JobQueue, JobStatus, open_transport
from pledge.migrations import upgrade_database


@pytest.fixture
def database(empty_database_url: str) -> Iterator[Engine]:
    """A migrated database of the test's own: worker processes reach it as a server would."""
    engine = create_database_engine(empty_database_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite-file", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return f"sqlite:///{tmp_path / 'queue.db'}"


def make_queue(engine: Engine, url: str, name: str, **options: Any) -> JobQueue:
    return JobQueue(session_factory(engine), open_transport(url, name=name), **options)


def test_a_job_recorded_before_a_restart_runs_after_it(database: Engine, queue_url: str) -> None:
    name = f"pledge-test-{uuid.uuid4().hex}"
    first = make_queue(database, queue_url, name)
    job_id = first.submit("test.note", {"n": 1})
    del first  # the process that queued the job is gone

    ran: list[Mapping[str, Any]] = []
    second = make_queue(database, queue_url, name)
    second.handle("test.note", ran.append)
    assert second.drain() == 1
    assert ran == [{"n": 1}]
    assert second.job(job_id).status is JobStatus.SUCCEEDED


def test_a_failing_job_retries_with_growing_waits_then_fails_visibly(
    database: Engine, tmp_path: Path
) -> None:
    queue = make_queue(
        database,
        f"sqlite:///{tmp_path / 'q.db'}",
        "pledge",
        max_attempts=3,
        first_retry=dt.timedelta(seconds=10),
    )
    queue.handle("test.broken", _broken)
    job_id = queue.submit("test.broken", {})
    before = dt.datetime.now(dt.UTC)
    queue.drain()
    job = queue.job(job_id)
    assert (job.status, job.attempts, job.last_error) == (JobStatus.RETRYING, 1, "ConnectionError")
    assert dt.timedelta(seconds=9) < job.run_after - before < dt.timedelta(seconds=12)
    assert queue.run(job_id) is None, "not due yet: no worker may run it early"

    waits = []
    for _ in range(2):
        _make_due(queue, job_id)
        queue.run(job_id)
        job = queue.job(job_id)
        waits.append(job.run_after)
    assert job.status is JobStatus.FAILED
    assert job.attempts == 3
    assert queue.counts()[JobStatus.FAILED] == 1
    assert [j.id for j in queue.jobs(status=JobStatus.FAILED)] == [job_id]


def _broken(_payload: Mapping[str, Any]) -> None:
    raise ConnectionError("smtp.example.com refused mail for someone@example.com")


def _make_due(queue: JobQueue, job_id: str) -> None:
    from sqlalchemy import update  # noqa: PLC0415

    from pledge.jobs.tables import Job  # noqa: PLC0415

    with queue.sessions() as session, session.begin():
        session.execute(
            update(Job).where(Job.id == job_id).values(run_after=dt.datetime.now(dt.UTC))
        )


def test_the_error_kept_for_staff_never_holds_the_message(database: Engine, tmp_path: Path) -> None:
    queue = make_queue(database, f"sqlite:///{tmp_path / 'q.db'}", "pledge", max_attempts=1)
    queue.handle("test.broken", _broken)
    job_id = queue.submit("test.broken", {})
    queue.drain()
    job = queue.job(job_id)
    assert job.status is JobStatus.FAILED
    assert "example.com" not in (job.last_error or "")


def test_a_job_of_an_unknown_kind_fails_at_once(database: Engine, tmp_path: Path) -> None:
    queue = make_queue(database, f"sqlite:///{tmp_path / 'q.db'}", "pledge")
    job_id = queue.submit("test.nobody", {})
    queue.drain()
    assert queue.job(job_id).status is JobStatus.FAILED
    assert queue.job(job_id).last_error == "UnknownJobKind"


def test_a_job_the_queue_lost_is_handed_over_again_by_the_sweep(
    database: Engine, queue_url: str
) -> None:
    name = f"pledge-test-{uuid.uuid4().hex}"
    queue = make_queue(database, queue_url, name)
    ran: list[Mapping[str, Any]] = []
    queue.handle("test.note", ran.append)
    with queue.sessions() as session, session.begin():
        job_id = queue.add(session, "test.note", {"n": 2})
    # The process stopped between commit and hand-over: the queue never heard of the job.
    assert queue.drain() == 0
    assert queue.sweep() == 0, "not yet: a job just added may still be on its way"
    later = dt.datetime.now(dt.UTC) + queue.redispatch_after + dt.timedelta(seconds=1)
    assert queue.sweep(now=later) == 1
    queue.drain()
    assert ran == [{"n": 2}]
    assert queue.job(job_id).status is JobStatus.SUCCEEDED


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pledge.db import create_database_engine, session_factory
    from pledge.jobs import JobQueue, open_transport

    import datetime as dt

    database_url, queue_url, name, marker, lease = sys.argv[1:6]
    queue = JobQueue(
        session_factory(create_database_engine(database_url)),
        open_transport(queue_url, name=name),
        lease=dt.timedelta(seconds=float(lease)),
    )

    def hang(payload):
        Path(marker).write_text("started")
        time.sleep(120)

    queue.handle("test.long", hang)
    queue.consumer(workers=1).run()
    """
)


def test_a_job_whose_worker_dies_mid_way_is_not_lost(
    database: Engine, queue_url: str, tmp_path: Path
) -> None:
    name = f"pledge-test-{uuid.uuid4().hex}"
    lease = 3.0
    queue = make_queue(database, queue_url, name)
    job_id = queue.submit("test.long", {"n": 3})
    marker = tmp_path / "started"
    database_url = database.url.render_as_string(hide_password=False)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, database_url, queue_url, name, str(marker), str(lease)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the worker never started the job"
            assert worker.poll() is None, "the worker exited early"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert queue.job(job_id).status is JobStatus.RUNNING

    assert queue.sweep() == 0, "within its lease the job may still be running"
    ran: list[Mapping[str, Any]] = []
    queue.handle("test.long", ran.append)
    time.sleep(lease)
    assert queue.sweep() == 1
    queue.drain()
    job = queue.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert ran == [{"n": 3}]


def test_several_redis_workers_run_every_job_once(database: Engine, redis_url: str) -> None:
    name = f"pledge-test-{uuid.uuid4().hex}"
    queue = make_queue(database, redis_url, name)
    seen: list[int] = []
    lock = threading.Lock()

    def note(payload: Mapping[str, Any]) -> None:
        with lock:
            seen.append(int(payload["n"]))

    queue.handle("test.note", note)
    job_ids = [queue.submit("test.note", {"n": n}) for n in range(40)]
    for job_id in job_ids[:10]:
        queue.dispatch([job_id])  # delivered twice: the claim makes the copy a no-op
    consumer = queue.consumer(workers=4)
    consumer.start()
    try:
        deadline = time.monotonic() + 30
        while queue.counts()[JobStatus.SUCCEEDED] < len(job_ids):
            assert time.monotonic() < deadline, queue.counts()
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        consumer.stop(graceful=True)
    assert sorted(seen) == list(range(40))


@pytest.mark.parametrize(("minutes", "runs_a_day"), [(15, 96), (60, 24), (6 * 60, 4), (24 * 60, 1)])
def test_a_chore_runs_as_often_as_it_asks_within_a_day(
    database: Engine, tmp_path: Path, minutes: int, runs_a_day: int
) -> None:
    queue = make_queue(database, f"sqlite:///{tmp_path / 'queue.db'}", "pledge-chores")
    queue.every(minutes, "test.chore", lambda: None)
    (task,) = [t for t in queue.transport._registry.periodic_tasks if t.name == "test.chore"]
    day = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    moments = [day + dt.timedelta(minutes=m) for m in range(24 * 60)]
    assert sum(task.validate_datetime(moment) for moment in moments) == runs_a_day


def test_a_chore_that_no_schedule_can_keep_is_refused(database: Engine, tmp_path: Path) -> None:
    queue = make_queue(database, f"sqlite:///{tmp_path / 'queue.db'}", "pledge-chores")
    with pytest.raises(ValueError, match="whole hours"):
        queue.every(90, "test.chore", lambda: None)


def test_a_worker_waiting_on_the_sqlite_queue_wakes_when_a_job_arrives(
    database: Engine, tmp_path: Path
) -> None:
    # Huey polls a queue that cannot block, backing off to 10 s while it is quiet: a job queued
    # on an idle server waited seconds. A waiting worker must take it at once instead.
    queue = make_queue(database, f"sqlite:///{tmp_path / 'queue.db'}", "pledge-quiet")
    consumer = queue.consumer(workers=1)  # turns waiting on
    storage = queue.transport.storage
    taken: list[tuple[bytes | None, float]] = []
    waiter = threading.Thread(
        target=lambda: taken.append((storage.dequeue(), time.monotonic())), daemon=True
    )
    waiter.start()
    time.sleep(0.2)  # the worker is waiting now
    queued = time.monotonic()
    storage.enqueue(b"job-id")
    waiter.join(5)
    del consumer
    ((data, at),) = taken
    assert data == b"job-id"
    assert at - queued < 0.2, f"took {at - queued:.2f} s"
