"""The composition root: builds settings, database and policy, then the FastAPI app on them."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from pledge import __version__
from pledge.config import Settings
from pledge.consent import AUDIENCE_MAX_BYTES, ConsentLedger
from pledge.consent import api_routes as consent_routes
from pledge.consent import page_routes as consent_pages
from pledge.limits import BodyLimit
from pledge.logs import AccessLog
from pledge.migrations import schema_is_current
from pledge.policy import (
    PolicyInvalid,
    api_routes,
    list_versions,
    load_policy_file,
    page_routes,
    publish_policy,
)
from pledge.runtime import Runtime
from pledge.vault import PersonalDataScanner, Vault
from pledge.vault import api_routes as vault_routes

log = logging.getLogger(__name__)


_scanner = PersonalDataScanner()
"""One scanner per process: building Presidio's engine takes about half a second."""


class DatabaseNotReady(RuntimeError):
    """The database schema is not at the newest migration."""


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
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
    app.state.vault = Vault(runtime.sessions, runtime.keyring, _scanner)
    app.state.consent = ConsentLedger(runtime.sessions)
    app.add_middleware(BodyLimit, larger={"/v1/audiences": AUDIENCE_MAX_BYTES})
    app.add_middleware(AccessLog)
    app.include_router(api_routes)
    app.include_router(vault_routes)
    app.include_router(consent_routes)
    app.include_router(consent_pages)
    app.include_router(page_routes)

    @app.get("/healthz", tags=["operations"], summary="Liveness and database check")
    def healthz() -> dict[str, str]:
        with runtime.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    return app


__all__ = ["DatabaseNotReady", "PolicyInvalid", "create_app"]
