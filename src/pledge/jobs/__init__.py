"""Background jobs: durable records in Pledge's database, run by Huey workers (SQLite or Redis)."""

from pledge.jobs.routes import api as api_routes
from pledge.jobs.rules import JobStatus, backoff, error_summary
from pledge.jobs.service import (
    Handler,
    JobNotFailed,
    JobNotFound,
    JobQueue,
    JobView,
    open_transport,
)

__all__ = [
    "Handler",
    "JobNotFailed",
    "JobNotFound",
    "JobQueue",
    "JobStatus",
    "JobView",
    "api_routes",
    "backoff",
    "error_summary",
    "open_transport",
]
