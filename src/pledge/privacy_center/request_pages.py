"""Privacy-center pages for requests: make one, confirm it, follow it, download the answer.

Anyone may make a request; nothing on the page or in its timing says whether the address is
known. Seeing a request, confirming it and downloading its package need a privacy-center
session opened with a code sent to the request's address."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from pledge.policy.document import OPT_OUT_KINDS, RequestKind, VerificationTier
from pledge.privacy_center.routes import COOKIE, CenterDep, SameOrigin, _form_token_ok, _render
from pledge.privacy_center.rules import form_token
from pledge.privacy_center.service import PreferenceCenter
from pledge.requests import (
    DECLARATION,
    Channel,
    Correction,
    Intake,
    IntakeRefused,
    RequestDesk,
    RequestNotFound,
    Status,
)
from pledge.requests.package import readable_sections
from pledge.requests.rules import GDPR_COUNTRIES

pages = APIRouter(prefix="/privacy-center/requests", tags=["privacy center"])


def desk_of(request: Request) -> RequestDesk:
    """FastAPI dependency: the app's request desk."""
    desk: RequestDesk = request.app.state.requests
    return desk


DeskDep = Annotated[RequestDesk, Depends(desk_of)]


async def request_form(request: Request) -> FormData:
    """A request form: a handful of fields."""
    return await request.form(max_fields=20)


RequestForm = Annotated[FormData, Depends(request_form)]

KIND_TEXT = {
    RequestKind.ACCESS: "See the personal information you hold about me",
    RequestKind.PORTABILITY: "Give me my personal information in a portable form",
    RequestKind.CORRECTION: "Correct personal information about me",
    RequestKind.DELETION: "Delete the personal information you hold about me",
    RequestKind.OPT_OUT_SALE_SHARING: "Do not sell or share my personal information",
    RequestKind.LIMIT_SENSITIVE: "Limit the use of my sensitive personal information",
    RequestKind.UNSUBSCRIBE: "Stop all marketing messages to me",
}

STATUS_TEXT = {
    Status.RECEIVED: "Received",
    Status.AWAITING_VERIFICATION: "Waiting for you to confirm who you are",
    Status.VERIFIED: "Confirmed; waiting for our privacy team",
    Status.IN_PROGRESS: "Being carried out",
    Status.EXTENDED: "Being carried out; we need more time",
    Status.COMPLETED: "Done",
    Status.DENIED: "Refused",
}

US_STATES = (
    *("AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN"),
    *("IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH"),
    *("NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT"),
    *("VT", "VA", "WA", "WV", "WI", "WY"),
)
RESIDENCES = [
    *[(f"US-{state}", f"United States, {state}") for state in US_STATES],
    *[(country, country) for country in sorted(GDPR_COUNTRIES)],
    ("ZZ", "Another country"),
]
"""What the form offers: US states (two-letter codes) and the countries whose law differs."""


def _visitor_index(request: Request, center: PreferenceCenter) -> tuple[str | None, str | None]:
    token = request.cookies.get(COOKIE)
    visitor = center.visitor(token)
    return (None, None) if visitor is None else (visitor.email_index, token)


def _sign_in(center: PreferenceCenter, next_path: str, purpose: str = "request") -> HTMLResponse:
    return _render(
        center, "center_email.html.j2", gpc=False, error=None, next=next_path, purpose=purpose
    )


@pages.get("", response_class=HTMLResponse, summary="Make a privacy request")
def new_request(request: Request, center: CenterDep, desk: DeskDep) -> HTMLResponse:
    """The request form, and, in a session, the requests made under the proven address."""
    email_index, _ = _visitor_index(request, center)
    mine = desk.requests_of(email_index) if email_index else []
    document = center.ledger.policy_in_force().document
    return _render(
        center,
        "request_form.html.j2",
        kinds=KIND_TEXT,
        residences=RESIDENCES,
        categories=sorted(
            (key, document.category_name(key))
            for key, spec in document.data_categories.items()
            if spec.shown_in_access_requests and spec.linkable
        ),
        mine=mine,
        status_text=STATUS_TEXT,
        error=None,
    )


@pages.post(
    "", response_class=HTMLResponse, summary="Send a privacy request", dependencies=SameOrigin
)
def submit_request(form: RequestForm, center: CenterDep, desk: DeskDep) -> HTMLResponse:
    """Receive a request from the form. The answer is the same whether or not the address is
    known: the next step is in the message sent to it."""
    error = None
    try:
        intake = _intake(form)
        desk.submit(intake, actor="privacy center")
    except IntakeRefused as refused:
        error = str(refused)
    except ValueError:
        error = "That is not an e-mail address."
    if error is not None:
        document = center.ledger.policy_in_force().document
        return _render(
            center,
            "request_form.html.j2",
            422,
            kinds=KIND_TEXT,
            residences=RESIDENCES,
            categories=sorted(
                (key, document.category_name(key)) for key in document.data_categories
            ),
            mine=[],
            status_text=STATUS_TEXT,
            error=error,
        )
    return _render(center, "request_received.html.j2", opt_out=intake.kind in OPT_OUT_KINDS)


