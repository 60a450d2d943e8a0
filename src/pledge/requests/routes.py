"""HTTP routes of privacy requests: intake from integrating services and staff tools, the
queue sorted by due date, staff decisions, and the records as CSV."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from pledge.apikeys import Caller, require_scope
from pledge.policy.document import RequestKind, VerificationTier
from pledge.requests.rules import Channel, Regime, Status, TransitionRefused
from pledge.requests.service import (
    Agent,
    Correction,
    ExtensionRefused,
    Intake,
    IntakeRefused,
    RequestDesk,
    RequestNotFound,
    RequestView,
    StaffTextRefused,
)

api = APIRouter(prefix="/v1/requests", tags=["privacy requests"])

RequestId = Annotated[
    str,
    Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
Line = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=300, pattern=r"^[^\x00-\x1f]+$")
]
Paragraph = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=2000, pattern=r"^[^\x00]+$")
]


def desk_of(request: Request) -> RequestDesk:
    """FastAPI dependency: the app's request desk."""
    desk: RequestDesk = request.app.state.requests
    return desk


DeskDep = Annotated[RequestDesk, Depends(desk_of)]
Reader = Annotated[Caller, Depends(require_scope("requests:read"))]
Writer = Annotated[Caller, Depends(require_scope("requests:write"))]


class AgentIn(BaseModel):
    """An authorized agent and the reference of the person's signed permission."""

    model_config = ConfigDict(extra="forbid")

    name: Line
    document_reference: Line


class CorrectionIn(BaseModel):
    """What is right, for one category."""

    model_config = ConfigDict(extra="forbid")

    category: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    value: Line


class RequestIn(BaseModel):
    """A privacy request as received. Channels `email`, `phone` and `post` are requests a staff
    member types in, and need `entered_by`."""

    model_config = ConfigDict(extra="forbid")

    kind: RequestKind
    email: Annotated[str, StringConstraints(strict=True, max_length=320)] | None = None
    residence: Annotated[
        str, StringConstraints(strict=True, pattern=r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$")
    ]
    """ISO 3166: a country (`FR`) or a US state (`US-CA`); it picks the law's deadlines."""
    channel: Channel = Channel.API
    entered_by: Line | None = None
    agent: AgentIn | None = None
    corrections: Annotated[list[CorrectionIn], Field(max_length=50)] = Field(default_factory=list)
    received_at: AwareDatetime | None = None
    """When it arrived, if earlier (up to 30 days), with its time zone: a letter opened today
    that came before."""

    @field_validator("channel")
    @classmethod
    def _not_the_privacy_center(cls, channel: Channel) -> Channel:
        if channel is Channel.PRIVACY_CENTER:
            raise ValueError("requests from the privacy center come through its own pages")
        return channel


class RequestOut(BaseModel):
    """A request in the queue. `overdue` and `acknowledgement_overdue` are as of today in the
    business's time zone."""

    id: str
    kind: RequestKind
    channel: Channel
    status: Status
    regime: Regime
    tier: VerificationTier
    by_agent: bool
    entered_by: str | None
    subject_id: str | None
    attempts: int
    staff_check: bool
    """Too little is held to verify the person online: staff must verify them another way."""
    received_at: dt.datetime
    received_on: dt.date
    acknowledge_by: dt.date | None
    acknowledged_at: dt.datetime | None
    answer_by: dt.date
    extended: bool
    due: dt.date
    overdue: bool
    acknowledgement_overdue: bool
    verified_at: dt.datetime | None
    work_started_at: dt.datetime | None
    """When the job carrying it out was queued; from then on it cannot be denied."""
    closed_at: dt.datetime | None
    denial_reason: str | None
    outcome: dict[str, Any] | None
    package_ready: bool


class TransitionOut(BaseModel):
    """One move of the status."""

    from_status: Status | None
    to_status: Status
    actor: str
    at: dt.datetime
    note: str | None


class RequestDetailOut(RequestOut):
    """A request with every move of its status."""

    transitions: list[TransitionOut]


class ReasonIn(BaseModel):
    """A reason the person is told (a denial, an extension) or a note for the record."""

    model_config = ConfigDict(extra="forbid")

    reason: Paragraph


class StaffVerificationIn(BaseModel):
    """How a staff member checked the person (never the values compared), and, for a request
    received without an e-mail address, the vault subject it concerns."""

    model_config = ConfigDict(extra="forbid")

    note: Paragraph
    subject_id: (
        Annotated[
            str,
            StringConstraints(
                pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
            ),
        ]
        | None
    ) = None


def _out(view: RequestView, today: dt.date) -> RequestOut:
    """`view` as the API shows it, its overdue flags as of `today` (the business's day)."""
    return RequestOut(
        **{
            **view.__dict__,
            "overdue": view.overdue(today),
            "acknowledgement_overdue": view.acknowledgement_overdue(today),
        }
    )


def _failures(error: Exception) -> HTTPException:
    if isinstance(error, RequestNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail="no such request")
    if isinstance(error, StaffTextRefused):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error))
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(error))


