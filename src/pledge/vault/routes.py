"""HTTP routes of the vault: collect, read for a purpose, correct, erase, resolve."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pledge.apikeys import Caller, authenticated, check_scope, require_scope
from pledge.vault.rules import (
    MAX_BATCH,
    MAX_IDENTITY_CHARS,
    MAX_VALUE_CHARS,
    IdentityInvalid,
    IdentityKind,
    Source,
)
from pledge.vault.screening import ChildRefused
from pledge.vault.service import (
    CollectionRefused,
    NoPolicyInForce,
    SubjectErased,
    SubjectFrozen,
    SubjectNotFound,
    Submission,
    UnknownPurpose,
    ValueNotFound,
    Vault,
)

api = APIRouter(prefix="/v1", tags=["vault"])

FieldName = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
]
FieldValue = Annotated[str, StringConstraints(max_length=MAX_VALUE_CHARS, strict=True)]
SubjectId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
StaffName = Annotated[str, StringConstraints(min_length=1, max_length=200, strict=True)]


class Body(BaseModel):
    """Request bodies refuse unknown keys and coerce nothing."""

    model_config = ConfigDict(extra="forbid")


class IdentityIn(Body):
    """How the person is identified."""

    kind: IdentityKind
    value: Annotated[
        str, StringConstraints(strict=True, min_length=1, max_length=MAX_IDENTITY_CHARS)
    ]


class CollectIn(Body):
    """Fields submitted at a collection point of the policy."""

    collection_point: FieldName
    fields: Annotated[dict[FieldName, FieldValue], Field(min_length=1)]
    identity: IdentityIn | None = None
    subject_id: SubjectId | None = None
    source: Source = Source.API
    entered_by: StaffName | None = None
    """The staff member, for data received by phone, letter or meeting (source staff_entry)."""
    age_pass: Annotated[str, StringConstraints(strict=True, max_length=200)] | None = None
    """The age screen's pass (`POST /v1/age-screen`), at a point that screens ages and takes
    no date of birth."""

    def submission(self) -> Submission:
        """The domain's view of this body."""
        return Submission(
            collection_point=self.collection_point,
            fields=self.fields,
            source=self.source,
            identity=(self.identity.kind, self.identity.value) if self.identity else None,
            subject_id=self.subject_id,
            entered_by=self.entered_by,
            age_pass=self.age_pass,
        )


class BatchIn(Body):
    """Up to 1,000 submissions, stored all together or not at all."""

    items: Annotated[list[CollectIn], Field(min_length=1, max_length=MAX_BATCH)]


class CollectOut(BaseModel):
    """What was stored."""

    subject_id: str
    created: bool
    value_ids: dict[str, int]
    findings: dict[str, dict[str, int]]
    """For scanned free text: how many e-mails, phones, cards, links, addresses were masked."""


class BatchOut(BaseModel):
    """What each submission of a batch stored, in order."""

    results: list[CollectOut]


class ValueOut(BaseModel):
    """A value with its provenance."""

    id: int
    category: str
    collection_point: str
    field: str
    value: str
    source: str
    entered_by: str | None
    collected_at: dt.datetime
    policy_version_id: int
    version: int
    redacted: str | None
    """For scanned free text, the copy to publish."""
    findings: dict[str, int] | None


class SubjectDataOut(BaseModel):
    """The categories a purpose may use, and the subject's current values in them."""

    subject_id: str
    purpose: str
    policy_version: str
    categories: list[str]
    values: list[ValueOut]


class CorrectionIn(Body):
    """A corrected value."""

    value: FieldValue
    source: Source = Source.API
    entered_by: StaffName | None = None


class CorrectionOut(BaseModel):
    """The new version."""

    value_id: int


class ResolveIn(Body):
    """An identity to look up."""

    kind: IdentityKind
    value: Annotated[
        str, StringConstraints(strict=True, min_length=1, max_length=MAX_IDENTITY_CHARS)
    ]


class ResolveOut(BaseModel):
    """The subject an identity belongs to."""

    subject_id: str


class ErasedOut(BaseModel):
    """The outcome of an erasure."""

    subject_id: str
    erased: Literal[True]
    already_erased: bool


def vault_of(request: Request) -> Vault:
    """FastAPI dependency: the app's vault."""
    vault: Vault = request.app.state.vault
    return vault


VaultDep = Annotated[Vault, Depends(vault_of)]
PurposeQuery = Annotated[
    str, Query(min_length=1, max_length=200, description="The purpose the data is read for.")
]


@contextmanager
def answers_for_vault_errors(purpose: str | None = None) -> Iterator[None]:
    """Turn the vault's refusals into the HTTP answers docs/api.md lists (also used by the
    packages built on the vault, for the refusals they share with it)."""
    try:
        yield
    except UnknownPurpose:
        msg = f"'{purpose}' is not a purpose of the policy in force"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "purpose"], "msg": msg, "type": "policy"}],
        ) from None
    except (SubjectNotFound, ValueNotFound):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such subject or value") from None
    except SubjectErased:
        raise HTTPException(status.HTTP_410_GONE, detail="this subject was erased") from None
    except SubjectFrozen:
        raise HTTPException(
            status.HTTP_423_LOCKED,
            detail="this subject is frozen (a child without a parent's consent): it is read "
            "only to answer requests and to erase it",
        ) from None
    except ChildRefused as refused:
        # For the integrating service, not for the person: show them a neutral message that
        # does not say where the line is.
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "loc": ["body", "fields"],
                    "msg": "refused by the age screen: nothing was stored"
                    + (
                        "; a parent's consent can open this account: ask them "
                        "(POST /v1/parental-consents), and the child finishes on Pledge's "
                        "sign-up page"
                        if refused.parent_possible
                        else ""
                    ),
                    "type": "age_screen",
                }
            ],
        ) from None
    except NoPolicyInForce:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="no policy version is in force"
        ) from None
    except CollectionRefused as refusal:
        detail = [
            {"loc": ["body", *p.path], "msg": p.message, "type": "policy"} for p in refusal.problems
        ]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None
    except IdentityInvalid as invalid:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "value"], "msg": str(invalid), "type": "value_error"}],
        ) from None


