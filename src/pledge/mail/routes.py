"""HTTP routes of mail: queue marketing mail, follow a message, and one-click unsubscribe."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.datastructures import FormData

from pledge.apikeys import Caller, require_scope
from pledge.mail.rules import ONE_CLICK_BODY
from pledge.mail.service import LinkState, Mailer, MessageNotFound
from pledge.web import page_templates

api = APIRouter(prefix="/v1/mail", tags=["mail"])
pages = APIRouter(tags=["mail"])
_templates = page_templates("pledge.mail")

SubjectId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
Token = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{43}$")]
MAX_RECIPIENTS = 10_000


def mailer_of(request: Request) -> Mailer:
    """FastAPI dependency: the app's mailer."""
    mailer: Mailer = request.app.state.mailer
    return mailer


MailerDep = Annotated[Mailer, Depends(mailer_of)]


class MarketingIn(BaseModel):
    """A marketing message to send to people; each is checked again right before sending."""

    model_config = ConfigDict(extra="forbid")

    subject_ids: Annotated[list[SubjectId], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    campaign: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    subject_line: Annotated[
        str, StringConstraints(strict=True, min_length=1, max_length=300, pattern=r"^[^\r\n]+$")
    ]
    text: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=100_000)]
    """Plain text, the same for every person; Pledge adds the unsubscribe link and address."""


class QueuedOut(BaseModel):
    """The queued messages, one per person, in the order given (duplicates once)."""

    message_ids: list[str]


class MessageOut(BaseModel):
    """What became of a message. Its address is never shown."""

    id: str
    kind: str
    subject_id: str | None
    campaign: str | None
    status: str
    reasons: list[str]
    job_id: str
    """The job sending it (`GET /v1/jobs/{job_id}`): a message stays `queued` while its job
    retries, and after it failed; it is `sending` while a worker sends it."""
    created_at: dt.datetime
    sent_at: dt.datetime | None


@api.post(
    "/marketing",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=QueuedOut,
    summary="Send a marketing message to people who allow it",
)
def send_marketing(
    body: MarketingIn,
    mailer: MailerDep,
    caller: Annotated[Caller, Depends(require_scope("mail:send"))],
) -> QueuedOut:
    """Queue one message per person. Right before each is sent, the decision for
    `marketing.communications.email` and the suppression list are checked again; a refused
    message is `withheld` with the reasons. Sent messages carry one-click unsubscribe."""
    ids = mailer.queue_marketing(
        body.subject_ids,
        campaign=body.campaign,
        subject_line=body.subject_line,
        text=body.text,
        actor=caller.actor,
    )
    return QueuedOut(message_ids=ids)


@api.get("/messages/{message_id}", response_model=MessageOut, summary="What became of a message")
def message_status(
    message_id: Annotated[str, Path(max_length=36)],
    mailer: MailerDep,
    _caller: Annotated[Caller, Depends(require_scope("mail:send"))],
) -> MessageOut:
    """Queued, sending, sent, or withheld with the reasons."""
    try:
        view = mailer.message(message_id)
    except MessageNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such message") from None
    return MessageOut(
        **{
            **view.__dict__,
            "kind": view.kind.value,
            "status": view.status.value,
            "reasons": list(view.reasons),
        }
    )


def _page(mailer: Mailer, state: str, code: int = 200) -> HTMLResponse:
    organization = mailer.ledger.policy_in_force().document.organization
    html = _templates.get_template("unsubscribe.html.j2").render(
        state=state, organization_name=organization.trade_name or organization.legal_name
    )
    return HTMLResponse(html, status_code=code, headers={"Cache-Control": "no-store"})


@pages.get(
    "/mail/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe page (changes nothing)",
)
def unsubscribe_page(token: Token, mailer: MailerDep) -> HTMLResponse:
    """A confirmation page with one button. A GET never unsubscribes: mail scanners open links."""
    state = mailer.link_state(token)
    if state == LinkState.VALID:
        return _page(mailer, "valid")
    return _page(mailer, state, status.HTTP_404_NOT_FOUND)


async def _form(request: Request) -> FormData:
    return await request.form(max_fields=5)


@pages.post(
    "/mail/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="One-click unsubscribe (RFC 8058)",
)
def unsubscribe(
    token: Token, form: Annotated[FormData, Depends(_form)], mailer: MailerDep
) -> HTMLResponse:
    """With the body `List-Unsubscribe=One-Click` (form-encoded or multipart, as RFC 8058
    allows), withdraw marketing e-mail consent and suppress the address: 200, no redirect, no
    cookie, no login. (A plain function: FastAPI runs it in a worker thread, so its database
    work never blocks the event loop.)"""
    if form.get("List-Unsubscribe") != ONE_CLICK_BODY.split("=", 1)[1]:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"the body must be '{ONE_CLICK_BODY}'"
        )
    if not mailer.unsubscribe(token, source="List-Unsubscribe link"):
        return _page(mailer, mailer.link_state(token), status.HTTP_404_NOT_FOUND)
    return _page(mailer, "done")
