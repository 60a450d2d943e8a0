"""Privacy-center pages: prove an e-mail address with a code, then see and change choices."""

from __future__ import annotations

import hmac
import re
from itertools import groupby
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from pledge.consent import ConsentRefused
from pledge.privacy_center.rules import SESSION_LIFETIME, form_token
from pledge.privacy_center.service import PreferenceCenter, Visitor
from pledge.vault.rules import IdentityInvalid
from pledge.web import form_post_allowed, page_templates

pages = APIRouter(prefix="/privacy-center", tags=["privacy center"])
_templates = page_templates("pledge.privacy_center")

COOKIE = "pledge_session"
"""The session cookie, as the policy's cookie table lists it (strictly necessary)."""
MAX_FORM_FIELDS = 200


def center_of(request: Request) -> PreferenceCenter:
    """FastAPI dependency: the app's privacy center."""
    center: PreferenceCenter = request.app.state.privacy_center
    return center


CenterDep = Annotated[PreferenceCenter, Depends(center_of)]


async def small_form(request: Request) -> FormData:
    """A page's form, read on the event loop; the handlers using it are plain functions, which
    FastAPI runs in worker threads, so their database work never blocks the loop."""
    return await request.form(max_fields=5)


async def choices_form(request: Request) -> FormData:
    """The preferences form: one field per choice shown, and its state."""
    return await request.form(max_fields=MAX_FORM_FIELDS)


SmallForm = Annotated[FormData, Depends(small_form)]
ChoicesForm = Annotated[FormData, Depends(choices_form)]


def same_origin(request: Request) -> None:
    """FastAPI dependency of every POST here, run before anything else: `403`, and nothing
    read or changed, unless the request's `Origin` (or, without one, its `Referer`) is the
    origin of `PLEDGE_PUBLIC_URL`; `Origin: null` passes only with `Sec-Fetch-Site:
    same-origin`, and a request with neither header (not a browser) passes, as before. The
    exact rule is `post_origin_allowed`'s."""
    public_url: str = request.app.state.runtime.settings.public_url
    if not form_post_allowed(public_url, request.headers):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="a form of another site may not post to the privacy center",
        )


SameOrigin = [Depends(same_origin)]


_NEXT = re.compile(r"^/privacy-center/[A-Za-z0-9/_.=&?-]{0,200}$")


def safe_next(value: object) -> str | None:
    """Where to go after signing in: a privacy-center path, never another site."""
    if isinstance(value, str) and _NEXT.fullmatch(value) and "//" not in value:
        return value
    return None


def _gpc(request: Request) -> bool:
    return request.headers.get("sec-gpc") == "1"


def _render(
    center: PreferenceCenter, template: str, code: int = 200, **values: object
) -> HTMLResponse:
    organization = center.ledger.policy_in_force().document.organization
    page = {"next": None, "purpose": None, **values}
    html = _templates.get_template(template).render(
        organization_name=organization.trade_name or organization.legal_name, **page
    )
    return HTMLResponse(html, status_code=code, headers={"Cache-Control": "no-store"})


@pages.get("", response_class=HTMLResponse, summary="Privacy center home")
def home(center: CenterDep) -> HTMLResponse:
    """Where a person starts: their choices, the policy, and how to reach the privacy team."""
    organization = center.ledger.policy_in_force().document.organization
    return _render(center, "center_home.html.j2", privacy_email=organization.privacy_email)


@pages.get("/preferences", response_class=HTMLResponse, summary="Privacy choices page")
def preferences(request: Request, center: CenterDep) -> HTMLResponse:
    """The e-mail form, or, in a session, every choice with its state. A browser sending
    `Sec-GPC: 1` has its opt-out of sale and sharing recorded and sees "Opt-out request
    honored"."""
    token = request.cookies.get(COOKIE)
    visitor = center.visitor(token)
    gpc = _gpc(request) and center.ledger.gpc_is_honored()
    if visitor is None or token is None:
        return _render(center, "center_email.html.j2", gpc=gpc, error=None)
    return _choices_page(request, center, visitor, token, gpc=gpc)


def _choices_page(
    request: Request, center: CenterDep, visitor: Visitor, token: str, *, gpc: bool
) -> HTMLResponse:
    groups: list[tuple[str, list[object]]] = []
    if visitor.subject_id is not None:
        if gpc:
            center.honor_gpc(visitor.subject_id)
        shown = center.choices(visitor.subject_id)
        groups = [(g, list(c)) for g, c in groupby(shown, key=lambda s: s.item.group)]
    saved = request.query_params.get("saved")
    return _render(
        center,
        "center_choices.html.j2",
        gpc=gpc,
        groups=groups,
        saved=int(saved) if saved and saved.isdigit() else None,
        form_token=form_token(center.secret, token),
    )