def _intake(form: FormData) -> Intake:
    """The request the form describes; raise `IntakeRefused` with what to fix."""
    kind, email, residence = form.get("kind"), form.get("email"), form.get("residence")
    category, value = form.get("correction_category"), form.get("correction_value")
    if not (isinstance(kind, str) and kind in set(RequestKind)):
        raise IntakeRefused("Choose what you are asking for.")
    if not (isinstance(email, str) and 0 < len(email) <= 320):
        raise IntakeRefused("Enter an e-mail address.")
    if not (isinstance(residence, str) and residence in dict(RESIDENCES)):
        raise IntakeRefused("Choose where you live.")
    corrections = []
    if RequestKind(kind) is RequestKind.CORRECTION:
        if not (isinstance(category, str) and isinstance(value, str) and value.strip()):
            raise IntakeRefused("Say what is wrong and what is right.")
        if len(value) > 300:
            raise IntakeRefused("The correct value is too long (300 characters at most).")
        corrections = [Correction(category, value.strip())]
    return Intake(
        kind=RequestKind(kind),
        channel=Channel.PRIVACY_CENTER,
        residence=residence,
        email=email,
        corrections=corrections,
    )


@pages.get("/{request_id}", response_class=HTMLResponse, summary="Follow a privacy request")
def show_request(
    request_id: str, request: Request, center: CenterDep, desk: DeskDep
) -> HTMLResponse:
    """The request's state and due date; while it waits for confirmation, the form to prove
    who you are. Needs a session for the request's address (a sign-in form otherwise)."""
    email_index, token = _visitor_index(request, center)
    if email_index is None or token is None:
        return _sign_in(center, f"/privacy-center/requests/{request_id}")
    try:
        view = desk.of_requester(request_id, email_index)
    except RequestNotFound:
        return _render(center, "request_missing.html.j2", 404)
    document = center.ledger.policy_in_force().document
    needed = max(0, view.tier.data_points - 1)
    return _render(
        center,
        "request_status.html.j2",
        view=view,
        kind_text=KIND_TEXT[view.kind],
        status_text=STATUS_TEXT[view.status],
        awaiting=view.status is Status.AWAITING_VERIFICATION,
        needed=needed,
        data_points=[(key, document.category_name(key)) for key in document.requests.data_points],
        declaration=DECLARATION
        if view.tier is VerificationTier.THREE_DATA_POINTS_AND_DECLARATION
        else None,
        attempts_left=document.requests.attempts - view.attempts,
        form_token=form_token(center.secret, token),
        appeal=document.requests.appeal_instructions,
        verified=request.query_params.get("verified"),
    )


@pages.post(
    "/{request_id}/verify",
    response_model=None,
    summary="Prove who you are for a request",
    dependencies=SameOrigin,
)
def verify_request(
    request_id: str, request: Request, form: RequestForm, center: CenterDep, desk: DeskDep
) -> Response:
    """Check the data points (and the signed declaration) against what is held; a wrong set
    uses up one of the request's attempts."""
    email_index, token = _visitor_index(request, center)
    page = f"/privacy-center/requests/{request_id}"
    if (
        email_index is None
        or token is None
        or not _form_token_ok(center, token, form.get("form_token"))
    ):
        return RedirectResponse(page, status.HTTP_303_SEE_OTHER)
    document = center.ledger.policy_in_force().document
    points = {
        key: value[:300]
        for key in document.requests.data_points
        if isinstance(value := form.get(f"point:{key}"), str) and value.strip()
    }
    declared = form.get("declaration_name")
    try:
        result = desk.verify(
            request_id,
            email_index=email_index,
            data_points=points,
            declaration_by=declared[:200]
            if isinstance(declared, str) and form.get("declare") == "yes"
            else None,
        )
    except RequestNotFound:
        return _render(center, "request_missing.html.j2", 404)
    outcome = "no" if result.status is Status.AWAITING_VERIFICATION else "yes"
    return RedirectResponse(f"{page}?verified={outcome}", status.HTTP_303_SEE_OTHER)


@pages.get("/{request_id}/package", response_model=None, summary="Download an access package")
def download_package(
    request_id: str, request: Request, center: CenterDep, desk: DeskDep, token: str = ""
) -> Response:
    """The package of a completed access request: `format=json` (machine-readable, schema in
    docs/access-package.schema.json) or the readable page. Needs the link's token and a
    session for the request's address."""
    email_index, _ = _visitor_index(request, center)
    wanted = request.query_params.get("format", "html")
    if email_index is None:
        return _sign_in(center, f"/privacy-center/requests/{request_id}/package?token={token[:64]}")
    try:
        text = desk.package(request_id, token=token[:64], email_index=email_index)
    except RequestNotFound:
        return _render(center, "request_missing.html.j2", 404)
    headers = {"Cache-Control": "no-store"}
    if wanted == "json":
        headers["Content-Disposition"] = (
            f'attachment; filename="privacy-package-{request_id[:8]}.json"'
        )
        return Response(text, media_type="application/json", headers=headers)
    package = json.loads(text)
    return _render(
        center,
        "request_package.html.j2",
        package=package,
        sections=readable_sections(package),
        json_link=f"/privacy-center/requests/{request_id}/package?token={token}&format=json",
    )
