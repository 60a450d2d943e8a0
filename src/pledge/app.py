"""The composition root: builds settings, database and policy, then the FastAPI app on them."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pledge import __version__
from pledge.apikeys import KeyCache
from pledge.children import EVIDENCE_MAX_BYTES, AgeBands, AgeScreen, ParentalConsents
from pledge.children import api_routes as children_routes
from pledge.children import console_routes as children_console
from pledge.children import page_routes as children_pages
from pledge.config import Settings
from pledge.consent import AUDIENCE_MAX_BYTES, BannerCors, ConsentLedger
from pledge.consent import api_routes as consent_routes
from pledge.consent import banner_routes as cookie_banner
from pledge.consent import page_routes as consent_pages
from pledge.datasets import ConnectedDatabases, check_against_policy, load_datasets
from pledge.jobs import JobQueue, open_transport
from pledge.jobs import api_routes as job_routes
from pledge.limits import BodyLimit
from pledge.logs import AccessLog, configure_logging
from pledge.mail import Mailer
from pledge.mail import api_routes as mail_routes
from pledge.mail import page_routes as mail_pages
from pledge.migrations import schema_is_current
from pledge.policy import (
    PolicyInvalid,
    api_routes,
    list_versions,
    load_policy_file,
    page_routes,
    publish_policy,
)
from pledge.privacy_center import PreferenceCenter
from pledge.privacy_center import children_page_routes as center_children_pages
from pledge.privacy_center import page_routes as center_pages
from pledge.privacy_center import request_page_routes as center_request_pages
from pledge.requests import Fulfilment, RequestDesk
from pledge.requests import api_routes as request_routes
from pledge.requests import console_routes as request_console
from pledge.runtime import Runtime
from pledge.staff import StaffDirectory, console_exception_handlers
from pledge.staff import page_routes as staff_console
from pledge.vault import PersonalDataScanner, Vault
from pledge.vault import api_routes as vault_routes
from pledge.web.bodies import add_body_schemas

log = logging.getLogger(__name__)


async def _database_busy(_request: Request, error: Exception) -> JSONResponse:
    """A database out of reach, or busy past its lock timeout: `503` with a hint to try again,
    rather than a bare `500`. Any other database error (a missing table, a full disk) is a
    `500` as before. The log names the error's kind only (its message may quote values)."""
    if not _transient(error):
        raise error  # the server's own 500, its traceback logged as for any other fault
    log.warning("database unavailable: %s", _kind_of(error))
    return JSONResponse(
        {"detail": "the database is busy or out of reach: try again shortly"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


_TRANSIENT_SQLSTATES = ("08", "40", "57", "55P03")
"""PostgreSQL: connection exceptions, transaction rollbacks (deadlock, serialization),
operator intervention (statement timeout, shutdown), lock not available."""


def _transient(error: Exception) -> bool:
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, OperationalError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_TRANSIENT_SQLSTATES)
    if getattr(original, "sqlite_errorname", None) in {"SQLITE_BUSY", "SQLITE_LOCKED"}:
        return True
    # psycopg's own connection failures carry no SQLSTATE.
    return type(original).__module__.startswith("psycopg") and sqlstate is None


def _kind_of(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    code = getattr(original, "sqlstate", None) or getattr(original, "sqlite_errorname", None)
    return f"{type(original).__name__} ({code})" if code else type(original).__name__


_scanner = PersonalDataScanner()
"""One scanner per process: building Presidio's engine takes about half a second."""


class DatabaseNotReady(RuntimeError):
    """The database schema is not at the newest migration."""


@dataclass(frozen=True)
class Services:
    """The capabilities, wired together once per process (server or worker)."""

    vault: Vault
    consent: ConsentLedger
    jobs: JobQueue
    mailer: Mailer
    privacy_center: PreferenceCenter
    requests: RequestDesk
    fulfilment: Fulfilment
    staff: StaffDirectory
    age_screen: AgeScreen
    parental_consents: ParentalConsents
    age_bands: AgeBands


class DatasetsNotReady(RuntimeError):
    """The connected-databases file is invalid or names categories the policy does not."""


def connected_databases(settings: Settings) -> ConnectedDatabases | None:
    """The connected databases `PLEDGE_DATASETS_FILE` declares, or None; raise
    `DatasetsInvalid` or `DatasetsNotReady`. Masks are keyed by a key derived from the secret
    key, so the same value masks the same way in every process."""
    if settings.datasets_file is None:
        return None
    file = load_datasets(settings.datasets_file)
    categories = load_policy_file(settings.policy_file).document.data_categories
    problems = check_against_policy(file, set(categories))
    if problems:
        raise DatasetsNotReady("; ".join(problems))
    mask_key = hmac.new(
        settings.secret_key.get_secret_value().encode(),
        b"pledge connected-database masks",
        hashlib.sha256,
    ).digest()
    return ConnectedDatabases(file, mask_key=mask_key)


def build_services(runtime: Runtime) -> Services:
    """Wire the capabilities on `runtime`; the job queue is the one `PLEDGE_JOBS_URL` names."""
    settings = runtime.settings
    vault = Vault(runtime.sessions, runtime.keyring, _scanner)
    consent = ConsentLedger(runtime.sessions)
    jobs = JobQueue(
        runtime.sessions,
        open_transport(settings.jobs_url),
        max_attempts=settings.jobs_max_attempts,
        first_retry=dt.timedelta(seconds=settings.jobs_first_retry_seconds),
        lease=dt.timedelta(seconds=settings.jobs_lease_seconds),
    )
    mailer = Mailer(
        settings=settings,
        sessions=runtime.sessions,
        keyring=runtime.keyring,
        vault=vault,
        ledger=consent,
        jobs=jobs,
    )
    privacy_center = PreferenceCenter(
        sessions=runtime.sessions,
        keyring=runtime.keyring,
        vault=vault,
        ledger=consent,
        mailer=mailer,
        secret=settings.secret_key.get_secret_value().encode(),
    )
    connected = connected_databases(settings)
    desk = RequestDesk(
        sessions=runtime.sessions,
        keyring=runtime.keyring,
        vault=vault,
        mailer=mailer,
        jobs=jobs,
        public_url=settings.public_url,
        connected=connected,
    )
    fulfilment = Fulfilment(
        desk=desk,
        vault=vault,
        ledger=consent,
        mailer=mailer,
        jobs=jobs,
        connected=connected,
        webhook_secret=hmac.new(
            settings.secret_key.get_secret_value().encode(),
            b"pledge deletion-notice webhooks",
            hashlib.sha256,
        ).digest(),
    )
    staff = StaffDirectory(
        sessions=runtime.sessions,
        keyring=runtime.keyring,
        issuer=f"Pledge ({urlsplit(settings.public_url).hostname or 'console'})",
    )
    jobs.every(15, "pledge.staff.forget_expired", staff.forget_expired)
    return Services(
        vault=vault,
        consent=consent,
        jobs=jobs,
        mailer=mailer,
        privacy_center=privacy_center,
        requests=desk,
        fulfilment=fulfilment,
        staff=staff,
        age_screen=AgeScreen(vault=vault, secret=settings.secret_key.get_secret_value().encode()),
        parental_consents=ParentalConsents(
            sessions=runtime.sessions,
            keyring=runtime.keyring,
            vault=vault,
            ledger=consent,
            mailer=mailer,
            jobs=jobs,
            connected=connected,
            public_url=settings.public_url,
        ),
        age_bands=AgeBands(vault=vault, jobs=jobs),
    )


def create_app(
    settings: Settings, runtime: Runtime | None = None, services: Services | None = None
) -> FastAPI:
    """Build the app; raise `PolicyInvalid` or `DatabaseNotReady` instead of serving a bad state.

    The configured policy file is validated on every start. When no version has been published
    yet it becomes the first one, so a fresh installation serves its policy at once; after that,
    versions change only through `pledge policy publish`.
    """
    policy = load_policy_file(settings.policy_file)
    runtime = runtime or Runtime.build(settings)
    if not schema_is_current(runtime.engine):
        raise DatabaseNotReady("the database schema is not current: run `pledge db upgrade`")
    if not list_versions(runtime.sessions):
        publish_policy(runtime.sessions, policy, published_by="pledge (first start)")
    # The API docs pages are served from Pledge itself: no CDN learns who reads them.
    app = FastAPIOffline(
        title="Pledge",
        version=__version__,
        summary="The privacy policy as running software.",
        description=(
            "Record collection, check purposes, log disclosures and answer privacy requests "
            "against a machine-readable privacy policy. See docs/api.md."
        ),
    )
    app.state.runtime = runtime
    app.state.api_keys = KeyCache(runtime.sessions)
    # Built in the background: the first free text or staff note is then scanned at once.
    threading.Thread(target=_scanner.warm, name="pledge-scanner-warm-up", daemon=True).start()
    services = services or build_services(runtime)
    app.state.services = services
    app.state.vault = services.vault
    app.state.consent = services.consent
    app.state.jobs = services.jobs
    app.state.mailer = services.mailer
    app.state.privacy_center = services.privacy_center
    app.state.requests = services.requests
    app.state.staff = services.staff
    app.state.age_screen = services.age_screen
    app.state.parental_consents = services.parental_consents
    for error, handler in console_exception_handlers().items():
        app.add_exception_handler(error, handler)
    app.add_exception_handler(OperationalError, _database_busy)
    app.add_exception_handler(PoolTimeout, _database_busy)
    app.add_middleware(
        BodyLimit,
        larger={
            "/v1/audiences": AUDIENCE_MAX_BYTES,
            # A parent's signed form or ID (5 MB) with the form around it.
            "/parental-consent/": EVIDENCE_MAX_BYTES + 64 * 1024,
        },
    )
    app.add_middleware(AccessLog)
    if settings.banner_origins:
        app.add_middleware(BannerCors, origins=settings.banner_origins)
    for routes in (
        api_routes,
        vault_routes,
        consent_routes,
        consent_pages,
        cookie_banner,
        mail_routes,
        mail_pages,
        job_routes,
        request_routes,
        children_routes,
        children_pages,
        center_pages,
        center_request_pages,
        center_children_pages,
        staff_console,
        request_console,
        children_console,
        page_routes,
    ):
        app.include_router(routes)

    @app.get("/healthz", tags=["operations"], summary="Liveness and database check")
    def healthz() -> dict[str, str]:
        with runtime.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    add_body_schemas(app)
    return app


def app_from_environment() -> FastAPI:
    """The app of one of `pledge serve --workers N`'s processes, on the settings the
    environment gives (the command checked them, the policy and the schema before starting)."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


__all__ = [
    "DatabaseNotReady",
    "DatasetsNotReady",
    "PolicyInvalid",
    "Services",
    "app_from_environment",
    "build_services",
    "create_app",
]
