"""HTTP routes of consent: record choices, read them, and ask "may I?"."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.concurrency import run_in_threadpool

from pledge.apikeys import Caller, require_scope
from pledge.consent.rules import Action, Decision, Method
from pledge.consent.service import (
    ChoiceRefusedAt,
    ChoiceToRecord,
    ConsentLedger,
    ConsentRefused,
    RepromptBlocked,
)
from pledge.db import GroupCommitClosed
from pledge.policy.document import GpcAnswer
from pledge.vault import (
    IdentityKind,
    SubjectErased,
    SubjectNotFound,
    UnknownPurpose,
    Vault,
    answers_for_vault_errors,
)
from pledge.web.bodies import JsonBody, documented_body, json_answer


@asynccontextmanager
async def _drain_on_shutdown(app: FastAPI) -> AsyncIterator[None]:
    """The app's lifespan, as far as consent is concerned: when the server stops, the consent
    writes and decisions still waiting for their group commit are committed (or, past 30
    seconds, refused with an error) before the process goes."""
    yield
    ledger = getattr(app.state, "consent", None)
    if isinstance(ledger, ConsentLedger):
        await run_in_threadpool(ledger.close)


api = APIRouter(prefix="/v1", tags=["consent"], lifespan=_drain_on_shutdown)

Key = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
]
Label = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
"""Free text of one line (a source's name): no NUL, no other control character, which no
database column should hold (PostgreSQL refuses NUL outright)."""
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
    source: Label
    notice_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    """SHA-256 (hex) of the notice text the person saw when choosing."""
    expires_at: AwareDatetime | None = None
    prompted_by_pledge: bool = False

    @field_validator("method")
    @classmethod
    def _no_parent_here(cls, method: Method) -> Method:
        # A parent's consent stands on a verified parental consent, which only the children
        # package records (docs/children.md): a caller cannot claim one.
        if method is Method.PARENT:
            raise ValueError(
                "a parent's consent is recorded by the parental consent flow, not here"
            )
        return method


class RecordedOut(BaseModel):
    """The ledger positions of the recorded event."""

    seq: int


BATCH_MAX = 1000
"""Most choices, or decisions, in one batch call."""


class SubjectChoiceIn(ChoiceIn):
    """A grant or withdrawal of one person, among others recorded together."""

    subject_id: SubjectId


class ChoicesIn(BaseModel):
    """Choices recorded together, all or none (an import from another consent tool, say)."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[SubjectChoiceIn], Field(min_length=1, max_length=BATCH_MAX)]


class RecordedManyOut(BaseModel):
    """The ledger position of each recorded event, in the order submitted."""

    seqs: list[int]


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


class DecisionsIn(BaseModel):
    """Uses to decide on together."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[DecisionIn], Field(min_length=1, max_length=BATCH_MAX)]


class DecisionItemOut(BaseModel):
    """One answer of a batch and every reason for it."""

    allowed: bool
    reasons: list[str]


class DecisionsOut(BaseModel):
    """The answers, in the order asked."""

    decisions: list[DecisionItemOut]


class DecisionOut(BaseModel):
    """The answer and every reason for it."""

    allowed: bool
    reasons: list[str]
    gpc_honored: bool
    """The request carried Sec-GPC: 1 and its opt-out of sale and sharing was recorded."""


async def ledger_of(request: Request) -> ConsentLedger:
    """FastAPI dependency: the app's consent ledger."""
    ledger: ConsentLedger = request.app.state.consent
    return ledger


LedgerDep = Annotated[ConsentLedger, Depends(ledger_of)]
GpcHeader = Annotated[
    str | None, Header(alias="Sec-GPC", description="Global Privacy Control: '1' opts out.")
]


@contextmanager
def _answers_for_consent_errors() -> Iterator[None]:
    """Consent's own refusals; the ones it shares with the vault get the vault's answers."""
    with answers_for_vault_errors():
        try:
            yield
        except UnknownPurpose as unknown:
            msg = f"'{unknown}' is not a purpose of the policy in force"
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[{"loc": ["body", "purpose"], "msg": msg, "type": "policy"}],
            ) from None
        except ConsentRefused as refused:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[{"loc": ["body", "purpose"], "msg": str(refused), "type": "policy"}],
            ) from None
        except RepromptBlocked as blocked:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(blocked)) from None
        except GroupCommitClosed:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="the server is shutting down"
            ) from None


