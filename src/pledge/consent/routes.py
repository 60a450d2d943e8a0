"""HTTP routes of consent: record choices, read them, and ask "may I?"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from pledge.apikeys import Caller, require_scope
from pledge.consent.rules import Action, Method
from pledge.consent.service import ChoiceToRecord, ConsentLedger, ConsentRefused, RepromptBlocked
from pledge.vault import NoPolicyInForce, SubjectErased, SubjectNotFound, UnknownPurpose

api = APIRouter(prefix="/v1", tags=["consent"])

Key = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
]
SubjectId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]


class ChoiceIn(BaseModel):
    """A grant or withdrawal, with its proof."""

    model_config = ConfigDict(extra="forbid")

    purpose: Key
    action: Action
    method: Method
    source: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    notice_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    """SHA-256 (hex) of the notice text the person saw when choosing."""
    expires_at: AwareDatetime | None = None
    prompted_by_pledge: bool = False


class RecordedOut(BaseModel):
    """The ledger positions of the recorded event."""

    seq: int


class ChoiceOut(BaseModel):
    """A current choice."""

    purpose: str
    granted: bool
    at: dt.datetime
    method: str
    expires_at: dt.datetime | None


class EventOut(BaseModel):
    """A ledger event."""

    seq: int
    purpose: str
    action: str
    method: str
    source: str
    notice_sha256: str
    policy_version: str
    at: dt.datetime
    expires_at: dt.datetime | None
    prompted_by_pledge: bool


class ConsentOut(BaseModel):
    """A subject's current choices and the events behind them."""

    subject_id: str
    choices: list[ChoiceOut]
    history: list[EventOut]


class DecisionIn(BaseModel):
    """A use to decide on."""

    model_config = ConfigDict(extra="forbid")

    subject_id: SubjectId
    purpose: Key
    categories: Annotated[list[Key], Field(min_length=1, max_length=100)]
    recipient: Key | None = None


class DecisionOut(BaseModel):
    """The answer and every reason for it."""

    allowed: bool
    reasons: list[str]
    gpc_honored: bool
    """The request carried Sec-GPC: 1 and its opt-out of sale and sharing was recorded."""


def ledger_of(request: Request) -> ConsentLedger:
    """FastAPI dependency: the app's consent ledger."""
    ledger: ConsentLedger = request.app.state.consent
    return ledger


LedgerDep = Annotated[ConsentLedger, Depends(ledger_of)]
GpcHeader = Annotated[
    str | None, Header(alias="Sec-GPC", description="Global Privacy Control: '1' opts out.")
]


@contextmanager
def _answers_for_consent_errors() -> Iterator[None]:
    try:
        yield
    except UnknownPurpose as unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body", "purpose"],
                    "msg": f"'{unknown}' is not a purpose of the policy in force",
                    "type": "policy",
                }
            ],
        ) from None
    except ConsentRefused as refused:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "purpose"], "msg": str(refused), "type": "policy"}],
        ) from None
    except RepromptBlocked as blocked:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(blocked)) from None
    except SubjectNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no subject has this ID") from None
    except SubjectErased:
        raise HTTPException(status.HTTP_410_GONE, detail="this subject was erased") from None
    except NoPolicyInForce:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="no policy version is in force"
        ) from None


@api.post(
    "/subjects/{subject_id}/consent",
    status_code=201,
    response_model=RecordedOut,
    summary="Record a consent choice",
)
def record_choice(
    subject_id: SubjectId,
    body: ChoiceIn,
    ledger: LedgerDep,
    caller: Annotated[Caller, Depends(require_scope("consent:write"))],
) -> RecordedOut:
    """Append a grant or withdrawal, with its proof, to the ledger; it applies at once."""
    choice = ChoiceToRecord(subject_id=subject_id, **body.model_dump())
    with _answers_for_consent_errors():
        (seq,) = ledger.record([choice], actor=caller.actor)
    return RecordedOut(seq=seq)


@api.get(
    "/subjects/{subject_id}/consent",
    response_model=ConsentOut,
    summary="A subject's consent choices",
)
def read_choices(
    subject_id: SubjectId,
    ledger: LedgerDep,
    caller: Annotated[Caller, Depends(require_scope("consent:read"))],
) -> ConsentOut:
    """The current choice per purpose and the full history of events."""
    _ = caller
    choices = ledger.choices(subject_id)
    history = ledger.history(subject_id)
    return ConsentOut(
        subject_id=subject_id,
        choices=[
            ChoiceOut(
                purpose=p,
                granted=c.granted,
                at=c.at,
                method=c.method.value,
                expires_at=c.expires_at,
            )
            for p, c in sorted(choices.items())
        ],
        history=[
            EventOut(**{**e.__dict__, "action": e.action.value, "method": e.method.value})
            for e in history
        ],
    )


@api.post(
    "/decisions", response_model=DecisionOut, summary="May this data be used for this purpose?"
)
def decide(
    body: DecisionIn,
    ledger: LedgerDep,
    caller: Annotated[Caller, Depends(require_scope("decide"))],
    sec_gpc: GpcHeader = None,
) -> DecisionOut:
    """Allowed or not, with every reason: the policy, the person's choices, and Global Privacy
    Control. A request passing on `Sec-GPC: 1` records the person's opt-out of sale and sharing."""
    gpc = sec_gpc == "1"
    with _answers_for_consent_errors():
        if gpc:
            ledger.honor_gpc(body.subject_id, source="Sec-GPC header", actor=caller.actor)
        decision = ledger.decide(
            body.subject_id,
            body.purpose,
            body.categories,
            actor=caller.actor,
            recipient=body.recipient,
            gpc=gpc,
        )
    return DecisionOut(allowed=decision.allowed, reasons=list(decision.reasons), gpc_honored=gpc)
