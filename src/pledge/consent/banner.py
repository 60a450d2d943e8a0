"""The cookie banner's public routes: its script, what it shows, and the visitor's choices.

A browser calls these, from the organization's own site, with no API key: the visitor is known
only by the random consent ID Pledge gave them. `BannerCors` lets the configured sites call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from pledge.consent import visitors
from pledge.consent.routes import GpcHeader, Key, LedgerDep, SubjectId, _answers_for_consent_errors
from pledge.consent.rules import (
    CookieChoiceInvalid,
    cookie_notice,
    notice_digest,
    sells_or_shares,
)
from pledge.consent.visitors import PolicyVersionChanged
from pledge.policy.document import ConsentRequirement, GpcAnswer, PolicyDocument
from pledge.runtime import Runtime, runtime_of

banner = APIRouter(prefix="/consent", tags=["cookie banner"])

SCRIPT = files("pledge.consent").joinpath("static", "banner.js").read_bytes()
"""The banner script, read once: it is a file of the package, never fetched from elsewhere."""
STORAGE_COOKIE = "pledge_consent"
"""The first-party cookie in which the script keeps the consent ID, version and choices."""
BROWSER_MAX_DAYS = 400
"""Browsers cap a cookie's lifetime at 400 days (RFC 6265bis)."""


class CookieCategoryOut(BaseModel):
    """A cookie category as the banner shows it."""

    key: str
    name: str
    description: str
    consent: ConsentRequirement
    can_refuse: bool
    sale_or_sharing: bool
    """Its purposes sell or share: Global Privacy Control refuses it."""
    cookies: list[str]
    """Names of its cookies, which the script deletes from the site when the category is refused."""


class StorageOut(BaseModel):
    """Where the script keeps the visitor's choice on the site."""

    cookie: str
    max_age_days: int | None
    """The lifetime the policy gives that cookie; None (a session cookie) when it lists none."""


class BannerConfigOut(BaseModel):
    """Everything the banner shows, under the policy version in force."""

    policy_version: str
    notice: str
    """The banner's text: a heading, an introduction, then `name: description` per category."""
    notice_sha256: str
    """SHA-256 of `notice` (UTF-8): what the ledger keeps as proof of what the visitor saw."""
    categories: list[CookieCategoryOut]
    honors_gpc: bool
    storage: StorageOut
    privacy_policy_url: str


class CookieChoicesIn(BaseModel):
    """A visitor's answer to the banner."""

    model_config = ConfigDict(extra="forbid")

    consent_id: SubjectId | None = None
    """The ID Pledge gave the visitor before; absent or unknown, Pledge makes a new one."""
    choices: Annotated[dict[Key, StrictBool], Field(max_length=100)]
    gpc: StrictBool = False
    """`navigator.globalPrivacyControl` was true (the `Sec-GPC: 1` header counts too)."""
    policy_version: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
    """The version whose banner the visitor answered."""
    prompted: StrictBool = False
    """The banner appeared on its own (Pledge asked), rather than opened by the visitor."""


class CookieChoicesOut(BaseModel):
    """The choice as recorded."""

    consent_id: str
    policy_version: str
    choices: dict[str, bool]
    gpc_honored: bool


class VisitorChoicesOut(BaseModel):
    """A visitor's choice as the ledger holds it."""

    consent_id: str
    policy_version: str
    choices: dict[str, bool]
    """Per category; a category not (fully) answered yet is left out."""
    reprompt_blocked_until: dict[str, dt.datetime]
    """Refused categories that sell or share, which the banner may not itself ask about again
    before the time given (12 months after the opt-out)."""


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


@contextmanager
def _answers_for_banner_errors() -> Iterator[None]:
    with _answers_for_consent_errors():
        try:
            yield
        except CookieChoiceInvalid as invalid:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[
                    {
                        "loc": ["body", "choices", invalid.category],
                        "msg": str(invalid),
                        "type": "policy",
                    }
                ],
            ) from None
        except PolicyVersionChanged as changed:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(changed)) from None


