"""The admin console's request pages: the queue sorted by due date, a request with its
verification state, deadlines, history and the actions the staff member's role allows, the
form for requests received by e-mail, phone or post, and the records as CSV."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from pledge.policy.document import RequestKind
from pledge.requests.rules import (
    GDPR_COUNTRIES,
    OPEN_STATUSES,
    STAFF_CHANNELS,
    TRANSITIONS,
    Channel,
    Status,
    TransitionRefused,
)
from pledge.requests.service import (
    Agent,
    Correction,
    Details,
    ExtensionRefused,
    Intake,
    IntakeRefused,
    RequestDesk,
    RequestNotFound,
    StaffTextRefused,
)
from pledge.staff import ConsoleForm, Permission, Staff, console_page, require
from pledge.web import page_templates

pages = APIRouter(prefix="/console/requests", tags=["admin console"], include_in_schema=False)
_templates = page_templates("pledge.requests")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_RESIDENCE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
QUEUE_LIMIT = 500

Viewer = Annotated[Staff, Depends(require(Permission.VIEW_QUEUE))]
Revealer = Annotated[Staff, Depends(require(Permission.VIEW_REQUESTER))]
Enterer = Annotated[Staff, Depends(require(Permission.ENTER_REQUEST))]
Verifier = Annotated[Staff, Depends(require(Permission.VERIFY_REQUEST))]
Decider = Annotated[Staff, Depends(require(Permission.DECIDE_REQUEST))]
Exporter = Annotated[Staff, Depends(require(Permission.EXPORT_RECORDS))]


def desk_of(request: Request) -> RequestDesk:
    """FastAPI dependency: the app's request desk."""
    desk: RequestDesk = request.app.state.requests
    return desk


DeskDep = Annotated[RequestDesk, Depends(desk_of)]

VIEWS = {
    "open": "Open, soonest due first",
    "overdue": "Overdue",
    "all": "All, soonest due first",
}


@pages.get("", response_class=HTMLResponse)
def queue(
    request: Request, desk: DeskDep, staff: Viewer, view: str = "open", kind: str = ""
) -> HTMLResponse:
    """The queue: open requests (or overdue ones, or all), soonest due first, with the days
    left and the overdue flags."""
    view = view if view in VIEWS else "open"
    today = desk.today()
    requests = desk.queue(
        open_only=view == "open",
        overdue_on=today if view == "overdue" else None,
        limit=QUEUE_LIMIT,
    )
    if kind in set(RequestKind):
        requests = [r for r in requests if r.kind is RequestKind(kind)]
    return console_page(
        request,
        _templates,
        "console_queue.html.j2",
        staff,
        requests=requests,
        today=today,
        view=view,
        views=VIEWS,
        kind=kind,
        kinds=list(RequestKind),
    )


@pages.get("/new", response_class=HTMLResponse)
def new_request(request: Request, staff: Enterer) -> HTMLResponse:
    """The form for a request received by e-mail, phone or post."""
    return _new_page(request, staff, 200, error=None)


def _new_page(request: Request, staff: Staff, code: int, *, error: str | None) -> HTMLResponse:
    document = desk_of(request).policy()
    return console_page(
        request,
        _templates,
        "console_new_request.html.j2",
        staff,
        code,
        kinds=list(RequestKind),
        channels=sorted(STAFF_CHANNELS),
        categories=sorted(
            (key, document.category_name(key))
            for key, spec in document.data_categories.items()
            if spec.linkable
        ),
        gdpr=sorted(GDPR_COUNTRIES),
        error=error,
    )


@pages.post("", response_model=None)
def enter_request(request: Request, form: ConsoleForm, desk: DeskDep, staff: Enterer) -> Response:
    """Receive a request a staff member typed in; the person is acknowledged by e-mail when an
    address was given. 303 to the request's page, or the form again with what to fix."""
    try:
        intake = _staff_intake(form, staff)
        request_id = desk.submit(intake, actor=staff.actor)
    except IntakeRefused as refused:
        return _new_page(request, staff, 422, error=str(refused))
    return RedirectResponse(f"/console/requests/{request_id}", status.HTTP_303_SEE_OTHER)


