"""The admin console's pages about children: parents' consents waiting for a check, the
evidence a parent sent (seen by staff, audited, destroyed once checked), and flagging a
subject found to be a child."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pledge.children.consents import ConsentNotFound, ConsentRefusedHere, ParentalConsents
from pledge.staff import ConsoleForm, Permission, Staff, console_page, require
from pledge.vault import SubjectErased, SubjectNotFound
from pledge.vault.rules import IdentityInvalid
from pledge.web import page_templates

pages = APIRouter(prefix="/console/children", tags=["admin console"], include_in_schema=False)
_templates = page_templates("pledge.children")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

Keeper = Annotated[Staff, Depends(require(Permission.MANAGE_CHILDREN))]


def consents_of(request: Request) -> ParentalConsents:
    """FastAPI dependency: the app's parental consents."""
    consents: ParentalConsents = request.app.state.parental_consents
    return consents


ConsentsDep = Annotated[ParentalConsents, Depends(consents_of)]


def _page(
    request: Request,
    consents: ParentalConsents,
    staff: Staff,
    code: int = 200,
    *,
    notice: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    return console_page(
        request,
        _templates,
        "console_children.html.j2",
        staff,
        code,
        consents=consents.waiting(),
        notice=notice,
        error=error,
    )


@pages.get("", response_class=HTMLResponse)
def children(request: Request, consents: ConsentsDep, staff: Keeper) -> HTMLResponse:
    """Consents waiting for a check first, then by the end of their window."""
    return _page(request, consents, staff)


@pages.get("/{consent_id}/evidence", response_model=None)
def evidence(consent_id: str, request: Request, consents: ConsentsDep, staff: Keeper) -> Response:
    """The file a parent sent, to check; the view is audited. Downloaded, never shown inline."""
    try:
        content, media_type = consents.evidence(consent_id[:36], actor=staff.actor)
    except ConsentNotFound:
        return _page(request, consents, staff, 404, error="No evidence waits under this ID.")
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": 'attachment; filename="parental-consent-evidence"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@pages.post("/{consent_id}/review", response_model=None)
def review(
    consent_id: str,
    request: Request,
    form: ConsoleForm,
    consents: ConsentsDep,
    staff: Keeper,
) -> Response:
    """Accept or refuse the evidence (`decision`: `accept` or `refuse`), saying what was checked
    (`reference`); the evidence is destroyed either way."""
    decision, reference = form.get("decision"), form.get("reference")
    if decision not in {"accept", "refuse"} or not isinstance(reference, str):
        return _page(request, consents, staff, 422, error="Choose accept or refuse, and say why.")
    try:
        consents.review(
            consent_id[:36],
            approve=decision == "accept",
            reference=reference[:500],
            actor=staff.actor,
        )
    except ConsentNotFound:
        return _page(request, consents, staff, 404, error="No consent waits for a check here.")
    except ConsentRefusedHere as refused:
        return _page(request, consents, staff, 422, error=str(refused))
    return RedirectResponse("/console/children", status.HTTP_303_SEE_OTHER)


@pages.post("/flag", response_model=None)
def flag(request: Request, form: ConsoleForm, consents: ConsentsDep, staff: Keeper) -> Response:
    """A subject found to be a child: frozen now, erased at the window's end unless a parent
    (asked at `parent_email`, if known) consents."""
    subject, reason, parent = form.get("subject_id"), form.get("reason"), form.get("parent_email")
    if not (isinstance(subject, str) and _UUID.fullmatch(subject.strip())):
        return _page(request, consents, staff, 422, error="Give the subject's ID.")
    if not (isinstance(reason, str) and reason.strip()):
        return _page(request, consents, staff, 422, error="Say how you found out.")
    try:
        consents.flag_child(
            subject.strip(),
            actor=staff.actor,
            reason=reason.strip()[:500],
            parent_email=parent.strip() if isinstance(parent, str) and parent.strip() else None,
        )
    except (SubjectNotFound, SubjectErased):
        return _page(request, consents, staff, 404, error="No live subject has this ID.")
    except IdentityInvalid:
        return _page(request, consents, staff, 422, error="That is not an e-mail address.")
    except ConsentRefusedHere as refused:
        return _page(request, consents, staff, 422, error=str(refused))
    return _page(request, consents, staff, notice="Frozen. The parent is asked, if known.")
