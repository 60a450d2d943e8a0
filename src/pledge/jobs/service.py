"""The job queue: durable job records in Pledge's database, run by Huey's workers.

A job is a row in `jobs`, written in the same transaction as the act that asks for it (so the
two exist together or not at all); the queue (Huey, on a SQLite file or on Redis) carries only
the job's ID. A worker claims the row before running it, which makes a second delivery of the
same ID harmless; a lease makes a job whose worker died run again, and the periodic sweep hands
to the queue again any job it lost (a Redis restart, a crash between commit and hand-over)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from huey import Huey, RedisHuey, crontab
from huey.storage import SqliteStorage
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pledge.jobs.rules import WAITING, JobStatus, backoff, error_summary
from pledge.jobs.tables import Job

log = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any]], None]
"""Runs one job from its payload; raising makes the attempt fail (and the job retry)."""

WORKER_LOST = "WorkerLost"
UNKNOWN_KIND = "UnknownJobKind"
QUEUE_POLL_SECONDS = 1.0
"""How soon a worker sees a job queued by another process on the SQLite queue."""


class JobNotFound(LookupError):
    """No job has this ID."""


class JobNotFailed(ValueError):
    """Only a failed job can be retried by hand."""


@dataclass(frozen=True)
class JobView:
    """A job as staff see it."""

    id: str
    kind: str
    status: JobStatus
    attempts: int
    max_attempts: int
    run_after: dt.datetime
    last_error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


def open_transport(url: str, *, name: str = "pledge") -> Huey:
    """Huey on the queue named by `url`: `sqlite:///path` (a file, the embedded default) or
    `redis://host:port/db` (several workers on several machines). `name` prefixes its keys."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("the SQLite job queue needs a file: sqlite:///path/to/jobs.db")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # No fsync per message: the job's row in Pledge's database is the durable record, and
        # the sweep hands over again a message a power cut took. 10,000 messages queue in 1 s.
        return Huey(
            name,
            results=False,
            storage_class=WakingSqliteStorage,
            filename=parsed.database,
            fsync=False,
        )
    if parsed.drivername in {"redis", "rediss"}:
        return RedisHuey(name, url=url, results=False)
    raise ValueError(f"PLEDGE_JOBS_URL must start with sqlite:/// or redis://, not {url!r}")


class WakingSqliteStorage(SqliteStorage):  # type: ignore[misc]
    """Huey's SQLite queue, whose workers wait for a job instead of polling for one.

    Huey polls a queue that cannot block every 0.1 s, backing off to every 10 s while it is
    empty, so a job queued on an idle server waited up to 10 s to start. Once `JobQueue.consumer`
    starts workers in this process (`pledge serve` runs them in it), a job queued here wakes a
    waiting worker at once, and a job queued by another process is seen within
    QUEUE_POLL_SECONDS. Before that, a dequeue does not wait (`JobQueue.drain`)."""

    blocking = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arrived = threading.Condition()
        self._queued = 0

    def enqueue(self, data: bytes, priority: int | None = None) -> None:
        super().enqueue(data, priority)
        with self._arrived:
            self._queued += 1
            self._arrived.notify()

    def dequeue(self) -> bytes | None:
        with self._arrived:
            seen = self._queued
        data: bytes | None = super().dequeue()
        if data is None and self.blocking:
            with self._arrived:
                self._arrived.wait_for(lambda: self._queued != seen, QUEUE_POLL_SECONDS)
            data = super().dequeue()
        return data