@api.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RequestOut,
    summary="Receive a privacy request",
)
def submit(body: RequestIn, desk: DeskDep, caller: Writer) -> RequestOut:
    """Receive a request; the person is acknowledged by e-mail at once, with the date of the
    answer and how to confirm it. Opt-outs are carried out at once (the law asks no proof);
    other kinds wait for the person to prove their address in the privacy center."""
    intake = Intake(
        kind=body.kind,
        channel=body.channel,
        residence=body.residence,
        email=body.email,
        agent=None if body.agent is None else Agent(**body.agent.model_dump()),
        corrections=[Correction(**c.model_dump()) for c in body.corrections],
        entered_by=body.entered_by,
        received_at=body.received_at,
    )
    try:
        request_id = desk.submit(intake, actor=caller.actor)
    except IntakeRefused as refused:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(refused)) from None
    return _out(desk.get(request_id), desk.today())


@api.get("", response_model=list[RequestOut], summary="The request queue, soonest due first")
def queue(
    desk: DeskDep,
    _caller: Reader,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    overdue: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[RequestOut]:
    """Requests sorted by due date; filter by `status`, `open=true`, or `overdue=true`."""
    today = desk.today() if overdue else None
    views = desk.queue(status=status_, open_only=open_only, overdue_on=today, limit=limit)
    if not views:
        return []  # with no policy in force there is no "today", and nothing to show either
    today = today or desk.today()
    return [_out(view, today) for view in views]


@api.get("/export.csv", summary="Request records as CSV (no personal data)")
def export(desk: DeskDep, _caller: Reader, since: dt.date | None = None) -> StreamingResponse:
    """Every request received on or after `since`: kind, channel, law, dates, status, whether
    it was answered on time, and the reason of a denial. Kept 24 months at least."""
    return StreamingResponse(
        desk.export_csv(since=since),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="privacy-requests.csv"'},
    )


@api.get("/{request_id}", response_model=RequestDetailOut, summary="One request and its history")
def show(request_id: RequestId, desk: DeskDep, _caller: Reader) -> RequestDetailOut:
    """A request with every move of its status, who made it and when."""
    try:
        found = desk.record_of(request_id)
    except RequestNotFound as error:
        raise _failures(error) from None
    return RequestDetailOut(
        **_out(found.request, found.today).model_dump(),
        transitions=[TransitionOut(**move.__dict__) for move in found.transitions],
    )


@api.post("/{request_id}/verify", response_model=RequestOut, summary="Staff verified the person")
def staff_verify(
    request_id: RequestId, body: StaffVerificationIn, desk: DeskDep, caller: Writer
) -> RequestOut:
    """A staff member checked the person's identity (a request by phone or post); `note`
    says how, without the values compared."""
    try:
        view = desk.staff_verify(
            request_id, actor=caller.actor, note=body.note, subject_id=body.subject_id
        )
        return _out(view, desk.today())
    except (RequestNotFound, TransitionRefused, IntakeRefused) as error:
        raise _failures(error) from None


@api.post("/{request_id}/acknowledge", response_model=RequestOut, summary="Staff acknowledged it")
def acknowledge(request_id: RequestId, body: ReasonIn, desk: DeskDep, caller: Writer) -> RequestOut:
    """Record that staff acknowledged a request received by post or phone themselves; `reason`
    says how (a letter, a call). Requests with an e-mail address are acknowledged on receipt."""
    try:
        return _out(
            desk.acknowledge(request_id, actor=caller.actor, note=body.reason), desk.today()
        )
    except (RequestNotFound, IntakeRefused) as error:
        raise _failures(error) from None


@api.post("/{request_id}/approve", response_model=RequestOut, summary="Start the work")
def approve(request_id: RequestId, desk: DeskDep, caller: Writer) -> RequestOut:
    """Start carrying out a verified request that waited for staff approval."""
    try:
        return _out(desk.approve(request_id, actor=caller.actor), desk.today())
    except (RequestNotFound, TransitionRefused, IntakeRefused) as error:
        raise _failures(error) from None


@api.post("/{request_id}/deny", response_model=RequestOut, summary="Deny, with the reason")
def deny(request_id: RequestId, body: ReasonIn, desk: DeskDep, caller: Writer) -> RequestOut:
    """Refuse the request; the person is told the reason and how to appeal."""
    try:
        return _out(desk.deny(request_id, reason=body.reason, actor=caller.actor), desk.today())
    except (RequestNotFound, TransitionRefused, IntakeRefused) as error:
        raise _failures(error) from None


@api.post("/{request_id}/extend", response_model=RequestOut, summary="Extend the deadline once")
def extend(request_id: RequestId, body: ReasonIn, desk: DeskDep, caller: Writer) -> RequestOut:
    """Extend once (CCPA: 45 more days; GDPR: 2 more months), within the first period; the
    person is told why and the new date."""
    try:
        return _out(desk.extend(request_id, reason=body.reason, actor=caller.actor), desk.today())
    except (RequestNotFound, TransitionRefused, ExtensionRefused, IntakeRefused) as error:
        raise _failures(error) from None
