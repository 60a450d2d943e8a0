"""HTTP routes of the age screen, for integrating services whose own pages ask the date."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, StringConstraints

from pledge.apikeys import Caller, require_scope
from pledge.children.consents import (
    ConsentNotFound,
    ConsentRefusedHere,
    ConsentView,
    ParentalConsents,
    TooManyAsks,
)
from pledge.children.rules import RETRY_COOKIE, Screened
from pledge.children.service import AgeScreen, DateUnreadable, UnknownCollectionPoint
from pledge.policy.document import ParentalConsentMethod
from pledge.vault import SubjectErased, SubjectNotFound
from pledge.vault.rules import IdentityInvalid

api = APIRouter(prefix="/v1", tags=["children"])


def screen_of(request: Request) -> AgeScreen:
    """FastAPI dependency: the app's age screen."""
    screen: AgeScreen = request.app.state.age_screen
    return screen


class AgeScreenIn(BaseModel):
    """A date of birth typed at a collection point that screens ages."""

    model_config = ConfigDict(extra="forbid")

    collection_point: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    date_of_birth: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=40)]
    """As typed: `YYYY-MM-DD`, `MM/DD/YYYY` or `DD.MM.YYYY`."""
    retry_token: Annotated[str, StringConstraints(strict=True, max_length=200)] | None = None
    """The value of the person's `pledge_age` cookie, if the browser has one."""


class AgeScreenOut(BaseModel):
    """The screen's answer. Show the person a neutral message whatever it is: never say where
    the line is, nor why they were turned away."""

    admitted: bool
    age_pass: str | None
    """Give it to `POST /v1/collect` (`age_pass`) with the sign-up, within the hour."""
    parent_consent_possible: bool
    """The person is under the minimum age and the policy lets a parent consent."""
    retry_token: str | None
    """Set it as the browser's `pledge_age` cookie until `retry_until`: the same browser is
    refused again whatever date it enters next."""
    retry_until: str | None
    cookie: str = RETRY_COOKIE


@api.post("/age-screen", response_model=AgeScreenOut, summary="Screen a date of birth")
def age_screen(
    body: AgeScreenIn,
    screen: Annotated[AgeScreen, Depends(screen_of)],
    _caller: Annotated[Caller, Depends(require_scope("collect"))],
    request: Request,
) -> AgeScreenOut:
    """Screen the date of birth someone typed at an age-screened collection point. Nothing
    about the person is stored, audited or logged, whatever the answer."""
    document = request.app.state.consent.policy_in_force().document
    try:
        answer = screen.screen(
            document, body.collection_point, body.date_of_birth, retry_cookie=body.retry_token
        )
    except UnknownCollectionPoint:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body", "collection_point"],
                    "msg": "not a collection point of the policy in force",
                    "type": "policy",
                }
            ],
        ) from None
    except DateUnreadable as unreadable:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "date_of_birth"], "msg": str(unreadable), "type": "date"}],
        ) from None
    return AgeScreenOut(
        admitted=answer.outcome is Screened.ADMITTED,
        age_pass=answer.age_pass,
        parent_consent_possible=answer.outcome is Screened.PARENT_NEEDED,
        retry_token=answer.retry_token,
        retry_until=answer.retry_until.isoformat() if answer.retry_until else None,
    )


def consents_of(request: Request) -> ParentalConsents:
    """FastAPI dependency: the app's parental consents."""
    consents: ParentalConsents = request.app.state.parental_consents
    return consents


ConsentsDep = Annotated[ParentalConsents, Depends(consents_of)]
Email = Annotated[str, StringConstraints(strict=True, min_length=3, max_length=320)]


class ParentalConsentIn(BaseModel):
    """A child's sign-up that an integrating service's own page stopped: the parent to ask."""

    model_config = ConfigDict(extra="forbid")

    collection_point: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    parent_email: Email
    third_party: bool = False
    """Whether disclosure of the child's data to third parties is asked for too (separately)."""


class ParentalConsentOut(BaseModel):
    """A parental consent, without the parent's address."""

    id: str
    reason: str
    collection_point: str
    status: str
    child_subject_id: str | None
    third_party_asked: bool
    third_party_consented: bool
    method: str | None
    evidence_reference: str | None
    evidence_waiting: bool
    created_at: dt.datetime
    expires_at: dt.datetime
    decided_at: dt.datetime | None