def _staff_intake(form: FormData, staff: Staff) -> Intake:
    fields = {name: form.get(name) for name in _INTAKE_FIELDS}
    text = {k: v.strip() if isinstance(v, str) else "" for k, v in fields.items()}
    if text["kind"] not in set(RequestKind):
        raise IntakeRefused("Choose what the person asks for.")
    if text["channel"] not in {c.value for c in STAFF_CHANNELS}:
        raise IntakeRefused("Choose how the request arrived: e-mail, phone or post.")
    residence = text["residence"].upper()
    if not _RESIDENCE.fullmatch(residence):
        raise IntakeRefused("Residence is an ISO 3166 code: US-CA, FR, ...")
    too_long = [k for k, v in text.items() if len(v) > (320 if k == "email" else 300)]
    if too_long:
        raise IntakeRefused(f"Too long: {', '.join(too_long)} (300 characters at most).")
    agent = None
    if text["agent_name"] or text["agent_document"]:
        if not (text["agent_name"] and text["agent_document"]):
            raise IntakeRefused("An agent needs a name and the reference of the signed permission.")
        agent = Agent(text["agent_name"], text["agent_document"])
    corrections = []
    if text["kind"] == RequestKind.CORRECTION.value:
        if not (text["correction_category"] and text["correction_value"]):
            raise IntakeRefused("A correction says what is wrong and what is right.")
        corrections = [Correction(text["correction_category"], text["correction_value"])]
    received_at = None
    if text["received_on"]:
        try:
            day = dt.date.fromisoformat(text["received_on"])
        except ValueError:
            raise IntakeRefused("The day it arrived is a date: YYYY-MM-DD.") from None
        now = dt.datetime.now(dt.UTC)
        received_at = min(now, dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC))
    return Intake(
        kind=RequestKind(text["kind"]),
        channel=Channel(text["channel"]),
        residence=residence,
        email=text["email"] or None,
        agent=agent,
        corrections=corrections,
        entered_by=staff.member.username,
        received_at=received_at,
    )


_INTAKE_FIELDS = (
    "kind",
    "channel",
    "residence",
    "email",
    "agent_name",
    "agent_document",
    "correction_category",
    "correction_value",
    "received_on",
)


@pages.get("/export.csv")
def export(desk: DeskDep, _staff: Exporter) -> StreamingResponse:
    """The request records as CSV (no personal data)."""
    return StreamingResponse(
        desk.export_csv(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="privacy-requests.csv"',
            "Cache-Control": "no-store",
        },
    )


@pages.get("/{request_id}", response_class=HTMLResponse)
def show(request_id: str, request: Request, desk: DeskDep, staff: Viewer) -> HTMLResponse:
    """One request: what and when, its verification state, deadlines, every move of its
    status, what fulfilment did, and the actions the role allows in its status."""
    done = request.query_params.get("done")
    return _request_page(request, desk, staff, request_id, notice=_DONE.get(done or ""))


_DONE = {
    "verified": "Recorded as verified.",
    "acknowledged": "Recorded as acknowledged.",
    "approved": "Approved: the work has started.",
    "denied": "Denied; the person was told why and how to appeal.",
    "extended": "Extended; the person was told why and the new date.",
}


def _request_page(
    request: Request,
    desk: RequestDesk,
    staff: Staff,
    request_id: str,
    code: int = 200,
    *,
    notice: str | None = None,
    error: str | None = None,
    details: Details | None = None,
) -> HTMLResponse:
    if not _UUID.fullmatch(request_id):
        return console_page(request, _templates, "console_missing.html.j2", staff, 404)
    try:
        found = desk.record_of(request_id)
    except RequestNotFound:
        return console_page(request, _templates, "console_missing.html.j2", staff, 404)
    view, moves, today = found.request, found.transitions, found.today
    allowed = TRANSITIONS[view.status]
    member = staff.member
    actions: dict[str, Any] = {
        "verify": member.may(Permission.VERIFY_REQUEST) and Status.VERIFIED in allowed,
        "acknowledge": member.may(Permission.VERIFY_REQUEST)
        and view.acknowledged_at is None
        and view.status in OPEN_STATUSES,
        "approve": member.may(Permission.DECIDE_REQUEST)
        and Status.IN_PROGRESS in allowed
        and view.verified_at is not None
        and view.work_started_at is None,
        "deny": member.may(Permission.DECIDE_REQUEST)
        and Status.DENIED in allowed
        and view.work_started_at is None,
        "extend": member.may(Permission.DECIDE_REQUEST)
        and view.status in OPEN_STATUSES
        and not view.extended
        and today <= view.answer_by,
        "reveal": member.may(Permission.VIEW_REQUESTER) and details is None,
        "package": member.may(Permission.VIEW_REQUESTER)
        and view.status is Status.COMPLETED
        and view.kind in {RequestKind.ACCESS, RequestKind.PORTABILITY},
    }
    return console_page(
        request,
        _templates,
        "console_request.html.j2",
        staff,
        code,
        view=view,
        moves=moves,
        today=today,
        overdue=view.overdue(today),
        ack_overdue=view.acknowledgement_overdue(today),
        attempts_left=max(0, desk.attempts_allowed() - view.attempts),
        actions=actions,
        notice=notice,
        error=error,
        details=details,
    )