@api.post(
    "/subjects/{subject_id}/consent",
    status_code=201,
    response_model=RecordedOut,
    summary="Record a consent choice",
)
async def record_choice(
    subject_id: SubjectId,
    body: ChoiceIn,
    ledger: LedgerDep,
    caller: Annotated[Caller, Depends(require_scope("consent:write"))],
) -> RecordedOut:
    """Append a grant or withdrawal, with its proof, to the ledger; it applies at once."""
    choice = ChoiceToRecord(subject_id=subject_id, **body.model_dump())
    with _answers_for_consent_errors():
        (seq,) = await ledger.arecord([choice], actor=caller.actor)
    return RecordedOut(seq=seq)


@api.post(
    "/consent/batch",
    status_code=201,
    response_model=RecordedManyOut,
    summary="Record many consent choices at once",
    openapi_extra=documented_body(ChoicesIn),
)
async def record_choices(
    ledger: LedgerDep,
    caller: Annotated[Caller, Depends(require_scope("consent:write"))],
    body: Annotated[ChoicesIn, Depends(JsonBody(ChoicesIn))],  # read once the caller may ask
) -> Response:
    """Append up to 1,000 grants and withdrawals, of any people, in one transaction: all of
    them, or none when one is refused (its position is in the answer's `loc`)."""
    choices = [ChoiceToRecord(**item.model_dump()) for item in body.items]
    try:
        with _answers_for_consent_errors():
            seqs = await ledger.arecord(choices, actor=caller.actor, located=True)
    except ChoiceRefusedAt as refused:
        raise _answer_for_item(refused) from None
    return json_answer({"seqs": seqs}, status.HTTP_201_CREATED)


def _answer_for_item(refused: ChoiceRefusedAt) -> HTTPException:
    """The answer a choice alone would get, located at its place in the batch."""
    try:
        with _answers_for_consent_errors():
            raise refused.refusal
    except HTTPException as answer:
        where: list[str | int] = ["body", "items", refused.index]
        if isinstance(answer.detail, list):
            detail = [{**d, "loc": [*where, *d["loc"][1:]]} for d in answer.detail]
        else:
            detail = [{"loc": where, "msg": str(answer.detail), "type": "refused"}]
        return HTTPException(answer.status_code, detail=detail)
    raise refused.refusal  # pragma: no cover - every refusal of a choice has its answer


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
    with _answers_for_consent_errors():
        choices, history = ledger.consent_record(subject_id, actor=caller.actor)
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
async def decide(
    body: DecisionIn,
    ledger: LedgerDep,
    caller: Annotated[Caller, Depends(require_scope("decide"))],
    sec_gpc: GpcHeader = None,
) -> DecisionOut:
    """Allowed or not, with every reason: the policy, the person's choices, and Global Privacy
    Control. A request passing on `Sec-GPC: 1` records the person's opt-out of sale and sharing."""
    with _answers_for_consent_errors():
        if sec_gpc == "1":
            decision, honored = await run_in_threadpool(_decide_with_gpc, ledger, body, caller)
        else:
            honored = False
            decision = await ledger.adecide(
                body.subject_id,
                body.purpose,
                body.categories,
                actor=caller.actor,
                recipient=body.recipient,
            )
    return DecisionOut(
        allowed=decision.allowed, reasons=list(decision.reasons), gpc_honored=honored
    )


@api.post(
    "/decisions/batch",
    response_model=DecisionsOut,
    summary="Many decisions at once",
    openapi_extra=documented_body(DecisionsIn),
)
async def decide_many(
    ledger: LedgerDep,
    caller: Annotated[Caller, Depends(require_scope("decide"))],
    body: Annotated[DecisionsIn, Depends(JsonBody(DecisionsIn))],  # read once the caller may ask
    sec_gpc: GpcHeader = None,
) -> Response:
    """Up to 1,000 decisions, answered in order, each decided and audited as by
    `POST /v1/decisions`. A person unknown or erased is answered `allowed: false` with that
    reason. Global Privacy Control is one person's signal: pass it on with
    `POST /v1/decisions`, not here."""
    if sec_gpc == "1":
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="Sec-GPC is one person's signal: pass it on with POST /v1/decisions",
        )
    out: list[dict[str, object]] = []
    with _answers_for_consent_errors():
        answers = await run_in_threadpool(
            ledger.decide_many,
            [(i.subject_id, i.purpose, i.categories, i.recipient) for i in body.items],
            actor=caller.actor,
        )
        for answer in answers:  # in the shape of DecisionItemOut
            if isinstance(answer, SubjectNotFound):
                out.append({"allowed": False, "reasons": ["no such subject"]})
            elif isinstance(answer, SubjectErased):
                out.append({"allowed": False, "reasons": ["this subject was erased"]})
            else:
                out.append({"allowed": answer.allowed, "reasons": answer.reasons})
    return json_answer({"decisions": out})