class JobQueue:
    """Adds, runs, retries and shows background jobs."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport: Huey,
        *,
        max_attempts: int = 8,
        first_retry: dt.timedelta = dt.timedelta(seconds=30),
        lease: dt.timedelta = dt.timedelta(minutes=5),
        redispatch_after: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.sessions = sessions
        self.transport = transport
        self.max_attempts = max_attempts
        self.first_retry = first_retry
        self.lease = lease
        self.redispatch_after = redispatch_after
        self.handlers: dict[str, Handler] = {}

        def run_job(job_id: str) -> None:
            self.run(job_id)

        def sweep_jobs() -> None:
            self.sweep()

        self._run_task = transport.task(name="pledge.jobs.run")(run_job)
        transport.periodic_task(crontab(), name="pledge.jobs.sweep")(sweep_jobs)

    def handle(self, kind: str, handler: Handler) -> None:
        """Run `handler` for jobs of `kind`."""
        self.handlers[kind] = handler

    def every(self, minutes: int, name: str, chore: Callable[[], object]) -> None:
        """Run `chore` every `minutes` minutes in the workers (housekeeping that is safe to
        repeat and to skip once: a chore leaves no job row)."""

        def run_chore() -> None:
            try:
                chore()
            except Exception as error:  # noqa: BLE001 - the next round tries again
                log.warning("chore %s failed: %s", name, error_summary(error))

        if minutes < 60:
            schedule = crontab(minute=f"*/{minutes}")
        elif minutes % 60 == 0 and minutes <= 24 * 60:
            # A cron minute field stops at 59: "*/1440" would mean every hour, at minute 0.
            schedule = crontab(minute="0", hour=f"*/{minutes // 60}")
        else:
            raise ValueError("a chore runs every 1 to 59 minutes or every 1 to 24 whole hours")
        self.transport.periodic_task(schedule, name=name)(run_chore)

    # --- Adding -------------------------------------------------------------------------------

    def add(
        self,
        session: Session,
        kind: str,
        payload: Mapping[str, Any],
        *,
        delay: dt.timedelta = dt.timedelta(0),
    ) -> str:
        """Record a job in the caller's transaction; hand it over with `dispatch` after commit."""
        now = _now()
        job = Job(
            id=str(uuid.uuid4()),
            kind=kind,
            payload=dict(payload),
            status=JobStatus.QUEUED.value,
            attempts=0,
            max_attempts=self.max_attempts,
            run_after=now + delay,
            dispatched_at=now,
            lease_until=None,
            last_error=None,
            created_at=now,
            finished_at=None,
        )
        session.add(job)
        return job.id

    def submit(self, kind: str, payload: Mapping[str, Any]) -> str:
        """Record a job in a transaction of its own and hand it over."""
        with self.sessions() as session, session.begin():
            job_id = self.add(session, kind, payload)
        self.dispatch([job_id])
        return job_id

    def dispatch(self, job_ids: Sequence[str], *, delay: dt.timedelta = dt.timedelta(0)) -> None:
        """Hand committed jobs to the queue. If the queue is down the jobs stay recorded, and
        the sweep hands them over once it is back."""
        for job_id in job_ids:
            try:
                if delay > dt.timedelta(0):
                    self._run_task.schedule(args=(job_id,), delay=delay.total_seconds())
                else:
                    self._run_task(job_id)
            except Exception as error:  # noqa: BLE001 - any queue failure: the sweep retries
                log.warning("job %s not handed to the queue yet: %s", job_id, error_summary(error))

    # --- Running ------------------------------------------------------------------------------

    def run(self, job_id: str) -> JobStatus | None:
        """Claim the job and run it once; the new state, or None if it was not this worker's to
        run (already done, running elsewhere, or not due yet)."""
        claimed = self._claim(job_id)
        if claimed is None:
            return None
        kind, payload, attempt = claimed
        handler = self.handlers.get(kind)
        if handler is None:
            log.error("job %s has kind %r, which no handler runs", job_id, kind)
            return self._failed(job_id, attempt, UNKNOWN_KIND, final=True)
        try:
            handler(payload)
        except Exception as error:  # noqa: BLE001 - a failing job is recorded, never fatal
            summary = error_summary(error)
            log.warning("job %s (%s) attempt %d failed: %s", job_id, kind, attempt, summary)
            return self._failed(job_id, attempt, summary, final=False)
        return self._finish(job_id, attempt)

    def _claim(self, job_id: str) -> tuple[str, dict[str, Any], int] | None:
        now = _now()
        with self.sessions() as session, session.begin():
            row = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status.in_([s.value for s in WAITING]),
                    Job.run_after <= now,
                )
                .values(
                    status=JobStatus.RUNNING.value,
                    attempts=Job.attempts + 1,
                    lease_until=now + self.lease,
                )
                .returning(Job.kind, Job.payload, Job.attempts)
            ).one_or_none()
        return None if row is None else (row.kind, row.payload, row.attempts)

    def _finish(self, job_id: str, attempt: int) -> JobStatus | None:
        with self.sessions() as session, session.begin():
            done = _owned_update(
                session,
                job_id,
                attempt,
                status=JobStatus.SUCCEEDED.value,
                lease_until=None,
                finished_at=_now(),
            )
        return JobStatus.SUCCEEDED if done else None

    def _failed(self, job_id: str, attempt: int, summary: str, *, final: bool) -> JobStatus | None:
        now = _now()
        with self.sessions() as session, session.begin():
            max_attempts = session.scalar(select(Job.max_attempts).where(Job.id == job_id))
            if final or max_attempts is None or attempt >= max_attempts:
                status, wait = JobStatus.FAILED, dt.timedelta(0)
                values: dict[str, Any] = {"finished_at": now}
            else:
                status, wait = JobStatus.RETRYING, backoff(attempt, self.first_retry)
                values = {"run_after": now + wait, "dispatched_at": now}
            owned = _owned_update(
                session,
                job_id,
                attempt,
                status=status.value,
                lease_until=None,
                last_error=summary,
                **values,
            )
        if not owned:
            return None
        if status is JobStatus.RETRYING:
            self.dispatch([job_id], delay=wait)
        return status

    # --- Recovering ---------------------------------------------------------------------------

    def sweep(self, now: dt.datetime | None = None) -> int:
        """Run again the jobs whose worker died (lease passed) and hand over again the waiting
        jobs the queue has not run for a while; how many were handed over."""
        now = now or _now()
        with self.sessions() as session, session.begin():
            lost = session.execute(
                update(Job)
                .where(Job.status == JobStatus.RUNNING.value, Job.lease_until < now)
                .values(
                    status=JobStatus.RETRYING.value,
                    run_after=Job.lease_until,
                    dispatched_at=None,
                    lease_until=None,
                    last_error=WORKER_LOST,
                )
                .returning(Job.id, Job.attempts, Job.max_attempts)
            ).all()
            exhausted = [row.id for row in lost if row.attempts >= row.max_attempts]
            if exhausted:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(exhausted))
                    .values(status=JobStatus.FAILED.value, finished_at=now)
                )
            stale = session.scalars(
                update(Job)
                .where(
                    Job.status.in_([s.value for s in WAITING]),
                    Job.run_after <= now,
                    Job.dispatched_at.is_(None) | (Job.dispatched_at < now - self.redispatch_after),
                )
                .values(dispatched_at=now)
                .returning(Job.id)
            ).all()
        if lost:
            log.warning("%d job(s) whose worker stopped will run again", len(lost) - len(exhausted))
        self.dispatch(stale)
        return len(stale)

    # --- Showing ------------------------------------------------------------------------------

    def jobs(self, *, status: JobStatus | None = None, limit: int = 100) -> list[JobView]:
        """The newest jobs, optionally only those in one state."""
        with self.sessions() as session:
            query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
            if status is not None:
                query = query.where(Job.status == status.value)
            return [_view(job) for job in session.scalars(query)]

    def job(self, job_id: str) -> JobView:
        """One job; raise `JobNotFound`."""
        with self.sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise JobNotFound(job_id)
            return _view(job)

    def counts(self) -> dict[JobStatus, int]:
        """How many jobs are in each state."""
        with self.sessions() as session:
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        counts = dict.fromkeys(JobStatus, 0)
        counts.update({JobStatus(status): count for status, count in rows})
        return counts

    def retry(self, job_id: str) -> JobView:
        """Give a failed job a new round of attempts (staff, once the cause is fixed)."""
        now = _now()
        with self.sessions() as session, session.begin():
            job = session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise JobNotFound(job_id)
            if job.status != JobStatus.FAILED.value:
                raise JobNotFailed(f"job {job_id} is {job.status}, not failed")
            job.status = JobStatus.QUEUED.value
            job.max_attempts = job.attempts + self.max_attempts
            job.run_after = now
            job.dispatched_at = now
            job.finished_at = None
            view = _view(job)
        self.dispatch([job_id])
        return view

    # --- Serving ------------------------------------------------------------------------------

    def consumer(self, *, workers: int) -> Any:
        """A Huey consumer running this queue's jobs in `workers` threads, sweeping each minute."""
        self.sweep()
        if isinstance(self.transport.storage, WakingSqliteStorage):
            self.transport.storage.blocking = True
        return self.transport.create_consumer(workers=workers, worker_type="thread", periodic=True)

    def drain(self, *, limit: int = 1000) -> int:
        """Run, in this thread, every job the queue holds and is due now (for tests: no command
        calls it); how many messages were taken."""
        taken = 0
        for _ in range(limit):
            for due in self.transport.read_schedule():
                self.transport.enqueue(due)
            message = self.transport.dequeue()
            if message is None:
                break
            taken += 1
            self.transport.execute(message)
        return taken


def _owned_update(session: Session, job_id: str, attempt: int, **values: Any) -> bool:
    """Update the job only if this worker's claim still holds (the sweep may have handed it to
    another worker after the lease passed)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.attempts == attempt)
        .values(**values)
    )
    return bool(cast("CursorResult[Any]", result).rowcount)


def _view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        kind=job.kind,
        status=JobStatus(job.status),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        run_after=_utc(job.run_after),
        last_error=job.last_error,
        created_at=_utc(job.created_at),
        finished_at=None if job.finished_at is None else _utc(job.finished_at),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