@banner.get("/banner.js", summary="The cookie banner script", response_class=Response)
def banner_script() -> Response:
    """The script a site embeds with one `<script src>` tag."""
    return Response(
        SCRIPT,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@banner.get(
    "/cookies/config", response_model=BannerConfigOut, summary="What the cookie banner shows"
)
def banner_config(ledger: LedgerDep, runtime: RuntimeDep, response: Response) -> BannerConfigOut:
    """The policy version in force, its cookie categories, and the notice with its digest."""
    with _answers_for_banner_errors():
        document = ledger.policy_in_force().document
    # Always revalidated: a new policy version must reach the next page load.
    response.headers["Cache-Control"] = "no-cache"
    notice = cookie_notice(document)
    return BannerConfigOut(
        policy_version=document.version,
        notice=notice,
        notice_sha256=notice_digest(notice),
        categories=[
            CookieCategoryOut(
                key=key,
                name=category.name,
                description=category.description,
                consent=category.consent,
                can_refuse=category.consent is not ConsentRequirement.NONE,
                sale_or_sharing=sells_or_shares(document, category),
                cookies=[t.name for t in category.trackers if t.kind == "cookie"],
            )
            for key, category in document.cookies.items()
        ],
        honors_gpc=document.signals.global_privacy_control is GpcAnswer.OPT_OUT_OF_SALE_AND_SHARING,
        storage=StorageOut(cookie=STORAGE_COOKIE, max_age_days=_storage_days(document)),
        privacy_policy_url=runtime.settings.public_url.rstrip("/") + "/privacy",
    )


@banner.post(
    "/cookies",
    status_code=201,
    response_model=CookieChoicesOut,
    summary="Record a visitor's cookie choices",
)
def record_cookie_choices(
    body: CookieChoicesIn, ledger: LedgerDep, sec_gpc: GpcHeader = None
) -> CookieChoicesOut:
    """One grant or withdrawal per purpose of each category that can be refused, in one
    transaction, proven by the banner's notice; no IP address or other request detail is kept."""
    with _answers_for_banner_errors():
        recorded = visitors.record_cookie_choices(
            ledger,
            body.consent_id,
            body.choices,
            policy_version=body.policy_version,
            gpc=body.gpc or sec_gpc == "1",
            prompted=body.prompted,
        )
    return CookieChoicesOut(
        consent_id=recorded.consent_id,
        policy_version=recorded.policy_version,
        choices=recorded.choices,
        gpc_honored=recorded.gpc_honored,
    )


@banner.get(
    "/cookies/{consent_id}",
    response_model=VisitorChoicesOut,
    summary="A visitor's cookie choices, from the ledger",
)
def read_cookie_choices(consent_id: SubjectId, ledger: LedgerDep) -> VisitorChoicesOut:
    """The visitor's current choice per category; `404` for an unknown consent ID."""
    with _answers_for_banner_errors():
        found = visitors.cookie_choices_of(ledger, consent_id)
    return VisitorChoicesOut(
        consent_id=found.consent_id,
        policy_version=found.policy_version,
        choices=found.choices,
        reprompt_blocked_until=found.reprompt_blocked_until,
    )


def _storage_days(document: PolicyDocument) -> int | None:
    lifetimes = [
        tracker.lifetime.approximate_days()
        for category in document.cookies.values()
        for tracker in category.trackers
        if tracker.name == STORAGE_COOKIE
    ]
    if not lifetimes:
        return None
    return max(1, min(int(min(lifetimes)), BROWSER_MAX_DAYS))


class BannerCors:
    """ASGI middleware answering CORS on the banner's `/consent/cookies` routes only, and only
    for the configured sites: the banner runs on the organization's pages and calls Pledge from
    there. No credentials: the script keeps the consent ID in the site's own cookie."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Sec-GPC"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the banner's requests through CORS; everything else passes untouched."""
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (
            path == "/consent/cookies" or path.startswith("/consent/cookies/")
        ):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