@pages.post(
    "/preferences/code",
    response_class=HTMLResponse,
    summary="Send a one-time code",
    dependencies=SameOrigin,
)
def send_code(form: SmallForm, center: CenterDep) -> HTMLResponse:
    """Send a 6-digit code to the address in the form (`email`). The answer is the same
    whether or not the address is known to Pledge. A cross-origin POST (`same_origin`) gets
    `403` and sends nothing."""
    email, next_path = form.get("email"), safe_next(form.get("next"))
    purpose = (
        "request"
        if next_path and next_path.startswith("/privacy-center/requests")
        else "children"
        if next_path and next_path.startswith("/privacy-center/children")
        else None
    )
    if not isinstance(email, str) or len(email) > 320:
        return _render(
            center,
            "center_email.html.j2",
            422,
            gpc=False,
            error="Enter an e-mail address.",
            next=next_path,
            purpose=purpose,
        )
    try:
        challenge = center.request_code(email)
    except IdentityInvalid:
        return _render(
            center,
            "center_email.html.j2",
            422,
            gpc=False,
            error="That is not an e-mail address.",
            next=next_path,
            purpose=purpose,
        )
    return _render(center, "center_code.html.j2", challenge=challenge, error=None, next=next_path)


@pages.post(
    "/preferences/verify",
    response_model=None,
    summary="Check a one-time code",
    dependencies=SameOrigin,
)
def verify_code(request: Request, form: SmallForm, center: CenterDep) -> Response:
    """With the right code (`challenge`, `code`), open a 30-minute session and go to the
    choices; a wrong or expired code counts as one of its 5 attempts. A cross-origin POST
    (`same_origin`) gets `403`: no session, and no attempt counted."""
    challenge, code = form.get("challenge"), form.get("code")
    next_path = safe_next(form.get("next"))
    token = None
    if isinstance(challenge, str) and isinstance(code, str) and len(challenge) <= 36:
        token = center.verify(challenge, code.strip())
    if token is None:
        return _render(
            center,
            "center_code.html.j2",
            400,
            challenge=challenge if isinstance(challenge, str) else "",
            error="That code is wrong or has expired. Try again, or ask for a new code.",
            next=next_path,
        )
    response = RedirectResponse(
        next_path or "/privacy-center/preferences", status.HTTP_303_SEE_OTHER
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/privacy-center",
        secure=request.app.state.runtime.settings.public_url.startswith("https://"),
        httponly=True,
        samesite="strict",
    )
    return response


@pages.post(
    "/preferences", response_model=None, summary="Save privacy choices", dependencies=SameOrigin
)
def save_choices(request: Request, form: ChoicesForm, center: CenterDep) -> Response:
    """Record each choice that changed (method `preferences_page`); back to the page."""
    token = request.cookies.get(COOKIE)
    visitor = center.visitor(token)
    if (
        visitor is None
        or token is None
        or not _form_token_ok(center, token, form.get("form_token"))
    ):
        return RedirectResponse("/privacy-center/preferences", status.HTTP_303_SEE_OTHER)
    changed = 0
    if visitor.subject_id is not None:
        on = {v for v in form.getlist("on") if isinstance(v, str)}
        wanted = {p: p in on for p in form.getlist("shown") if isinstance(p, str)}
        try:
            changed = center.save(visitor.subject_id, wanted)
        except ConsentRefused:
            # Under 13, or a child found without a parent's consent: only a parent chooses.
            changed = 0
    return RedirectResponse(
        f"/privacy-center/preferences?saved={changed}", status.HTTP_303_SEE_OTHER
    )


@pages.post(
    "/sign-out",
    response_model=None,
    summary="End the privacy-center session",
    dependencies=SameOrigin,
)
def sign_out(request: Request, form: SmallForm, center: CenterDep) -> Response:
    """End the session and forget its cookie."""
    token = request.cookies.get(COOKIE)
    if token and _form_token_ok(center, token, form.get("form_token")):
        center.sign_out(token)
    response = RedirectResponse("/privacy-center/preferences", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/privacy-center")
    return response


def _form_token_ok(center: PreferenceCenter, token: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(form_token(center.secret, token), given)
