"""HTTP routes of jobs, for staff: what is waiting, what failed and why, and a retry."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel

from pledge.apikeys import Caller, require_scope
from pledge.jobs.rules import JobStatus
from pledge.jobs.service import JobNotFailed, JobNotFound, JobQueue, JobView

api = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def queue_of(request: Request) -> JobQueue:
    """FastAPI dependency: the app's job queue."""
    queue: JobQueue = request.app.state.jobs
    return queue


QueueDep = Annotated[JobQueue, Depends(queue_of)]
JobId = Annotated[str, Path(max_length=36)]


class JobOut(BaseModel):
    """A background job: its kind, state, attempts and last error (never personal data)."""

    id: str
    kind: str
    status: str
    attempts: int
    max_attempts: int
    run_after: dt.datetime
    last_error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class JobsOut(BaseModel):
    """Jobs, newest first, and how many are in each state."""

    counts: dict[str, int]
    jobs: list[JobOut]


def _out(view: JobView) -> JobOut:
    return JobOut(**{**view.__dict__, "status": view.status.value})


@api.get("", response_model=JobsOut, summary="Background jobs")
def list_jobs(
    queue: QueueDep,
    _caller: Annotated[Caller, Depends(require_scope("jobs:read"))],
    state: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobsOut:
    """The newest jobs (optionally in one state), and the count in each state."""
    return JobsOut(
        counts={s.value: n for s, n in queue.counts().items()},
        jobs=[_out(v) for v in queue.jobs(status=state, limit=limit)],
    )


@api.get("/{job_id}", response_model=JobOut, summary="One background job")
def show_job(
    job_id: JobId,
    queue: QueueDep,
    _caller: Annotated[Caller, Depends(require_scope("jobs:read"))],
) -> JobOut:
    """A job's state, attempts, next attempt and last error."""
    try:
        return _out(queue.job(job_id))
    except JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such job") from None


@api.post("/{job_id}/retry", response_model=JobOut, summary="Retry a failed job")
def retry_job(
    job_id: JobId,
    queue: QueueDep,
    _caller: Annotated[Caller, Depends(require_scope("jobs:write"))],
) -> JobOut:
    """Give a failed job a new round of attempts, once its cause is fixed."""
    try:
        return _out(queue.retry(job_id))
    except JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such job") from None
    except JobNotFailed as not_failed:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(not_failed)) from None