def _decide_with_gpc(
    ledger: ConsentLedger, body: DecisionIn, caller: Caller
) -> tuple[Decision, bool]:
    """A decision on a request carrying `Sec-GPC: 1`, honoring the signal first if the policy
    says so (in a worker thread: these calls wait on the database)."""
    honored = ledger.gpc_is_honored()
    if honored:
        ledger.honor_gpc(body.subject_id, source="Sec-GPC header", actor=caller.actor)
    decision = ledger.decide(
        body.subject_id,
        body.purpose,
        body.categories,
        actor=caller.actor,
        recipient=body.recipient,
        gpc=honored,
    )
    return decision, honored


AUDIENCE_MAX_BYTES = 64 * 1024 * 1024
"""Largest audience body: 1,000,000 subject IDs (37 MB) or e-mail addresses fit."""


def vault_of(request: Request) -> Vault:
    """FastAPI dependency: the app's vault (to find subjects by e-mail)."""
    vault: Vault = request.app.state.vault
    return vault


@api.post(
    "/audiences",
    summary="Filter a list of people down to those a purpose allows",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "One allowed identifier per line."}
    },
)
async def audience(  # noqa: PLR0917 - FastAPI passes each dependency and query by name
    request: Request,
    ledger: LedgerDep,
    vault: Annotated[Vault, Depends(vault_of)],
    caller: Annotated[Caller, Depends(require_scope("decide"))],
    purpose: Annotated[str, Query(min_length=1, max_length=200)],
    categories: Annotated[list[Key], Query(min_length=1, max_length=100)],
    identify_by: Annotated[Literal["subject", "email"], Query()] = "subject",
) -> StreamingResponse:
    """The body is one subject ID (or e-mail address) per line, up to 1,000,000 lines; the
    answer streams back, one per line and in the same order, those whose data in `categories`
    may be used for `purpose` now. Unknown, erased and refused people are left out; one audit
    entry records the call."""
    lines = [
        line.strip() for line in (await request.body()).decode("utf-8").splitlines() if line.strip()
    ]
    if len(lines) > MAX_AUDIENCE:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, detail=f"more than {MAX_AUDIENCE} lines"
        )
    with _answers_for_consent_errors():
        ledger.check_purpose(purpose)
    if identify_by == "email":
        people = _by_email(
            vault, ledger, lines, purpose=purpose, categories=categories, actor=caller.actor
        )
    else:
        people = ledger.audience(purpose, categories, lines, actor=caller.actor)
    return StreamingResponse(_in_blocks(people), media_type="text/plain")


def _in_blocks(people: Iterator[str], size: int = 10_000) -> Iterator[str]:
    """Lines grouped in blocks: the server runs each step of a sync stream in a worker thread,
    so one thread hop per 10,000 people, not per person."""
    block: list[str] = []
    for person in people:
        block.append(person)
        if len(block) == size:
            yield "\n".join(block) + "\n"
            block = []
    if block:
        yield "\n".join(block) + "\n"


MAX_AUDIENCE = 1_000_000


def _by_email(
    vault: Vault,
    ledger: ConsentLedger,
    emails: list[str],
    *,
    purpose: str,
    categories: list[str],
    actor: str,
) -> Iterator[str]:
    """The audience by e-mail: found subjects go through one audience call, one audit entry."""
    found: dict[str, str] = {}
    for start in range(0, len(emails), 10_000):
        found.update(vault.subjects_for(IdentityKind.EMAIL, emails[start : start + 10_000]))
    allowed = set(
        ledger.audience(purpose, categories, list(dict.fromkeys(found.values())), actor=actor)
    )
    yield from (email for email in emails if found.get(email) in allowed)


pages = APIRouter(tags=["consent"])


class GpcSupportOut(BaseModel):
    """The site's Global Privacy Control support resource (GPC specification, section 3.5)."""

    gpc: bool
    lastUpdate: str  # noqa: N815 - the field name the GPC specification defines


@pages.get(
    "/.well-known/gpc.json", response_model=GpcSupportOut, summary="Global Privacy Control support"
)
def gpc_support(ledger: LedgerDep) -> GpcSupportOut:
    """Whether this site honors GPC, per the policy in force, and since when."""
    with _answers_for_consent_errors():
        policy = ledger.policy_in_force()
    honored = (
        policy.document.signals.global_privacy_control is GpcAnswer.OPT_OUT_OF_SALE_AND_SHARING
    )
    return GpcSupportOut(gpc=honored, lastUpdate=policy.document.effective_date.isoformat())