@api.post(
    "/collect",
    status_code=201,
    response_model=CollectOut,
    summary="Record data at a collection point",
)
def collect(
    body: CollectIn, vault: VaultDep, caller: Annotated[Caller, Depends(require_scope("collect"))]
) -> CollectOut:
    """Validate the fields against the policy's collection point and store them sealed.

    Unknown collection points or fields, and missing required fields, give 422 naming them;
    nothing is stored on any error.
    """
    with answers_for_vault_errors():
        (result,) = vault.collect([body.submission()], actor=caller.actor)
    return CollectOut(**result.__dict__)


@api.post(
    "/collect/batch",
    status_code=201,
    response_model=BatchOut,
    summary="Record many submissions at once",
)
def collect_batch(
    body: BatchIn, vault: VaultDep, caller: Annotated[Caller, Depends(require_scope("collect"))]
) -> BatchOut:
    """Store up to 1,000 submissions in one transaction: all of them, or none."""
    with answers_for_vault_errors():
        results = vault.collect(
            [item.submission() for item in body.items], actor=caller.actor, batch=True
        )
    return BatchOut(results=[CollectOut(**r.__dict__) for r in results])


@api.get(
    "/subjects/{subject_id}/data",
    response_model=SubjectDataOut,
    summary="Read a subject's data for a purpose",
)
def read_subject_data(
    subject_id: SubjectId,
    vault: VaultDep,
    caller: Annotated[Caller, Depends(authenticated)],
    purpose: PurposeQuery,
) -> SubjectDataOut:
    """Only the categories the policy lets `purpose` use; every read is audited with its purpose."""
    check_scope(caller, f"read:{purpose}")
    with answers_for_vault_errors(purpose):
        data = vault.read(subject_id, purpose, actor=caller.actor)
    return SubjectDataOut(
        subject_id=data.subject_id,
        purpose=data.purpose,
        policy_version=data.policy_version,
        categories=list(data.categories),
        values=[ValueOut(**v.__dict__) for v in data.values],
    )


@api.post(
    "/subjects/{subject_id}/values/{value_id}/corrections",
    status_code=201,
    response_model=CorrectionOut,
    summary="Correct a stored value",
)
def correct_value(
    subject_id: SubjectId,
    value_id: int,
    body: CorrectionIn,
    vault: VaultDep,
    caller: Annotated[Caller, Depends(require_scope("correct"))],
) -> CorrectionOut:
    """Store the corrected value as a new version; the previous version is kept in the history."""
    if (body.source is Source.STAFF_ENTRY) != (body.entered_by is not None):
        message = "staff entries, and only they, name the staff member"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "entered_by"], "msg": message, "type": "policy"}],
        )
    with answers_for_vault_errors():
        new_id = vault.correct(
            subject_id,
            value_id,
            body.value,
            actor=caller.actor,
            source=body.source,
            entered_by=body.entered_by,
        )
    return CorrectionOut(value_id=new_id)


@api.delete(
    "/subjects/{subject_id}", response_model=ErasedOut, summary="Erase a subject (crypto-shredding)"
)
def erase_subject(
    subject_id: SubjectId,
    vault: VaultDep,
    caller: Annotated[Caller, Depends(require_scope("shred"))],
    reason: Annotated[
        str,
        Query(
            min_length=1, max_length=500, description="Why, for the audit log (no personal data)."
        ),
    ],
) -> ErasedOut:
    """Destroy the subject's data key, then its identities and values. Cannot be undone."""
    with answers_for_vault_errors():
        erased_now = vault.shred(subject_id, actor=caller.actor, reason=reason)
    return ErasedOut(subject_id=subject_id, erased=True, already_erased=not erased_now)


@api.post("/subjects/resolve", response_model=ResolveOut, summary="Find a subject by identity")
def resolve_subject(
    body: ResolveIn, vault: VaultDep, caller: Annotated[Caller, Depends(require_scope("resolve"))]
) -> ResolveOut:
    """The subject an e-mail, phone, social account or device belongs to; 404 if none."""
    with answers_for_vault_errors():
        subject_id = vault.resolve(body.kind, body.value, actor=caller.actor)
    if subject_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no subject has this identity")
    return ResolveOut(subject_id=subject_id)


class HistoryOut(BaseModel):
    """Every version of one value, oldest first."""

    subject_id: str
    purpose: str
    versions: list[ValueOut]


@api.get(
    "/subjects/{subject_id}/values/{value_id}/history",
    response_model=HistoryOut,
    summary="Every version of a value",
)
def value_history(
    subject_id: SubjectId,
    value_id: int,
    vault: VaultDep,
    caller: Annotated[Caller, Depends(authenticated)],
    purpose: PurposeQuery,
) -> HistoryOut:
    """The value as first collected and each correction since, if `purpose` may use its category."""
    check_scope(caller, f"read:{purpose}")
    with answers_for_vault_errors(purpose):
        versions = vault.history(subject_id, value_id, purpose, actor=caller.actor)
    return HistoryOut(
        subject_id=subject_id, purpose=purpose, versions=[ValueOut(**v.__dict__) for v in versions]
    )