@pages.post("/{request_id}/details", response_class=HTMLResponse)
def reveal(request_id: str, request: Request, desk: DeskDep, staff: Revealer) -> HTMLResponse:
    """Show the requester's details (address, residence, agent, corrections) to answer the
    request; the view is audited with its purpose."""
    try:
        details = (
            desk.reveal(request_id, actor=staff.actor) if _UUID.fullmatch(request_id) else None
        )
    except RequestNotFound:
        details = None
    if details is None:
        return console_page(request, _templates, "console_missing.html.j2", staff, 404)
    return _request_page(request, desk, staff, request_id, details=details)


@pages.post("/{request_id}/package", response_model=None)
def package(request_id: str, request: Request, desk: DeskDep, staff: Revealer) -> Response:
    """The access package as JSON, for staff to send by post to a requester who gave no
    e-mail address; audited."""
    if not _UUID.fullmatch(request_id):
        return console_page(request, _templates, "console_missing.html.j2", staff, 404)
    try:
        text = desk.package_for_staff(request_id, actor=staff.actor)
    except RequestNotFound:
        return console_page(request, _templates, "console_missing.html.j2", staff, 404)
    return Response(
        text,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="privacy-package-{request_id[:8]}.json"',
            "Cache-Control": "no-store",
        },
    )


def _act(
    request: Request,
    desk: RequestDesk,
    staff: Staff,
    request_id: str,
    *,
    done: str,
    action: str,
    **arguments: str | None,
) -> Response:
    if not _UUID.fullmatch(request_id):
        return console_page(request, _templates, "console_missing.html.j2", staff, 404)
    try:
        getattr(desk, action)(request_id, actor=staff.actor, **arguments)
    except RequestNotFound:
        return console_page(request, _templates, "console_missing.html.j2", staff, 404)
    except StaffTextRefused as refused:
        return _request_page(request, desk, staff, request_id, 422, error=str(refused))
    except (TransitionRefused, ExtensionRefused, IntakeRefused) as refused:
        return _request_page(request, desk, staff, request_id, 409, error=str(refused))
    return RedirectResponse(
        f"/console/requests/{request_id}?done={done}", status.HTTP_303_SEE_OTHER
    )


def _text(form: FormData, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@pages.post("/{request_id}/verify", response_model=None)
def verify(
    request_id: str, request: Request, form: ConsoleForm, desk: DeskDep, staff: Verifier
) -> Response:
    """Record that the person's identity was checked (`note`: how, never the values); for a
    request received without an address, `subject_id` says whom it concerns."""
    note, subject = _text(form, "note"), _text(form, "subject_id", 36)
    if not note:
        return _request_page(
            request, desk, staff, request_id, 422, error="Say how the identity was checked."
        )
    if subject and not _UUID.fullmatch(subject):
        return _request_page(request, desk, staff, request_id, 422, error="No such subject ID.")
    return _act(
        request,
        desk,
        staff,
        request_id,
        done="verified",
        action="staff_verify",
        note=note,
        subject_id=subject or None,
    )


@pages.post("/{request_id}/acknowledge", response_model=None)
def acknowledge(
    request_id: str, request: Request, form: ConsoleForm, desk: DeskDep, staff: Verifier
) -> Response:
    """Record that the request was acknowledged by letter or call (`note`)."""
    note = _text(form, "note")
    if not note:
        return _request_page(
            request, desk, staff, request_id, 422, error="Say how it was acknowledged."
        )
    return _act(
        request, desk, staff, request_id, done="acknowledged", action="acknowledge", note=note
    )


@pages.post("/{request_id}/approve", response_model=None)
def approve(request_id: str, request: Request, desk: DeskDep, staff: Decider) -> Response:
    """Start the work on a verified request."""
    return _act(request, desk, staff, request_id, done="approved", action="approve")


@pages.post("/{request_id}/deny", response_model=None)
def deny(
    request_id: str, request: Request, form: ConsoleForm, desk: DeskDep, staff: Decider
) -> Response:
    """Deny, with the `reason` the person is told (with how to appeal)."""
    reason = _text(form, "reason")
    if not reason:
        return _request_page(request, desk, staff, request_id, 422, error="Give the reason.")
    return _act(request, desk, staff, request_id, done="denied", action="deny", reason=reason)


@pages.post("/{request_id}/extend", response_model=None)
def extend(
    request_id: str, request: Request, form: ConsoleForm, desk: DeskDep, staff: Decider
) -> Response:
    """Extend the deadline once, with the `reason` the person is told."""
    reason = _text(form, "reason")
    if not reason:
        return _request_page(
            request, desk, staff, request_id, 422, error="Give the reason for the person."
        )
    return _act(request, desk, staff, request_id, done="extended", action="extend", reason=reason)
