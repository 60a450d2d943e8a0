"""Privacy-center pages for parents: once a parent proves their address (the code mailed to
it), they see each consent they were asked for, review and download their child's data, and
revoke their consent, which erases the child's data. Every read is audited."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from pledge.children import ConsentNotFound, ParentalConsents
from pledge.privacy_center.request_pages import _sign_in, _visitor_index
from pledge.privacy_center.routes import CenterDep, SameOrigin, _form_token_ok, _render
from pledge.privacy_center.rules import form_token
from pledge.requests import PRIVACY_REQUESTS
from pledge.vault import SubjectErased, SubjectNotFound, Vault

pages = APIRouter(prefix="/privacy-center/children", tags=["privacy center"])


def consents_of(request: Request) -> ParentalConsents:
    """FastAPI dependency: the app's parental consents."""
    consents: ParentalConsents = request.app.state.parental_consents
    return consents


ConsentsDep = Annotated[ParentalConsents, Depends(consents_of)]


async def small_form(request: Request) -> FormData:
    """A parent's form: a token, nothing more."""
    return await request.form(max_fields=5)


SmallForm = Annotated[FormData, Depends(small_form)]


@pages.get("", response_class=HTMLResponse, summary="A parent's children")
def children(request: Request, center: CenterDep, consents: ConsentsDep) -> HTMLResponse:
    """The consents asked of the proven address, with what each child's account holds."""
    email_index, token = _visitor_index(request, center)
    if email_index is None or token is None:
        return _sign_in(center, "/privacy-center/children", "children")
    return _render(
        center,
        "children.html.j2",
        consents=consents.of_parent(email_index),
        form_token=form_token(center.secret, token),
        revoked=request.query_params.get("revoked") == "1",
    )


def _child_data(
    request: Request, center: CenterDep, consents: ParentalConsents, consent_id: str
) -> list[dict[str, str]] | None:
    email_index, _ = _visitor_index(request, center)
    if email_index is None:
        return None
    try:
        subject = consents.child_of(consent_id[:36], parent_index=email_index)
        vault: Vault = request.app.state.vault
        data = vault.read(subject, PRIVACY_REQUESTS, actor="parent (privacy center)")
    except (ConsentNotFound, SubjectErased, SubjectNotFound):
        return None
    document = center.ledger.policy_in_force().document
    return [
        {
            "category": document.category_name(v.category),
            "value": v.value if _shown(document, v.category) else "(held, not shown)",
            "collected_at": v.collected_at.date().isoformat(),
            "collection_point": v.collection_point,
        }
        for v in data.values
    ]


def _shown(document: object, category: str) -> bool:
    spec = getattr(document, "data_categories", {}).get(category)
    return spec is None or bool(spec.shown_in_access_requests)


@pages.get("/{consent_id}", response_model=None, summary="Review a child's data")
def review(consent_id: str, request: Request, center: CenterDep, consents: ConsentsDep) -> Response:
    """The child's data, readable (`format=json`: to download); for the parent only."""
    email_index, _ = _visitor_index(request, center)
    if email_index is None:
        return _sign_in(center, f"/privacy-center/children/{consent_id[:36]}", "children")
    values = _child_data(request, center, consents, consent_id)
    if values is None:
        return _render(center, "request_missing.html.j2", 404)
    if request.query_params.get("format") == "json":
        return Response(
            json.dumps({"consent": consent_id[:36], "values": values}, ensure_ascii=False),
            media_type="application/json",
            headers={
                "Content-Disposition": 'attachment; filename="child-data.json"',
                "Cache-Control": "no-store",
            },
        )
    return _render(center, "child_data.html.j2", values=values, consent_id=consent_id[:36])


@pages.post(
    "/{consent_id}/revoke",
    response_model=None,
    summary="Revoke consent and erase the child's data",
    dependencies=SameOrigin,
)
def revoke(
    consent_id: str,
    request: Request,
    form: SmallForm,
    center: CenterDep,
    consents: ConsentsDep,
) -> Response:
    """Withdraw the consent: the child's data is erased, in the vault and the connected
    databases, at once."""
    email_index, token = _visitor_index(request, center)
    if (
        email_index is None
        or token is None
        or not _form_token_ok(center, token, form.get("form_token"))
    ):
        return RedirectResponse("/privacy-center/children", status.HTTP_303_SEE_OTHER)
    try:
        consents.revoke(consent_id[:36], parent_index=email_index)
    except ConsentNotFound:
        return _render(center, "request_missing.html.j2", 404)
    return RedirectResponse("/privacy-center/children?revoked=1", status.HTTP_303_SEE_OTHER)
