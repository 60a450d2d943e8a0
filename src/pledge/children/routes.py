"""HTTP routes of the age screen, for integrating services whose own pages ask the date."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, StringConstraints

from pledge.apikeys import Caller, require_scope
from pledge.children.rules import RETRY_COOKIE, Screened
from pledge.children.service import AgeScreen, DateUnreadable, UnknownCollectionPoint

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