class ChildFlagIn(BaseModel):
    """A subject found to be a child."""

    model_config = ConfigDict(extra="forbid")

    subject_id: Annotated[
        str,
        StringConstraints(
            pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
        ),
    ]
    reason: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500)]
    """How it was found out (no personal data: "stated age in a support message")."""
    parent_email: Email | None = None


def _out(view: ConsentView) -> ParentalConsentOut:
    return ParentalConsentOut(**view.__dict__)


def _email_refused(invalid: Exception) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["body", "parent_email"], "msg": str(invalid), "type": "value_error"}],
    )


@api.post(
    "/parental-consents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ParentalConsentOut,
    summary="Ask a parent for consent",
)
def ask_parent(
    body: ParentalConsentIn,
    consents: ConsentsDep,
    caller: Annotated[Caller, Depends(require_scope("collect"))],
    request: Request,
) -> ParentalConsentOut:
    """Ask a parent to consent to a child's sign-up: only their address is kept, and they get
    the direct notice with a link. The child finishes signing up from the parent's page."""
    document = request.app.state.consent.policy_in_force().document
    if body.collection_point not in document.collection_points:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body", "collection_point"],
                    "msg": "not a collection point of the policy in force",
                    "type": "policy",
                }
            ],
        )
    if document.children.child_accounts != "with_parental_consent":
        raise HTTPException(status.HTTP_409_CONFLICT, detail="the policy takes no child accounts")
    try:
        consent_id, _ = consents.ask(
            body.collection_point,
            body.parent_email,
            third_party=body.third_party,
            actor=caller.actor,
        )
    except IdentityInvalid as invalid:
        raise _email_refused(invalid) from None
    except TooManyAsks:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="this parent was asked enough today: try again tomorrow",
        ) from None
    return _out(consents.view_for_staff(consent_id))


@api.get(
    "/parental-consents",
    response_model=list[ParentalConsentOut],
    summary="Parental consents open or under a child",
)
def list_consents(
    consents: ConsentsDep, _caller: Annotated[Caller, Depends(require_scope("children:read"))]
) -> list[ParentalConsentOut]:
    """Consents waiting for a parent or for staff's check, and those a child's account rests
    on; never a parent's address."""
    return [_out(view) for view in consents.waiting()]


@api.post(
    "/children/flags",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ParentalConsentOut,
    summary="Flag a subject as a child",
)
def flag_child(
    body: ChildFlagIn,
    consents: ConsentsDep,
    caller: Annotated[Caller, Depends(require_scope("children:write"))],
) -> ParentalConsentOut:
    """A subject turns out to be under 13: frozen at once (no reads but for what the law
    requires, no marketing, no disclosure), then erased when the policy's window ends unless a
    parent, asked at `parent_email`, consents."""
    try:
        consent_id = consents.flag_child(
            body.subject_id,
            actor=caller.actor,
            reason=body.reason,
            parent_email=body.parent_email,
        )
    except SubjectNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such subject") from None
    except SubjectErased:
        raise HTTPException(status.HTTP_410_GONE, detail="this subject was erased") from None
    except IdentityInvalid as invalid:
        raise _email_refused(invalid) from None
    except ConsentRefusedHere as refused:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(refused)) from None
    return _out(consents.view_for_staff(consent_id))


class VerificationIn(BaseModel):
    """An adapter's report that it verified a parent."""

    model_config = ConfigDict(extra="forbid")

    method: ParentalConsentMethod
    """`payment_card` or `knowledge_based`."""
    reference: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    """The adapter's reference of the verification: a transaction's ID, never a card number."""
    third_party: bool = False
    """Whether the parent also consented to disclosure to third parties (they chose it on
    their consent page, which passes it on to the adapter)."""


@api.post(
    "/parental-consents/{consent_id}/verifications",
    response_model=ParentalConsentOut,
    summary="An adapter verified a parent",
)
def verified(
    consent_id: Annotated[
        str,
        Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    ],
    body: VerificationIn,
    consents: ConsentsDep,
    caller: Annotated[Caller, Depends(require_scope("children:verify"))],
) -> ParentalConsentOut:
    """The business's payment service (a card transaction that notifies the card holder) or an
    identity service (knowledge-based questions) reports that it verified the parent: the
    consent is recorded, in the ledger too. `404` for an unknown or closed consent, `422` for a
    method the policy does not accept."""
    try:
        view = consents.verified_elsewhere(
            consent_id,
            method=body.method,
            reference=body.reference,
            third_party=body.third_party,
            actor=caller.actor,
        )
    except ConsentNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail="no open consent has this ID"
        ) from None
    except ConsentRefusedHere as refused:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(refused)) from None
    return _out(view)
